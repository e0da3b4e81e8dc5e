//! Per-caller rate limiting (`RATE_LIMIT_PER_MINUTE`): a fixed one-minute window per verified
//! subject, or per client address for anonymous calls. Every limited answer carries
//! `X-RateLimit-Limit`, `-Remaining` and `-Reset`; over the limit the answer is 429 with
//! `Retry-After`. Health checks are never limited. The counts live in the deployment's shared
//! store, so the limit holds across processes and Lambda instances; in AWS the gateway's
//! throttling is the first line.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::error::ApiError;
use crate::app::AppState;

/// Who a request counts against: its verified subject, else its client address.
fn caller_key(state: &AppState, request: &Request) -> String {
    let subject = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|(_, token)| state.tokens.verify(token.trim()).ok());
    if let Some(principal) = subject {
        return format!("sub:{}", principal.owner);
    }
    if let Some(ConnectInfo(addr)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = forwarded_client(request, state.config.http.trusted_proxy_hops);
        return format!("ip:{}", client.unwrap_or(addr.ip()));
    }
    // Behind API Gateway: the client address it saw (not a header a client could forge).
    #[cfg(feature = "lambda")]
    if let Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) =
        request
            .extensions()
            .get::<lambda_http::request::RequestContext>()
        && let Some(ip) = &context.http.source_ip
    {
        return format!("ip:{ip}");
    }
    "anonymous".to_owned()
}

/// The client address the trusted proxies report: `hops` entries from the right of
/// `X-Forwarded-For` (each proxy appends the address it saw; what a client wrote itself is
/// further left, and ignored). `None` without trusted proxies or a usable header.
fn forwarded_client(request: &Request, hops: usize) -> Option<IpAddr> {
    if hops == 0 {
        return None;
    }
    let chain: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    chain
        .len()
        .checked_sub(hops)
        .and_then(|index| chain[index].parse().ok())
}

pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limiter) = state.rate_limiter.clone() else {
        return next.run(request).await;
    };
    if request.uri().path().starts_with("/health/") {
        return next.run(request).await;
    }
    let decision = limiter
        .check(&caller_key(&state, &request), state.clock.now())
        .await;
    let reset_s = decision.reset.as_secs().max(1);
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        ApiError::RateLimited {
            retry_after_s: reset_s,
        }
        .into_response()
    };
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(limiter.per_minute()));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset_s));
    if !decision.allowed {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(reset_s));
    }
    response
}
