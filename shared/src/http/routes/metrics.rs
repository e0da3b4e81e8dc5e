//! `GET /metrics` and the middleware that counts every request.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    app::AppState,
    metrics::{emf_line, emit_emf},
};

/// Middleware: counts each request under its route template (never the raw path).
pub async fn track_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state
        .metrics
        .record_request(&route, &method, status, seconds);
    if state.config.in_lambda {
        emit_emf(emf_line(
            &[("Route", route), ("Status", status.to_string())],
            &[
                ("Requests", "Count", 1.0),
                ("Latency", "Milliseconds", seconds * 1000.0),
            ],
        ));
    }
    response
}

/// `GET /metrics`; with `METRICS_TOKEN` set, only for `Authorization: Bearer <token>`.
pub async fn metrics_endpoint(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(expected) = &state.config.http.metrics_token {
        use secrecy::ExposeSecret;
        use sha2::Digest;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let matches = aws_lc_rs::constant_time::verify_slices_are_equal(
            &sha2::Sha256::digest(given.as_bytes()),
            &sha2::Sha256::digest(expected.expose_secret().as_bytes()),
        )
        .is_ok();
        if !matches {
            return crate::http::ApiError::Unauthorized.into_response();
        }
    }
    let mut queues = Vec::new();
    for (name, queue) in [
        ("transcribe", Some(state.transcribe_queue.clone())),
        ("ehr", state.ehr.as_ref().map(|e| e.queue.clone())),
    ] {
        if let Some(queue) = queue
            && let Ok(stats) = queue.stats().await
        {
            queues.push((
                name,
                stats.visible,
                stats.in_flight,
                stats.dead_lettered,
                stats.oldest_age_s,
            ));
        }
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(&queues),
    )
        .into_response()
}
