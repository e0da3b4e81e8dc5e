//! `POST|GET /v1/transcriptions/{id}/ehr` and `GET /v1/admin/ehr`: asking for EHR pushes and
//! following them; `GET /v1/ehr/patients` and `.../{id}/encounters`: the picker that finds
//! where a note goes.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::transcriptions::load_owned;
use crate::config::EhrLoginMode;
use crate::{
    app::{
        AppState,
        deliveries::{self, Requested},
    },
    auth::Scope,
    domain::AuditAction,
    domain::{
        DeliveryStatus, EhrDelivery, EhrReceipt, EncounterSummary, MIN_NOTE_BYTES, NoteSection,
        OwnerId, PatientQuery, PatientSummary, Status,
    },
    http::{
        ApiError, ErrorBody,
        extract::{ApiJson, ApiQuery, Caller},
    },
};

/// Served by the `ehr-push` function, the one whose role reaches the EHR connection's store.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(push_to_ehr, list_deliveries))
        .routes(routes!(ehr_connection))
        .routes(routes!(find_patients))
        .routes(routes!(patient_encounters))
        .routes(routes!(link_state, start_link, unlink))
        .routes(routes!(complete_link))
}

impl From<deliveries::LinkError> for ApiError {
    fn from(err: deliveries::LinkError) -> Self {
        match err {
            deliveries::LinkError::NoPendingLink => {
                Self::bad_request("invalid_request", err.to_string())
            }
            deliveries::LinkError::Store(err) => err.into(),
            deliveries::LinkError::Ehr(err) => deliveries::LookupError::Ehr(err).into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    /// `per-clinician`: notes are written with the clinician's own EHR login, linked here;
    /// `shared`: with the deployment's one login (nothing to link).
    mode: &'static str,
    /// Whether the caller has linked their account.
    linked: bool,
    /// `connected`, or `needs_login` with the reason (link again).
    state: Option<crate::ports::ConnectionState>,
    /// Whether the caller may push to the EHR at all (`ehr:push`; guests may not).
    may_push: bool,
}

/// The caller's own EHR link (any signed-in caller may ask; only `ehr:push` may link).
#[utoipa::path(
    get,
    path = "/v1/ehr/link",
    tag = "ehr",
    security(("bearer" = [])),
    responses(
        (status = 200, body = LinkView),
        (status = 401, body = ErrorBody),
        (status = 501, description = "EHR push is not configured (EHR_TARGET)", body = ErrorBody)
    )
)]
async fn link_state(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<LinkView>, ApiError> {
    let principal = caller.require(Scope::Read)?;
    let deliveries = state.deliveries().ok_or(ApiError::EhrNotConfigured)?;
    let may_push = principal.has(Scope::EhrPush);
    if deliveries.login_mode() == EhrLoginMode::Shared || !may_push {
        let mode = match deliveries.login_mode() {
            EhrLoginMode::Shared => "shared",
            EhrLoginMode::PerClinician => "per-clinician",
        };
        return Ok(Json(LinkView {
            mode,
            linked: false,
            state: None,
            may_push,
        }));
    }
    let link = deliveries
        .link_state(&principal.owner)
        .await
        .map_err(|e| ApiError::Unavailable(Box::new(e)))?;
    Ok(Json(LinkView {
        mode: "per-clinician",
        linked: link.is_some(),
        state: link,
        may_push,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkStart {
    /// Send the clinician's browser here: the EHR's own sign-in; it comes back to the page
    /// with `code` and `state`.
    authorization_url: String,
}

/// Starts linking the caller's own EHR account (OAuth2 authorization code with PKCE; the
/// verifier stays on the server).
#[utoipa::path(
    post,
    path = "/v1/ehr/link",
    tag = "ehr",
    security(("bearer" = [])),
    responses(
        (status = 200, body = LinkStart),
        (status = 400, description = "This deployment uses one shared EHR login", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the ehr:push scope", body = ErrorBody),
        (status = 501, description = "EHR push is not configured (EHR_TARGET)", body = ErrorBody)
    )
)]
async fn start_link(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<LinkStart>, ApiError> {
    let principal = caller.require(Scope::EhrPush)?;
    let deliveries = state.deliveries().ok_or(ApiError::EhrNotConfigured)?;
    if deliveries.login_mode() == EhrLoginMode::Shared {
        return Err(ApiError::bad_request(
            "shared_ehr_login",
            "this deployment writes every note with one shared EHR login (EHR_LOGIN=shared)",
        ));
    }
    let authorization_url = deliveries.start_link(&principal.owner).await?;
    Ok(Json(LinkStart { authorization_url }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkAnswer {
    /// The `code` the EHR sent back.
    code: String,
    /// The `state` it sent back.
    state: String,
}

/// Finishes the link with the EHR's answer: the caller's notes are written with their own
/// login from now on.
#[utoipa::path(
    post,
    path = "/v1/ehr/link/complete",
    tag = "ehr",
    request_body = LinkAnswer,
    security(("bearer" = [])),
    responses(
        (status = 200, body = LinkView),
        (status = 400, description = "No link was started for this state, or the EHR refused the code", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the ehr:push scope", body = ErrorBody),
        (status = 501, description = "EHR push is not configured (EHR_TARGET)", body = ErrorBody)
    )
)]
async fn complete_link(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(answer): ApiJson<LinkAnswer>,
) -> Result<Json<LinkView>, ApiError> {
    let principal = caller.require(Scope::EhrPush)?;
    let deliveries = state.deliveries().ok_or(ApiError::EhrNotConfigured)?;
    deliveries
        .complete_link(&principal.owner, &answer.code, &answer.state)
        .await?;
    Ok(Json(LinkView {
        mode: "per-clinician",
        linked: true,
        state: None,
        may_push: true,
    }))
}

/// Forgets the caller's EHR link (their pushes then ask for a new one).
#[utoipa::path(
    delete,
    path = "/v1/ehr/link",
    tag = "ehr",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Unlinked (or nothing was linked)"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the ehr:push scope", body = ErrorBody),
        (status = 501, description = "EHR push is not configured (EHR_TARGET)", body = ErrorBody)
    )
)]
async fn unlink(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    let principal = caller.require(Scope::EhrPush)?;
    let deliveries = state.deliveries().ok_or(ApiError::EhrNotConfigured)?;
    deliveries.unlink(&principal.owner).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatientSearch {
    /// Part of a name ("ort", "valentina ort"), a birth date (`YYYY-MM-DD`) or a record
    /// number.
    q: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PatientList {
    /// At most 20; refine the search for more.
    patients: Vec<PatientSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EncounterList {
    /// Newest first.
    encounters: Vec<EncounterSummary>,
}

/// Counts a look-up against the caller's own limit (`EHR_LOOKUPS_PER_MINUTE`).
async fn lookup_allowed(state: &AppState, caller: &OwnerId) -> Result<(), ApiError> {
    let Some(limiter) = &state.ehr_lookups else {
        return Ok(());
    };
    let decision = limiter.check(caller.as_str(), state.clock.now()).await;
    if decision.allowed {
        Ok(())
    } else {
        Err(ApiError::RateLimited {
            retry_after_s: decision.reset.as_secs().max(1),
        })
    }
}

/// Finds patients in the EHR for the note's patient picker: only what a picker shows (name,
/// birth date, record number, id). Needs the `ehr:push` scope; audited by count only.
#[utoipa::path(
    get,
    path = "/v1/ehr/patients",
    tag = "ehr",
    params(PatientSearch),
    security(("bearer" = [])),
    responses(
        (status = 200, body = PatientList),
        (status = 400, description = "q is not a name, birth date or record number", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the ehr:push scope", body = ErrorBody),
        (status = 429, description = "Too many look-ups (EHR_LOOKUPS_PER_MINUTE)", body = ErrorBody),
        (status = 501, description = "EHR push is not configured (EHR_TARGET)", body = ErrorBody),
        (status = 502, description = "The EHR could not answer, or its login needs renewing", body = ErrorBody)
    )
)]
async fn find_patients(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(search): ApiQuery<PatientSearch>,
) -> Result<Json<PatientList>, ApiError> {
    let principal = caller.require(Scope::EhrPush)?;
    let deliveries = state.deliveries().ok_or(ApiError::EhrNotConfigured)?;
    let query =
        PatientQuery::parse(&search.q).map_err(|e| ApiError::bad_request("invalid_request", e))?;
    lookup_allowed(&state, &principal.owner).await?;
    let patients = deliveries.find_patients(&principal.owner, &query).await?;
    Ok(Json(PatientList { patients }))
}

/// A patient's encounters for the picker, newest first, with date and reason.
#[utoipa::path(
    get,
    path = "/v1/ehr/patients/{id}/encounters",
    tag = "ehr",
    params(("id" = String, Path, description = "The patient's EHR id, from /v1/ehr/patients")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = EncounterList),
        (status = 400, description = "Not an EHR id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the ehr:push scope", body = ErrorBody),
        (status = 404, description = "The EHR does not know the patient", body = ErrorBody),
        (status = 429, description = "Too many look-ups (EHR_LOOKUPS_PER_MINUTE)", body = ErrorBody),
        (status = 501, description = "EHR push is not configured (EHR_TARGET)", body = ErrorBody),
        (status = 502, description = "The EHR could not answer, or its login needs renewing", body = ErrorBody)
    )
)]
async fn patient_encounters(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EncounterList>, ApiError> {
    let principal = caller.require(Scope::EhrPush)?;
    let deliveries = state.deliveries().ok_or(ApiError::EhrNotConfigured)?;
    if !valid_ref(&id) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "a patient id is an EHR id (letters, digits, - and _)",
        ));
    }
    lookup_allowed(&state, &principal.owner).await?;
    let encounters = deliveries.encounters(&principal.owner, &id).await?;
    Ok(Json(EncounterList { encounters }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EhrConnectionView {
    /// `openemr` or `fhir`.
    target: &'static str,
    /// Where it is (no secrets).
    endpoint: String,
    /// `connected`, `needs_login` (with the reason: an administrator must sign in to the EHR
    /// again and store the new refresh token), or null before the first login was used.
    connection: Option<crate::ports::ConnectionState>,
}

/// The EHR connection: is its login still good? Needs the `admin` scope.
#[utoipa::path(
    get,
    path = "/v1/admin/ehr",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, body = EhrConnectionView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the admin scope", body = ErrorBody),
        (status = 501, description = "EHR push is not configured (EHR_TARGET)", body = ErrorBody)
    )
)]
async fn ehr_connection(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<EhrConnectionView>, ApiError> {
    caller.require(Scope::Admin)?;
    let deliveries = state.deliveries().ok_or(ApiError::EhrNotConfigured)?;
    let connection = deliveries
        .connection()
        .await
        .map_err(|e| ApiError::Unavailable(Box::new(e)))?;
    Ok(Json(EhrConnectionView {
        target: deliveries.target(),
        endpoint: deliveries.endpoint(),
        connection,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// The patient's OpenEMR uuid.
    patient_id: String,
    /// The encounter's OpenEMR uuid or number.
    encounter_id: String,
    /// The SOAP-note section the transcript goes into (default `EHR_NOTE_SECTION`).
    note_section: Option<NoteSection>,
    /// The deployment's EHR (`openemr` or `fhir`, as `EHR_TARGET`); may be left out.
    target: Option<String>,
}

/// A delivery as the owner sees it. The patient and encounter ids are the owner's own input.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    #[schema(value_type = String)]
    id: uuid::Uuid,
    target: String,
    patient_id: String,
    encounter_id: String,
    note_section: NoteSection,
    /// `pending`, `delivered` (with `ehr`), or `failed` (with `error`).
    status: DeliveryStatus,
    attempts: u32,
    /// The EHR's ids of the note, once delivered.
    ehr: Option<EhrReceipt>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<EhrDelivery> for DeliveryView {
    fn from(d: EhrDelivery) -> Self {
        Self {
            id: d.id,
            target: d.target,
            patient_id: d.patient_ref,
            encounter_id: d.encounter_ref,
            note_section: d.section,
            status: d.status,
            attempts: d.attempts,
            ehr: d.receipt,
            error: d.error,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Oldest first.
    deliveries: Vec<DeliveryView>,
}

/// An EHR identifier: short, printable, no separators that could reach a URL path.
fn valid_ref(raw: &str) -> bool {
    (1..=64).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Puts the transcript into the EHR as a note. Asking again for the same transcript, patient
/// and encounter returns the delivery already made (or under way) instead of a second note.
#[utoipa::path(
    post,
    path = "/v1/transcriptions/{id}/ehr",
    tag = "ehr",
    params(("id" = String, Path, description = "Transcription id")),
    request_body = PushRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: the delivery, pending", body = DeliveryView),
        (status = 200, description = "The same push was already asked for: that delivery", body = DeliveryView),
        (status = 400, description = "Bad ids or section, or an empty transcript (`empty_transcript`)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the ehr:push scope", body = ErrorBody),
        (status = 404, description = "No such transcription (or not the caller's)", body = ErrorBody),
        (status = 409, description = "The transcription is not completed", body = ErrorBody),
        (status = 501, description = "EHR push is not configured (EHR_TARGET)", body = ErrorBody)
    )
)]
async fn push_to_ehr(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<PushRequest>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    let principal = caller.require(Scope::EhrPush)?;
    let record = load_owned(&state, principal, &id, AuditAction::EhrPush).await?;
    let deliveries = state.deliveries().ok_or(ApiError::EhrNotConfigured)?;
    let target = deliveries.target();
    if request
        .target
        .as_deref()
        .is_some_and(|asked| asked != target)
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("this deployment pushes to {target}"),
        ));
    }
    if !valid_ref(&request.patient_id) || !valid_ref(&request.encounter_id) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "patient_id and encounter_id must be EHR ids (letters, digits, - and _)",
        ));
    }
    if record.status != Status::Completed {
        return Err(ApiError::Conflict(format!(
            "the transcription is {}; it can be pushed once it is completed",
            record.status.as_str()
        )));
    }
    let section = request.note_section.unwrap_or(deliveries.default_section());
    let content = record
        .transcript
        .as_ref()
        .map(|t| deliveries::note_content(section, t))
        .unwrap_or_default();
    if content
        .iter()
        .all(|(_, text)| text.trim().len() < MIN_NOTE_BYTES)
    {
        return Err(ApiError::bad_request(
            "empty_transcript",
            "the transcript is empty: there is nothing to put in the chart",
        ));
    }
    let push = deliveries::PushRequest {
        patient_ref: request.patient_id,
        encounter_ref: request.encounter_id,
        section: request.note_section,
    };
    Ok(
        match deliveries.request(&record, &principal.owner, push).await? {
            Requested::Existing(delivery) => (StatusCode::OK, Json(delivery.into())),
            Requested::Queued(delivery) => (StatusCode::ACCEPTED, Json(delivery.into())),
        },
    )
}

/// The transcription's EHR deliveries and their status.
#[utoipa::path(
    get,
    path = "/v1/transcriptions/{id}/ehr",
    tag = "ehr",
    params(("id" = String, Path, description = "Transcription id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = DeliveryList),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such transcription (or not the caller's)", body = ErrorBody),
        (status = 501, description = "EHR push is not configured (EHR_TARGET)", body = ErrorBody)
    )
)]
async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    let principal = caller.require(Scope::Read)?;
    let record = load_owned(&state, principal, &id, AuditAction::Read).await?;
    let deliveries = state.deliveries().ok_or(ApiError::EhrNotConfigured)?;
    state
        .audit_trail()
        .record_disclosure(
            &principal.owner,
            AuditAction::Read,
            Some(record.id),
            Some("EHR deliveries".into()),
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(Json(DeliveryList {
        deliveries: deliveries
            .of(&record)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}
