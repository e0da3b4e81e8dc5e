//! Per-caller rate limiting (`RATE_LIMIT_PER_MINUTE`): a fixed one-minute window per verified
//! subject, or per client address for anonymous calls. Every limited answer carries
//! `X-RateLimit-Limit`, `-Remaining` and `-Reset`; over the limit the answer is 429 with
//! `Retry-After`. Health checks are never limited. In AWS the gateway's throttling is the
//! first line; this limit is per process (per function instance).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::error::ApiError;
use crate::app::AppState;

const WINDOW: Duration = Duration::from_secs(60);
/// Windows kept before stale ones are dropped, so memory stays bounded.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// The outcome of one request against its caller's window.
struct Decision {
    allowed: bool,
    remaining: u32,
    reset: Duration,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn check(&self, key: String, now: Instant) -> Decision {
        let mut windows = self.windows.lock().expect("rate limit lock");
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        let reset = WINDOW.saturating_sub(now.duration_since(*start));
        if *count >= self.per_minute {
            return Decision {
                allowed: false,
                remaining: 0,
                reset,
            };
        }
        *count += 1;
        Decision {
            allowed: true,
            remaining: self.per_minute - *count,
            reset,
        }
    }
}

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
        return format!("ip:{}", addr.ip());
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

/// The middleware; built only when `RATE_LIMIT_PER_MINUTE` is above 0.
pub async fn limit(
    State((state, limiter)): State<(AppState, std::sync::Arc<RateLimiter>)>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().starts_with("/health/") {
        return next.run(request).await;
    }
    let decision = limiter.check(caller_key(&state, &request), Instant::now());
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
    headers.insert("x-ratelimit-limit", HeaderValue::from(limiter.per_minute));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_the_limit_then_refuses_until_it_resets() {
        let limiter = RateLimiter::new(3);
        let t0 = Instant::now();
        let remaining: Vec<_> = (0..3)
            .map(|_| limiter.check("a".into(), t0).remaining)
            .collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = limiter.check("a".into(), t0 + Duration::from_secs(10));
        assert!(!refused.allowed);
        assert_eq!(refused.reset, Duration::from_secs(50));
        assert!(
            limiter.check("b".into(), t0).allowed,
            "callers are counted apart"
        );
        assert!(
            limiter.check("a".into(), t0 + WINDOW).allowed,
            "a new window"
        );
    }
}
