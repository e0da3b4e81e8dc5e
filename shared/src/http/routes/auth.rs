use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    auth::{IssuedToken, Scope, verify_password},
    domain::OwnerId,
    http::{ApiError, ErrorBody, extract::ApiJson},
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(guest))
        .routes(routes!(login))
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
    if !state.config.allow_guest_auth {
        return Err(ApiError::Forbidden(
            "guest_auth_disabled",
            "guest sign-in is disabled on this deployment",
        ));
    }
    let token = state
        .tokens
        .issue(&OwnerId::new_guest(), &[Scope::Read, Scope::Write])
        .map_err(ApiError::internal)?;
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
        (status = 403, description = "Local sign-in is disabled (ALLOW_LOCAL_LOGIN)", body = ErrorBody)
    )
)]
async fn login(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<IssuedToken>, ApiError> {
    if !state.config.allow_local_login {
        return Err(ApiError::Forbidden(
            "local_login_disabled",
            "password sign-in is disabled on this deployment",
        ));
    }
    let hash = state
        .config
        .local_users
        .iter()
        .find(|u| u.username == request.username)
        .map(|u| u.password_hash.clone());
    let known_name = hash.is_some().then(|| request.username.clone());
    // argon2 is deliberately slow: keep it off the async workers.
    let verified =
        tokio::task::spawn_blocking(move || verify_password(hash.as_deref(), &request.password))
            .await
            .map_err(ApiError::internal)?;
    let username = match (verified, known_name) {
        (true, Some(name)) => name,
        _ => return Err(ApiError::InvalidCredentials),
    };
    let owner = OwnerId::for_user(&username).map_err(ApiError::internal)?;
    let token = state
        .tokens
        .issue(&owner, &[Scope::Read, Scope::Write])
        .map_err(ApiError::internal)?;
    Ok(Json(token))
}
