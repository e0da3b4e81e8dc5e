//! Extractors that turn raw requests into typed, validated values or an [`ApiError`].

use axum::{
    extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Query},
    http::{header, request::Parts},
};

use super::error::ApiError;
use crate::{
    app::AppState,
    auth::{Principal, Scope},
    domain::TranscriptionId,
};

/// `Json<T>` whose rejections speak the API's error format.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Query<T>` whose rejections speak the API's error format.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The verified caller of an authenticated route.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<&Principal, ApiError> {
        if self.0.has(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::Forbidden(
                "insufficient_scope",
                "the token lacks the scope this route needs",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(ApiError::Unauthorized)?;
        Self::from_token(state, token).await
    }
}

impl Caller {
    /// The caller a bearer token names, wherever it arrived (a header, or the first message
    /// of a live dictation's WebSocket).
    pub(crate) async fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let principal = verify(state, token).await?;
        // A signed-out token is refused everywhere at once; when the list cannot be read, a
        // token is not taken on trust (503, the caller retries).
        let revoked = state
            .access
            .is_revoked(&principal.token_id, &principal.owner, principal.issued_at)
            .await?;
        if revoked {
            return Err(ApiError::Unauthorized);
        }
        Ok(Self(principal))
    }
}

/// A token is verified by the issuer it names and by no other: MMT's own keys for MMT's
/// tokens, a configured identity provider's for its own; any other issuer is refused.
async fn verify(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let claimed = crate::auth::oidc::claimed_issuer(token);
    let provider = claimed
        .as_deref()
        .filter(|iss| *iss != state.config.auth.jwt_issuer)
        .and_then(|iss| state.oidc.as_ref()?.for_issuer(iss));
    match provider {
        None => state
            .tokens
            .verify(token)
            .map_err(|_| ApiError::Unauthorized),
        Some(issuer) => issuer
            .verify(token)
            .await
            .map_err(|e| ApiError::Unavailable(e.into()))?
            .map_err(|_| ApiError::Unauthorized),
    }
}

/// For public routes that tell a verified caller more: no token, or one that does not
/// verify, is simply no caller.
impl OptionalFromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Self as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// Parses a path id; a malformed one is a 404 like any id the caller cannot see.
pub fn parse_transcription_id(raw: &str) -> Result<TranscriptionId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}
