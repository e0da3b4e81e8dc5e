//! The owner's records: list, read, delete, and download transcripts in every format.

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::views::{TranscriptionList, TranscriptionSummary, TranscriptionView};
use crate::{
    app::AppState,
    auth::{Principal, Scope},
    domain::AuditAction,
    domain::{ResponseFormat, Status, TranscriptionRecord, render_transcript},
    http::{
        ApiError, ErrorBody,
        extract::{ApiQuery, Caller, parse_transcription_id},
    },
    ports::{Cursor, PageRequest},
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_transcriptions))
        .routes(routes!(get_transcription, delete_transcription))
        .routes(routes!(get_transcript))
}

/// Loads a record the caller owns. Someone else's record is indistinguishable from a missing one.
pub(crate) async fn load_owned(
    state: &AppState,
    principal: &Principal,
    raw_id: &str,
    action: AuditAction,
) -> Result<TranscriptionRecord, ApiError> {
    let id = parse_transcription_id(raw_id)?;
    state
        .owned_records()
        .owned(&principal.owner, &id, action)
        .await?
        .ok_or(ApiError::NotFound)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1–100 (default 20).
    limit: Option<u32>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
    /// `phi` hides file names (they often carry a patient's name); `none` shows them. Default:
    /// `MASK_PHI`.
    mask: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct MaskParams {
    /// `phi`: names, dates, phone numbers, addresses and record numbers in the transcript are
    /// replaced by `[NAME]`, `[DATE]`, … and the file name is left out; `none`: as spoken.
    /// Default: `MASK_PHI`. What is stored, and pushed to the EHR, is never masked.
    pub(crate) mask: Option<String>,
}

/// Whether a response is masked: as asked, else as the deployment says.
pub(crate) fn masking(state: &AppState, asked: Option<&str>) -> Result<bool, ApiError> {
    match asked {
        None => Ok(state.config.http.mask_phi),
        Some("phi") => Ok(true),
        Some("none") => Ok(false),
        Some(_) => Err(ApiError::bad_request(
            "invalid_request",
            "mask must be phi or none",
        )),
    }
}

/// The caller's transcriptions, newest first.
#[utoipa::path(
    get,
    path = "/v1/transcriptions",
    tag = "transcriptions",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TranscriptionList),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
        (status = 401, body = ErrorBody)
    )
)]
async fn list_transcriptions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<TranscriptionList>, ApiError> {
    let principal = caller.require(Scope::Read)?;
    let mask = masking(&state, params.mask.as_deref())?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "limit must be between 1 and 100",
        ));
    }
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            Cursor::decode(raw)
                .ok_or_else(|| ApiError::bad_request("invalid_request", "cursor is not valid"))?,
        ),
    };
    let page = state
        .records
        .list_by_owner(&principal.owner, &PageRequest { limit, after })
        .await?;
    // A listing shows file names: audited like a read, counting, never naming.
    state
        .audit_trail()
        .record_disclosure(
            &principal.owner,
            AuditAction::Read,
            None,
            Some(format!("listed {} records", page.items.len())),
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(Json(TranscriptionList {
        items: page
            .items
            .into_iter()
            .map(|record| TranscriptionSummary::from(masked(record, mask)))
            .collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// One transcription: status, and the transcript once completed.
#[utoipa::path(
    get,
    path = "/v1/transcriptions/{id}",
    tag = "transcriptions",
    params(("id" = String, Path, description = "Transcription id"), MaskParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TranscriptionView),
        (status = 400, description = "Bad mask", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such transcription (or not the caller's)", body = ErrorBody)
    )
)]
async fn get_transcription(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<MaskParams>,
) -> Result<Json<TranscriptionView>, ApiError> {
    let principal = caller.require(Scope::Read)?;
    let mask = masking(&state, params.mask.as_deref())?;
    let record = load_owned(&state, principal, &id, AuditAction::Read).await?;
    state
        .audit_trail()
        .record_disclosure(
            &principal.owner,
            AuditAction::Read,
            Some(record.id),
            mask.then(|| "masked".to_owned()),
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(Json(masked(record, mask).into()))
}

/// The record as shown: with `mask`, its transcript masked and its file name left out.
pub(crate) fn masked(mut record: TranscriptionRecord, mask: bool) -> TranscriptionRecord {
    if mask {
        record.transcript = record.transcript.as_ref().map(|t| t.masked());
        record.file_name = None;
    }
    record
}

/// Deletes the audio and the record.
#[utoipa::path(
    delete,
    path = "/v1/transcriptions/{id}",
    tag = "transcriptions",
    params(("id" = String, Path, description = "Transcription id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such transcription (or not the caller's)", body = ErrorBody)
    )
)]
async fn delete_transcription(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let principal = caller.require(Scope::Write)?;
    let record = load_owned(&state, principal, &id, AuditAction::Delete).await?;
    state.owned_records().erase(&record).await?;
    tracing::info!(transcription_id = %record.id, "transcription deleted by owner");
    state
        .audit_trail()
        .record_success(&principal.owner, AuditAction::Delete, record.id)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct TranscriptParams {
    /// json (default), txt, srt or vtt.
    format: Option<String>,
    /// `phi` or `none`, as for `GET /v1/transcriptions/{id}`.
    mask: Option<String>,
}

/// The transcript as a download: JSON, plain text, SubRip or WebVTT.
#[utoipa::path(
    get,
    path = "/v1/transcriptions/{id}/transcript",
    tag = "transcriptions",
    params(("id" = String, Path, description = "Transcription id"), TranscriptParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The transcript", content(
            ("application/json"), ("text/plain"), ("application/x-subrip"), ("text/vtt")
        )),
        (status = 400, description = "Unknown format", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such transcription (or not the caller's)", body = ErrorBody),
        (status = 409, description = "Not completed yet", body = ErrorBody)
    )
)]
async fn get_transcript(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<TranscriptParams>,
) -> Result<Response, ApiError> {
    let principal = caller.require(Scope::Read)?;
    let mask = masking(&state, params.mask.as_deref())?;
    let format: ResponseFormat = params
        .format
        .as_deref()
        .unwrap_or("json")
        .parse()
        .map_err(|e: String| ApiError::bad_request("invalid_request", e))?;
    let record = load_owned(&state, principal, &id, AuditAction::Download).await?;
    let transcript = match (&record.status, &record.transcript) {
        (Status::Completed, Some(t)) if mask => &t.masked(),
        (Status::Completed, Some(t)) => t,
        (status, _) => {
            return Err(ApiError::Conflict(format!(
                "the transcription is {}; the transcript is available once it is completed",
                status.as_str()
            )));
        }
    };
    state
        .audit_trail()
        .record_disclosure(
            &principal.owner,
            AuditAction::Download,
            Some(record.id),
            mask.then(|| "masked".to_owned()),
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    let disposition = format!(
        "attachment; filename=\"{}.{}\"",
        record.id,
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        render_transcript(transcript, format),
    )
        .into_response())
}
