//! W3C trace context across process boundaries. A request continues the caller's trace (its
//! `traceparent` header) or starts one; a job carries the `traceparent` of the span that queued
//! it, so the worker's spans — engine, EHR calls — join the request's trace even when another
//! process or Lambda function runs them.

use std::collections::HashMap;

use opentelemetry::{propagation::TextMapPropagator, trace::TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::sanitize_correlation_id;
use crate::ports::{CORRELATION_ATTRIBUTE, JobOrigin, ReceivedJob, TRACEPARENT_ATTRIBUTE};

pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The `traceparent` naming `span`, when spans are being traced (always in the binaries).
pub fn traceparent_of(span: &Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT_HEADER)
}

/// Makes `span` the child of the remote span `traceparent` names. A malformed value is ignored:
/// the span starts a trace of its own.
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT_HEADER.to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Records the span's trace id in its `trace_id` field, so log lines can be matched to traces.
pub fn record_trace_id(span: &Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
    }
}

/// A job's origin as read back from message attributes. Both values came over the wire, so
/// each is dropped unless it is well-formed.
pub fn origin_from_attributes<'a>(attribute: impl Fn(&str) -> Option<&'a str>) -> JobOrigin {
    JobOrigin {
        correlation_id: attribute(CORRELATION_ATTRIBUTE).and_then(sanitize_correlation_id),
        traceparent: attribute(TRACEPARENT_ATTRIBUTE)
            .filter(|v| is_traceparent(v))
            .map(str::to_owned),
    }
}

/// The attributes that carry a job's origin, for the queue adapters that write them.
pub fn origin_attributes(origin: &JobOrigin) -> impl Iterator<Item = (&'static str, &str)> {
    [
        (CORRELATION_ATTRIBUTE, origin.correlation_id.as_deref()),
        (TRACEPARENT_ATTRIBUTE, origin.traceparent.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
}

/// `00-<32 hex>-<16 hex>-<2 hex>`, the only version MMT writes.
fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    matches!(parts.as_slice(), [version, trace, span, flags]
        if hex(version, 2) && hex(trace, 32) && hex(span, 16) && hex(flags, 2))
}

/// What a job queued from here should carry: the request's correlation id and this span.
pub fn job_origin() -> JobOrigin {
    JobOrigin {
        correlation_id: super::current_correlation_id(),
        traceparent: traceparent_of(&Span::current()),
    }
}

/// The span a job runs in: the queued request's correlation id, a child of its span.
pub fn job_span(queue: &'static str, message: &ReceivedJob) -> Span {
    let span = tracing::info_span!(
        "job",
        queue,
        message_id = %message.message_id,
        receive_count = message.receive_count,
        correlation_id = message.origin.correlation_id.as_deref().unwrap_or("-"),
        trace_id = tracing::field::Empty,
    );
    continue_trace(&span, message.origin.traceparent.as_deref());
    record_trace_id(&span);
    span
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::prelude::*;

    use super::*;

    #[test]
    fn origins_read_from_the_wire_keep_only_well_formed_values() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let origin = origin_from_attributes(|name| match name {
            CORRELATION_ATTRIBUTE => Some("corr-1"),
            TRACEPARENT_ATTRIBUTE => Some(tp),
            _ => None,
        });
        assert_eq!(origin.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(origin.traceparent.as_deref(), Some(tp));
        assert_eq!(origin_attributes(&origin).count(), 2);
        let hostile = origin_from_attributes(|name| match name {
            CORRELATION_ATTRIBUTE => Some("a\nb"),
            TRACEPARENT_ATTRIBUTE => Some("00-4bf9-\n-01"),
            _ => None,
        });
        assert_eq!(hostile, JobOrigin::default());
        assert_eq!(origin_attributes(&hostile).count(), 0);
    }

    #[test]
    fn a_job_span_continues_the_trace_that_queued_it() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let request = tracing::info_span!("request", trace_id = tracing::field::Empty);
            continue_trace(&request, Some(incoming));
            let queued = request
                .in_scope(|| traceparent_of(&Span::current()))
                .unwrap();
            assert!(
                queued.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{queued}"
            );
            assert!(
                !queued.contains("00f067aa0ba902b7"),
                "a new span id: {queued}"
            );

            let message = ReceivedJob {
                message_id: crate::domain::JobId::from_raw("m-1"),
                receipt: String::new(),
                receive_count: 1,
                body: String::new(),
                origin: JobOrigin {
                    correlation_id: Some("corr-1".into()),
                    traceparent: Some(queued.clone()),
                },
            };
            let job = job_span("transcribe", &message);
            let in_job = traceparent_of(&job).unwrap();
            assert!(in_job.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
            assert_ne!(in_job, queued);

            // Garbage starts a fresh trace rather than failing the job.
            let mut broken = message.clone();
            broken.origin.traceparent = Some("00-zz-00".into());
            let fresh = traceparent_of(&job_span("transcribe", &broken)).unwrap();
            assert!(!fresh.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
        });
    }
}
