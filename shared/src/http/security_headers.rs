//! Response headers every answer carries: no sniffing, no framing, no referrer, HTTPS only,
//! no caching of PHI, and a content security policy that allows nothing (the API serves data,
//! not pages). A handler that serves a page (the docs) sets its own policy, which is kept.

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::ApiError;

/// The policy of a response that is not a page.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

const HEADERS: &[(HeaderName, &str)] = &[
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CONTENT_SECURITY_POLICY, API_CONTENT_SECURITY_POLICY),
    // Transcripts and records are PHI: no shared or browser cache keeps them.
    (header::CACHE_CONTROL, "no-store"),
];

pub async fn add_security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), HeaderValue::from_static(value));
        }
    }
    response
}

/// The most header bytes (names and values) one request may carry. Legitimate requests use a
/// few hundred; API Gateway itself stops at 10 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuses requests whose headers are oversized (431) before any handler or extractor reads
/// them.
pub async fn limit_header_size(request: Request, next: Next) -> Response {
    let total: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if total > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge {
            limit: MAX_HEADER_BYTES,
        }
        .into_response();
    }
    next.run(request).await
}
