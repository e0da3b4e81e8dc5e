//! Sign-in: `POST /auth/guest`, `/auth/login`, `/auth/admin`, and the JWKS.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Digest;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::AppState,
    auth::{IssuedToken, Scope},
    domain::OwnerId,
    domain::{AuditAction, AuditEvent, AuditOutcome},
    http::{
        ApiError, ErrorBody,
        extract::{ApiJson, Caller},
    },
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(guest))
        .routes(routes!(login))
        .routes(routes!(admin))
        .routes(routes!(logout))
        .routes(routes!(jwks))
}

/// What a signed-in clinician may do: their own records, and push them to the EHR.
const USER_SCOPES: &[Scope] = &[Scope::Read, Scope::Write, Scope::EhrPush];
/// Guests try the product: their own records only.
const GUEST_SCOPES: &[Scope] = &[Scope::Read, Scope::Write];

async fn audit_login(state: &AppState, subject: &str, outcome: AuditOutcome) {
    state
        .audit_trail()
        .record(AuditEvent::now(AuditAction::Login, outcome, subject))
        .await;
}

/// Every successful sign-in: a token for `owner` with `scopes`, and its line in the audit trail.
async fn sign_in(
    state: &AppState,
    owner: &OwnerId,
    scopes: &[Scope],
) -> Result<IssuedToken, ApiError> {
    let token = state
        .tokens
        .issue(owner, scopes)
        .map_err(ApiError::internal)?;
    audit_login(state, owner.as_str(), AuditOutcome::Success).await;
    Ok(token)
}

/// How long a sign-in waits for a free password check before it is asked to retry.
const PASSWORD_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// 429 `account_locked` (with `Retry-After`) while `account` is locked out after too many
/// failed sign-ins; the right password does not help until the window ends.
async fn refuse_locked_account(state: &AppState, account: &str) -> Result<(), ApiError> {
    match state
        .sign_in_guard
        .locked_for(account, state.clock.now())
        .await?
    {
        Some(remaining) => {
            let subject = OwnerId::for_user(account)
                .map_or_else(|_| "unknown".to_owned(), |o| o.as_str().to_owned());
            audit_login(state, &subject, AuditOutcome::Denied).await;
            Err(ApiError::AccountLocked {
                retry_after_s: remaining.as_secs().max(1),
            })
        }
        None => Ok(()),
    }
}

