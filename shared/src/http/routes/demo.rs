//! `GET /demo/status`: what this deployment offers, for the web page.

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{app::AppState, domain::EngineKind};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status))
}

#[derive(Serialize, ToSchema)]
pub struct DemoStatus {
    demo_mode: bool,
    /// dev, test, staging or prod.
    environment: &'static str,
    version: &'static str,
    cloud_enabled: bool,
    local_enabled: bool,
    guest_auth: bool,
    local_login: bool,
    default_engine: Option<EngineKind>,
    /// Whether `POST /v1/transcriptions/{id}/ehr` is configured.
    ehr_enabled: bool,
    /// Whether `POST /v1/transcriptions/{id}/structure` can draft with a model.
    note_drafts: bool,
    /// The page's sign-in through the clinic's identity provider (public client, PKCE).
    oidc_sign_in: Option<crate::config::WebSignIn>,
    /// Whether live dictation (`GET /v1/stream`) is offered.
    live_dictation: bool,
    /// Where to dictate, when not at this API (`LIVE_DICTATION_URL`).
    live_dictation_url: Option<String>,
}

/// What this deployment is: demo or production, which engines and sign-in methods are on.
#[utoipa::path(get, path = "/demo/status", tag = "status", responses((status = 200, body = DemoStatus)))]
async fn status(State(state): State<AppState>) -> Json<DemoStatus> {
    let c = &state.config;
    Json(DemoStatus {
        demo_mode: c.demo_mode,
        environment: c.environment.as_str(),
        version: env!("CARGO_PKG_VERSION"),
        cloud_enabled: c.engines.enabled(EngineKind::Cloud),
        local_enabled: c.engines.enabled(EngineKind::Local),
        guest_auth: c.auth.allow_guest_auth,
        local_login: c.auth.allow_local_login,
        default_engine: c.engines.default_engine,
        ehr_enabled: c.ehr.is_some(),
        note_drafts: state.drafter.is_some(),
        oidc_sign_in: c.web_sign_in.clone(),
        live_dictation: c.live.offered(),
        live_dictation_url: c.live.public_url.clone(),
    })
}
