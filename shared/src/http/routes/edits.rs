//! `PATCH /v1/transcriptions/{id}`, `GET .../versions` and `POST .../structure`: the owner
//! corrects the transcript and its sections; every save is a new version.

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    transcriptions::{MaskParams, load_owned, masked, masking},
    views::{NoteView, TranscriptionView},
};
use crate::{
    app::{
        AppState,
        edits::{EditError, EditRequest},
    },
    auth::Scope,
    domain::{AuditAction, NoteTemplate, SectionText, Segment, StructuredNote, Transcript},
    http::{
        ApiError, ErrorBody,
        extract::{ApiJson, ApiQuery, Caller},
    },
    ports::DraftError,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(edit_transcription))
        .routes(routes!(list_versions))
        .routes(routes!(structure_transcription))
}

impl From<EditError> for ApiError {
    fn from(err: EditError) -> Self {
        match err {
            EditError::NotCompleted(_) | EditError::Stale { .. } => Self::Conflict(err.to_string()),
            EditError::Invalid(message) => Self::bad_request("invalid_request", message),
            EditError::Store(err) => err.into(),
            EditError::NoDrafter => Self::bad_request("drafts_not_configured", err.to_string()),
            EditError::Draft(DraftError::Unavailable(_)) => {
                Self::EngineUnavailable(err.to_string())
            }
            EditError::Draft(DraftError::Refused(_) | DraftError::Unusable(_)) => {
                Self::DraftFailed(err.to_string())
            }
        }
    }
}

/// The sections of a structured note, as a client writes them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteInput {
    /// `soap`, `history_and_physical` or `progress_note`.
    #[schema(value_type = String)]
    template: NoteTemplate,
    /// Each section by its template key (`subjective`, `hpi`, `plan`, ...).
    #[schema(value_type = Vec<Object>)]
    sections: Vec<SectionText>,
    /// Text before the first section, if any.
    #[serde(default)]
    preamble: String,
}

/// A correction. Send `version` (the one the editor loaded) so a concurrent edit is refused
/// rather than overwritten.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditBody {
    /// The version this edit starts from (`version` of the transcription as loaded).
    version: Option<u32>,
    /// The corrected text. Left out: the text stays (an edit of the sections alone).
    text: Option<String>,
    /// New segments. Left out: the old segments keep their times around the changed words.
    segments: Option<Vec<Segment>>,
    /// New sections; `null` removes the structure; left out: a structured note is split again
    /// at the same template's headings when the text changed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NoteInput>)]
    note: Option<Option<NoteInput>>,
}

