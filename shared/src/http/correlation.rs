//! Correlation ids and the per-request span.
//!
//! Every request gets an id: the client's `X-Correlation-ID` when it is a sane token, a fresh
//! UUID otherwise. It is echoed in the response, stored in the request's span, carried into
//! queued jobs, and put in every error body. The request's span continues the caller's W3C
//! trace when it sends a `traceparent`.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

use super::error::ErrorReport;
use crate::telemetry::{self, sanitize_correlation_id};

pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The correlation id of a request, as an extractor-friendly extension.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

pub async fn correlate(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(sanitize_correlation_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(CorrelationId(id.clone()));

    // The route template, not the URI: paths carry ids and query strings carry cursors.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        correlation_id = %id,
        trace_id = tracing::field::Empty,
    );
    let traceparent = request
        .headers()
        .get(telemetry::trace::TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok());
    telemetry::continue_trace(&span, traceparent);
    telemetry::record_trace_id(&span);
    let started = Instant::now();
    let mut response = telemetry::in_correlation(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;

    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Some(ErrorReport(cause)) = response.extensions_mut().remove::<ErrorReport>() {
        tracing::error!(parent: &span, status, latency_ms, error.cause_chain = %cause, "request failed");
    } else {
        tracing::info!(parent: &span, status, latency_ms, "request completed");
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}
