//! Per-caller rate limiting (`RATE_LIMIT_PER_MINUTE`): a fixed one-minute window per verified
//! subject, or per client address for anonymous calls. Every limited answer carries
//! `X-RateLimit-Limit`, `-Remaining` and `-Reset`; over the limit the answer is 429 with
//! `Retry-After`. Health checks are never limited. The counts live in the deployment's shared
//! store, so the limit holds across processes and Lambda instances; in AWS the gateway's
//! throttling is the first line.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::error::ApiError;
use crate::{app::AppState, domain::OwnerId};

/// Who sent a request: its verified subject, if any, and its client address, if known.
struct Sender {
    subject: Option<OwnerId>,
    address: Option<String>,
}

impl Sender {
    fn of(state: &AppState, request: &Request) -> Self {
        let subject = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .and_then(|(_, token)| state.tokens.verify(token.trim()).ok())
            .map(|principal| principal.owner);
        Self {
            subject,
            address: client_address(state, request),
        }
    }

    /// Who a request counts against: its verified subject, else its client address.
    fn key(&self) -> String {
        match (&self.subject, &self.address) {
            (Some(subject), _) => format!("sub:{subject}"),
            (None, Some(address)) => format!("ip:{address}"),
            (None, None) => "anonymous".to_owned(),
        }
    }
}

fn client_address(state: &AppState, request: &Request) -> Option<String> {
    if let Some(ConnectInfo(addr)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = forwarded_client(request, state.config.http.trusted_proxy_hops);
        return Some(client.unwrap_or(addr.ip()).to_string());
    }
    // Behind API Gateway: the client address it saw (not a header a client could forge).
    #[cfg(feature = "lambda")]
    if let Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) =
        request
            .extensions()
            .get::<lambda_http::request::RequestContext>()
        && let Some(ip) = &context.http.source_ip
    {
        return Some(ip.clone());
    }
    None
}

/// The routes that start an upload (and, for the cloud engine, a paid transcription).
fn starts_an_upload(request: &Request) -> bool {
    request.method() == Method::POST
        && matches!(
            request.uri().path(),
            "/v1/transcriptions"
                | "/v1/uploads"
                | "/v1/audio/transcriptions"
                | "/v1/audio/translations"
        )
}

/// Guests try the product; they do not get to use it as a free service: uploads per guest and
/// per address per day, counted in the shared store. `Some(error)` when one is used up.
async fn guest_quota_refusal(state: &AppState, sender: &Sender) -> Option<ApiError> {
    let guest = sender.subject.as_ref().filter(|s| s.is_guest())?;
    let auth = &state.config.auth.limits;
    let now = state.clock.now();
    let mut quotas = vec![(format!("guest-uploads:{guest}"), auth.guest_uploads_per_day)];
    if let Some(address) = &sender.address {
        quotas.push((
            format!("guest-uploads-from:{address}"),
            auth.guest_uploads_per_address_per_day,
        ));
    }
    for (key, quota) in quotas.into_iter().filter(|(_, quota)| *quota > 0) {
        match state.access.increment(&key, now, GUEST_QUOTA_WINDOW).await {
            Ok(counted) if counted.count > u64::from(quota) => {
                let retry_after_s = (counted.window_ends - now).num_seconds().max(1) as u64;
                return Some(ApiError::GuestQuotaExceeded { retry_after_s });
            }
            Ok(_) => {}
            // Not knowing is not a reason to refuse a guest: the rate limit still applies.
            Err(err) => tracing::warn!(
                error.cause_chain = %crate::ports::error_chain(&err),
                "guest quota counters unavailable"
            ),
        }
    }
    None
}

const GUEST_QUOTA_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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
    if request.uri().path().starts_with("/health/") {
        return next.run(request).await;
    }
    let sender = Sender::of(&state, &request);
    let Some(limiter) = state.rate_limiter.clone() else {
        return within_guest_quota(&state, &sender, request, next).await;
    };
    let decision = limiter.check(&sender.key(), state.clock.now()).await;
    let reset_s = decision.reset.as_secs().max(1);
    let mut response = if decision.allowed {
        within_guest_quota(&state, &sender, request, next).await
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

/// Runs the request unless it starts an upload its guest sender has no quota left for.
async fn within_guest_quota(
    state: &AppState,
    sender: &Sender,
    request: Request,
    next: Next,
) -> Response {
    let refusal = match starts_an_upload(&request) {
        true => guest_quota_refusal(state, sender).await,
        false => None,
    };
    match refusal {
        Some(refusal) => refusal.into_response(),
        None => next.run(request).await,
    }
}