/// A fresh guest identity that may upload and read its own transcriptions.
#[utoipa::path(
    post,
    path = "/auth/guest",
    tag = "auth",
    responses(
        (status = 201, description = "A token for a new guest subject", body = IssuedToken),
        (status = 403, description = "Guest sign-in is disabled (ALLOW_GUEST_AUTH)", body = ErrorBody)
    )
)]
async fn guest(State(state): State<AppState>) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    if !state.config.auth.allow_guest_auth {
        return Err(ApiError::Forbidden(
            "guest_auth_disabled",
            "guest sign-in is disabled on this deployment",
        ));
    }
    let token = sign_in(&state, &OwnerId::new_guest(), GUEST_SCOPES).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// Sign in as a user listed in LOCAL_LOGIN_USERS.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A token for the user", body = IssuedToken),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong user name or password", body = ErrorBody),
        (status = 429, description = "Locked out after LOGIN_MAX_FAILURES failed sign-ins (Retry-After), or too many password checks at once", body = ErrorBody),
        (status = 403, description = "Local sign-in is disabled (ALLOW_LOCAL_LOGIN)", body = ErrorBody)
    )
)]
async fn login(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<IssuedToken>, ApiError> {
    if !state.config.auth.allow_local_login {
        return Err(ApiError::Forbidden(
            "local_login_disabled",
            "password sign-in is disabled on this deployment",
        ));
    }
    let account = request.username.clone();
    // A free checker first, then the lockout: no check starts after the account locked.
    let slot = state
        .password_checks
        .slot(PASSWORD_CHECK_WAIT)
        .await
        .map_err(|_| ApiError::RateLimited { retry_after_s: 1 })?;
    refuse_locked_account(&state, &account).await?;
    let hash = state
        .config
        .auth
        .local_users
        .iter()
        .find(|u| u.username == request.username)
        .map(|u| u.password_hash.clone());
    let known_name = hash.is_some().then(|| request.username.clone());
    // argon2 is deliberately slow and big (19 MiB): on the checker threads, a bounded number
    // at once. A flood waits briefly for a slot, then is told to come back.
    let verified = slot
        .verify(hash, request.password)
        .await
        .map_err(|_| ApiError::RateLimited { retry_after_s: 1 })?;
    let username = match (verified, known_name) {
        (true, Some(name)) => name,
        (_, known) => {
            state
                .sign_in_guard
                .failed(&account, state.clock.now())
                .await?;
            // Only a configured name is worth recording; anything else is noise (or a probe).
            let subject = known
                .and_then(|name| OwnerId::for_user(&name).ok())
                .map_or_else(|| "unknown".to_owned(), |o| o.as_str().to_owned());
            audit_login(&state, &subject, AuditOutcome::Denied).await;
            return Err(ApiError::InvalidCredentials);
        }
    };
    // Held until here: a failure is counted before the next check looks at the lockout.
    drop(slot);
    let owner = OwnerId::for_user(&username).map_err(ApiError::internal)?;
    Ok(Json(sign_in(&state, &owner, USER_SCOPES).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct AdminLoginRequest {
    api_key: String,
}

/// The subject of admin tokens.
const ADMIN_SUBJECT: &str = "admin";

/// Exchange ADMIN_API_KEY for a short-lived admin token (scope `admin`: the audit trail).
#[utoipa::path(
    post,
    path = "/auth/admin",
    tag = "auth",
    request_body = AdminLoginRequest,
    responses(
        (status = 200, description = "An admin token", body = IssuedToken),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong key", body = ErrorBody),
        (status = 403, description = "No ADMIN_API_KEY is configured", body = ErrorBody)
    )
)]
async fn admin(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<AdminLoginRequest>,
) -> Result<Json<IssuedToken>, ApiError> {
    let Some(expected) = &state.config.auth.admin_api_key else {
        return Err(ApiError::Forbidden(
            "admin_disabled",
            "no admin key is configured on this deployment",
        ));
    };
    refuse_locked_account(&state, ADMIN_SUBJECT).await?;
    // Compared as digests, in constant time: neither length nor prefix leaks.
    let digest = |key: &str| sha2::Sha256::digest(key.as_bytes());
    let matches = aws_lc_rs::constant_time::verify_slices_are_equal(
        &digest(expected.expose_secret()),
        &digest(&request.api_key),
    )
    .is_ok();
    if !matches {
        state
            .sign_in_guard
            .failed(ADMIN_SUBJECT, state.clock.now())
            .await?;
        audit_login(&state, ADMIN_SUBJECT, AuditOutcome::Denied).await;
        return Err(ApiError::InvalidCredentials);
    }
    let owner = OwnerId::parse(ADMIN_SUBJECT).map_err(ApiError::internal)?;
    Ok(Json(sign_in(&state, &owner, &[Scope::Admin]).await?))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct LogoutRequest {
    /// Also revoke every other token issued to this subject until now (sign out everywhere).
    #[serde(default)]
    everywhere: bool,
}

/// Sign out: the token is revoked at once on every instance (and, with `everywhere`, every
/// token issued to the subject so far).
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    request_body(content = LogoutRequest, description = "Optional"),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "The revocation could not be stored; the token still works", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let request: LogoutRequest = if body.is_empty() {
        LogoutRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest {
            code: "invalid_body",
            message: "the body must be empty or {\"everywhere\": true|false}".into(),
        })?
    };
    let principal = &caller.0;
    state
        .access
        .revoke_token(&principal.token_id, principal.expires_at)
        .await?;
    if request.everywhere {
        // Tokens carry whole seconds: one issued in this very second is revoked too.
        let now = state.clock.now();
        state.access.revoke_owner(&principal.owner, now).await?;
    }
    state
        .audit_trail()
        .record(AuditEvent::now(
            AuditAction::Logout,
            AuditOutcome::Success,
            principal.owner.as_str(),
        ))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys that verify this deployment's tokens (RS256 only; empty with HS256).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    responses((status = 200, description = "A JSON Web Key Set", content_type = "application/json"))
)]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.tokens.jwks()),
    )
}
