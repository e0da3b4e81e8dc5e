//! Logs, traces and error reports.
//!
//! * Logs: `tracing` events as JSON lines ([`logs::JsonLines`]) or readable text, filtered by
//!   `RUST_LOG` (or `LOG_LEVEL`), default `info`.
//! * Traces: every span is an OpenTelemetry span, so a W3C `traceparent` can travel with a
//!   request into its jobs ([`trace`]); they leave the process only when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector.
//! * Errors: error events go to Sentry when `SENTRY_DSN` is set, through a scrubber
//!   ([`error_reports`]).
//!
//! Spans carry route templates and opaque ids; never names, transcripts, file names or tokens.

pub mod error_reports;
pub mod logs;
pub mod trace;

use std::{io::IsTerminal, sync::OnceLock, time::Duration};

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer, SpanLayer};
use tracing_subscriber::{
    EnvFilter, Layer, filter::LevelFilter, fmt, fmt::format::JsonFields, prelude::*,
};

pub use trace::{continue_trace, job_origin, job_span, record_trace_id, traceparent_of};

use crate::config::{LogFormat, OtlpConfig, OtlpProtocol, TelemetryConfig};

/// How long a Lambda invocation waits, at most, for its spans and error reports to be sent
/// before the runtime may freeze the process.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The tracer provider of this process, kept to flush it at the end of a Lambda invocation.
static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Keep it for the life of the process: dropping it sends what is still buffered.
#[must_use = "telemetry stops when the guard is dropped"]
pub struct TelemetryGuard {
    _sentry: Option<sentry::ClientInitGuard>,
    installed: bool,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if self.installed
            && let Some(provider) = TRACER_PROVIDER.get()
        {
            let _ = provider.shutdown();
        }
    }
}

/// Installs logging, tracing and error reporting for this process. `component` names it in
/// every log line (`serve`, `worker`, a Lambda function's crate) unless Lambda gives the
/// deployed function's name. A second call (tests) changes nothing.
pub fn init(config: &TelemetryConfig, component: &str) -> TelemetryGuard {
    let function = config
        .function_name
        .clone()
        .unwrap_or_else(|| component.to_owned());
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            EnvFilter::try_new(std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".into()))
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = tracer_provider(config, &function);
    let output = match config.log_format {
        LogFormat::Json => fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(logs::JsonLines {
                function: function.clone(),
            })
            .boxed(),
        LogFormat::Text => fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
    };
    let sentry_guard = config.sentry.as_ref().map(error_reports::init);
    let reports = sentry_guard.is_some();
    let sentry_spans = config
        .sentry
        .as_ref()
        .is_some_and(|s| s.traces_sample_rate > 0.0);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("mmt")))
        // Errors become Sentry events; what led up to them rides along as breadcrumbs.
        .with(reports.then(|| ErrorLayer::new().with_filter(LevelFilter::ERROR)))
        .with(reports.then(|| BreadcrumbLayer::new().with_filter(LevelFilter::INFO)))
        .with(sentry_spans.then(|| SpanLayer::new().with_filter(LevelFilter::INFO)))
        .try_init()
        .is_ok();
    if installed {
        let _ = TRACER_PROVIDER.set(provider);
    }
    TelemetryGuard {
        _sentry: sentry_guard,
        installed,
    }
}

/// Spans are always made (they carry the trace context jobs inherit); they are exported only
/// when a collector is configured.
fn tracer_provider(config: &TelemetryConfig, function: &str) -> SdkTracerProvider {
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment.name", config.environment.as_str()),
            KeyValue::new("faas.name", function.to_owned()),
        ])
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(otlp) = &config.otlp else {
        return builder.build();
    };
    match otlp_exporter(otlp) {
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(err) => {
            eprintln!("mmt: traces will not be exported: {err}");
            builder.build()
        }
    }
}

fn otlp_exporter(
    otlp: &OtlpConfig,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    let endpoint = format!("{}/v1/traces", otlp.endpoint);
    let protocol = match otlp.protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    // The exporter's blocking HTTP client owns a runtime of its own, which may be neither
    // built nor dropped on a thread that drives async tasks: build it on a plain thread.
    std::thread::spawn(move || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_protocol(protocol)
            .with_timeout(Duration::from_secs(5))
            .build()
    })
    .join()
    .expect("building the OTLP exporter panicked")
}

/// Sends buffered spans and error reports now. A Lambda function calls this before it answers:
/// between invocations the runtime may freeze the process with them still in memory.
pub async fn flush() {
    let _ = tokio::task::spawn_blocking(|| {
        if let Some(provider) = TRACER_PROVIDER.get() {
            let _ = provider.force_flush();
        }
        if let Some(client) = sentry::Hub::current().client() {
            client.flush(Some(FLUSH_TIMEOUT));
        }
    })
    .await;
}

tokio::task_local! {
    static CORRELATION_ID: String;
}

/// Accepts a client id only if it cannot smuggle anything into logs or headers.
pub fn sanitize_correlation_id(raw: &str) -> Option<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then(|| raw.to_owned())
}

/// The current request's correlation id, inside a request.
pub fn current_correlation_id() -> Option<String> {
    CORRELATION_ID.try_with(Clone::clone).ok()
}

/// Runs `work` as part of the request (or job) with correlation id `id`.
pub async fn in_correlation<F: std::future::Future>(id: String, work: F) -> F::Output {
    CORRELATION_ID.scope(id, work).await
}

pub use crate::ports::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_tokens_are_accepted() {
        assert_eq!(
            sanitize_correlation_id("abc-123_x.y").as_deref(),
            Some("abc-123_x.y")
        );
        assert_eq!(sanitize_correlation_id("a b"), None);
        assert_eq!(sanitize_correlation_id("x\r\nSet-Cookie: y"), None);
        assert_eq!(sanitize_correlation_id(&"a".repeat(65)), None);
    }
}