/// Tells a `null` apart from a missing field.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Saves a corrected transcript (text, segments, sections) as a new version; the earlier
/// versions are kept. The EHR push sends the latest.
#[utoipa::path(
    patch,
    path = "/v1/transcriptions/{id}",
    tag = "transcriptions",
    params(("id" = String, Path, description = "Transcription id")),
    request_body = EditBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Saved: the transcription at its new version", body = TranscriptionView),
        (status = 400, description = "Bad sections or text too long", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such transcription (or not the caller's)", body = ErrorBody),
        (status = 409, description = "Not completed, or `version` is no longer the latest", body = ErrorBody)
    )
)]
async fn edit_transcription(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EditBody>,
) -> Result<Json<TranscriptionView>, ApiError> {
    let principal = caller.require(Scope::Write)?;
    let record = load_owned(&state, principal, &id, AuditAction::Edit).await?;
    let note = match body.note {
        None => None,
        Some(None) => Some(None),
        Some(Some(input)) => Some(Some(
            StructuredNote::from_parts(input.template, input.sections, input.preamble)
                .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?,
        )),
    };
    let request = EditRequest {
        base_version: body.version,
        text: body.text,
        segments: body.segments,
        note,
    };
    let saved = state
        .edits()
        .revise(record, &principal.owner, request)
        .await?;
    Ok(Json(saved.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StructureBody {
    /// `soap` (default), `history_and_physical` or `progress_note`.
    #[schema(value_type = Option<String>)]
    template: Option<NoteTemplate>,
    /// `headings` (default): split at the headings spoken; `draft`: have the draft model
    /// (`NOTE_DRAFT_MODEL`) sort an unstructured transcript into the sections, for review.
    method: Option<StructureMethod>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StructureMethod {
    Headings,
    Draft,
}

/// Splits the latest version into a template's sections, as a new version: at the headings
/// the clinician spoke ("Subjective ... Objective ..."), or, with `method: draft`, by the
/// draft model for a transcript without headings (signed-in users only: the text goes to the
/// cloud model).
#[utoipa::path(
    post,
    path = "/v1/transcriptions/{id}/structure",
    tag = "transcriptions",
    params(("id" = String, Path, description = "Transcription id")),
    request_body = StructureBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The transcription with its sections, at a new version", body = TranscriptionView),
        (status = 400, description = "No heading of the template was spoken, or drafts are not configured", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Guests may not send a transcript to the draft model", body = ErrorBody),
        (status = 404, description = "No such transcription (or not the caller's)", body = ErrorBody),
        (status = 409, description = "Not completed", body = ErrorBody),
        (status = 502, description = "The draft model refused or answered something unusable", body = ErrorBody),
        (status = 503, description = "The draft model is busy or down; try again", body = ErrorBody)
    )
)]
async fn structure_transcription(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StructureBody>,
) -> Result<Json<TranscriptionView>, ApiError> {
    let principal = caller.require(Scope::Write)?;
    let record = load_owned(&state, principal, &id, AuditAction::Edit).await?;
    let template = body.template.unwrap_or(NoteTemplate::Soap);
    let edits = state.edits();
    let saved = match body.method.unwrap_or(StructureMethod::Headings) {
        StructureMethod::Headings => edits.structure(record, &principal.owner, template).await?,
        StructureMethod::Draft => {
            if principal.owner.is_guest() {
                return Err(ApiError::Forbidden(
                    "forbidden",
                    "sign in to have a note drafted: guests' transcripts stay out of the cloud model",
                ));
            }
            edits.draft(record, &principal.owner, template).await?
        }
    };
    Ok(Json(saved.into()))
}

/// One version of a transcript.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    version: u32,
    /// Who saved it (`null`: the engine).
    author: Option<String>,
    at: DateTime<Utc>,
    text: String,
    note: Option<NoteView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    /// Oldest first; the last is the current one.
    versions: Vec<VersionView>,
}

/// Every version of the transcript, oldest first: who changed what, and when.
#[utoipa::path(
    get,
    path = "/v1/transcriptions/{id}/versions",
    tag = "transcriptions",
    params(("id" = String, Path, description = "Transcription id"), MaskParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = VersionList),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such transcription (or not the caller's)", body = ErrorBody),
        (status = 409, description = "Not completed", body = ErrorBody)
    )
)]
async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<MaskParams>,
) -> Result<Json<VersionList>, ApiError> {
    let principal = caller.require(Scope::Read)?;
    let mask = masking(&state, params.mask.as_deref())?;
    let record = load_owned(&state, principal, &id, AuditAction::Read).await?;
    let completed_at = record.updated_at;
    let Some(transcript) = masked(record.clone(), mask).transcript else {
        return Err(ApiError::Conflict(format!(
            "the transcription is {}; it has versions once it is completed",
            record.status.as_str()
        )));
    };
    state
        .audit_trail()
        .record_disclosure(
            &principal.owner,
            AuditAction::Read,
            Some(record.id),
            Some("versions".into()),
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(Json(VersionList {
        versions: versions(&transcript, completed_at),
    }))
}

fn versions(transcript: &Transcript, completed_at: DateTime<Utc>) -> Vec<VersionView> {
    transcript
        .versions(completed_at)
        .into_iter()
        .map(|v| VersionView {
            version: v.revision.version,
            author: v.revision.author,
            at: v.revision.at,
            text: v.text,
            note: v.note.as_ref().map(NoteView::from),
        })
        .collect()
}
