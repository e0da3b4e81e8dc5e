//! `GET /v1/admin/audit`: the audit trail, and `GET /v1/admin/audit/verify`: its hash chains
//! checked; for admin tokens only.

use axum::{Json, extract::State};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::AppState,
    auth::Scope,
    domain::{AuditAction, AuditEvent, AuditOutcome, AuditQuery, ChainReport, verify_chains},
    http::{
        ApiError, ErrorBody,
        extract::{ApiQuery, Caller},
    },
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit_events))
        .routes(routes!(verify_audit_chains))
}

/// The widest window one query may read.
const MAX_WINDOW_DAYS: i64 = 92;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// RFC 3339; default 24 hours ago.
    since: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive; default now.
    until: Option<DateTime<Utc>>,
    /// Only this subject (`guest:…`, `user:…`, `admin`).
    subject: Option<String>,
    /// Only this transcription.
    record_id: Option<String>,
    /// Only this action (create, read, download, delete, ehr_push, login, logout, sweep,
    /// key_rotation, audit_query, vocabulary_change, edit, ehr_lookup).
    action: Option<String>,
    /// 1–1000, default 100.
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvents {
    /// Newest first.
    events: Vec<AuditEvent>,
}

/// The audit trail: who did what to which record, newest first. Needs the `admin` scope.
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "admin",
    params(AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AuditEvents),
        (status = 400, description = "Bad filter or window", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the admin scope", body = ErrorBody)
    )
)]
async fn audit_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditEvents>, ApiError> {
    let principal = match caller.require(Scope::Admin) {
        Ok(principal) => principal,
        Err(err) => {
            let event = AuditEvent::now(
                AuditAction::AuditQuery,
                AuditOutcome::Denied,
                caller.0.owner.as_str(),
            );
            state.audit_trail().record(event).await;
            return Err(err);
        }
    };
    let bad = |message: &'static str| ApiError::bad_request("invalid_request", message);
    let until = params.until.unwrap_or_else(|| state.clock.now());
    let since = params.since.unwrap_or(until - Duration::hours(24));
    if since >= until {
        return Err(bad("since must be before until"));
    }
    if until - since > Duration::days(MAX_WINDOW_DAYS) {
        return Err(bad("the window may span at most 92 days"));
    }
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad("limit must be between 1 and 1000"));
    }
    let action = params
        .action
        .as_deref()
        .map(|a| AuditAction::parse(a).ok_or(bad("unknown action")))
        .transpose()?;
    let record_id = params
        .record_id
        .as_deref()
        .map(|id| {
            id.parse()
                .map_err(|_| bad("record_id is not a transcription id"))
        })
        .transpose()?;
    let query = AuditQuery {
        since,
        until,
        subject: params.subject,
        record_id,
        action,
        limit,
    };
    let events = state
        .audit
        .query(&query)
        .await
        .map_err(ApiError::internal)?;
    let event = AuditEvent::now(
        AuditAction::AuditQuery,
        AuditOutcome::Success,
        principal.owner.as_str(),
    )
    .detail(format!("{} events returned", events.len()));
    state.audit_trail().record(event).await;
    Ok(Json(AuditEvents { events }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// RFC 3339; default 24 hours ago.
    since: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive; default now.
    until: Option<DateTime<Utc>>,
}

/// The most events one check reads.
const MAX_VERIFIED_EVENTS: u32 = 200_000;

/// Checks the hash chains of the trail over a window: whether any event was changed,
/// removed or inserted after it was written (`problems` says where). Needs the `admin` scope.
#[utoipa::path(
    get,
    path = "/v1/admin/audit/verify",
    tag = "admin",
    params(VerifyParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ChainReport),
        (status = 400, description = "Bad window", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the admin scope", body = ErrorBody)
    )
)]
async fn verify_audit_chains(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<VerifyParams>,
) -> Result<Json<ChainReport>, ApiError> {
    let principal = caller.require(Scope::Admin)?;
    let until = params.until.unwrap_or_else(|| state.clock.now());
    let since = params.since.unwrap_or(until - Duration::hours(24));
    if since >= until || until - since > Duration::days(MAX_WINDOW_DAYS) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "since must be before until, at most 92 days apart",
        ));
    }
    let events = state
        .audit
        .query(&AuditQuery {
            since,
            until,
            subject: None,
            record_id: None,
            action: None,
            limit: MAX_VERIFIED_EVENTS,
        })
        .await
        .map_err(ApiError::internal)?;
    let report = verify_chains(&events);
    let event = AuditEvent::now(
        AuditAction::AuditQuery,
        AuditOutcome::Success,
        principal.owner.as_str(),
    )
    .detail(format!(
        "chains checked: {} events, {} problems",
        report.events,
        report.problems.len()
    ));
    state.audit_trail().record(event).await;
    Ok(Json(report))
}
