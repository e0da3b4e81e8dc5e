//! Resumable uploads, for recordings of any size and networks that drop: the client creates
//! an upload, sends its numbered parts (in any order, again if one failed), asks which arrived,
//! and completes it; the transcription starts then.
//!
//! The parts never pass through a Lambda function on AWS (its request body is at most 6 MB):
//! each part URL is an S3 presigned `UploadPart` bound to the part's exact length. Where the
//! blob store cannot presign (the local file store), the part URLs point at this API, carrying
//! a signed [`PartGrant`] for that one part and length instead of the bearer token. Either way
//! the client sends each part to its URL with the listed headers and nothing else.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::{AppState, uploads::ResumableError},
    auth::{PartGrant, Principal, Scope},
    domain::AuditAction,
    domain::{AudioFormat, EngineKind, Status, Task, TranscriptionRecord, UploadPlan},
    http::{
        ApiError, ErrorBody,
        extract::{ApiJson, Caller, parse_transcription_id},
        routes::{
            transcriptions::load_owned,
            upload::{Accepted, RequestFields, accepted, clean_file_name},
        },
    },
    ports::BlobError,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_upload))
        .routes(routes!(upload_status))
        .routes(routes!(part_urls))
        .routes(routes!(complete_upload))
        // A part is up to its plan's part size; the handler bounds it to the exact length.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(put_part))
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
}

/// At most this many part URLs per request: a client asks again for the next ones.
const MAX_URLS_PER_REQUEST: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The recording's file name (kept only when STORE_PHI is on).
    filename: String,
    /// The recording's MIME type, e.g. `audio/webm`.
    content_type: String,
    /// Size in bytes; at most MAX_UPLOAD_BYTES.
    size: u64,
    /// ISO 639-1 language code, e.g. `en`; omitted = detect.
    language: Option<String>,
    /// Vocabulary hints for the engine, at most 2000 characters.
    prompt: Option<String>,
    /// `cloud` or `local`; omitted = the deployment's default engine.
    engine: Option<EngineKind>,
    /// `transcribe` (the default) or `translate` (English text; multilingual models only).
    task: Option<Task>,
}

/// A resumable upload and what has arrived of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadState {
    pub id: String,
    /// `awaiting_upload` until completed; then as the transcription.
    pub status: Status,
    pub size: u64,
    /// Every part is this long but the last.
    pub part_size: u64,
    pub part_count: u32,
    /// Part numbers (from 1) that arrived whole.
    pub received: Vec<u32>,
    pub received_bytes: u64,
    /// Ask for URLs for these with `POST {upload_url}/parts`.
    pub missing: Vec<u32>,
    /// This upload: `GET` it to see what arrived.
    pub upload_url: String,
    /// The transcription: poll it after completing.
    pub url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartUrlRequest {
    /// The parts to send; omitted (`{}`) = every part still missing (at most 1000 per request).
    parts: Option<Vec<u32>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartUrls {
    pub parts: Vec<PartTarget>,
}

/// Where and how to send one part.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartTarget {
    pub number: u32,
    /// The exact number of bytes to send: bytes `(number-1)*part_size ..` of the file.
    pub length: u64,
    /// Absolute (S3), or relative to the API's base URL (this server).
    pub url: String,
    pub method: &'static str,
    /// Send exactly these with the part (they may be signed); never the bearer token.
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PartQuery {
    /// The grant from the part URL.
    token: String,
}

/// Start a resumable upload. Send the parts, then `POST /v1/uploads/{id}/complete`.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    tag = "uploads",
    security(("bearer" = [])),
    request_body = UploadRequest,
    responses(
        (status = 201, description = "Upload created; the record awaits its parts", body = UploadState,
         headers(("Location" = String, description = "The upload's URL"))),
        (status = 400, description = "Bad field, or engine not enabled", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "`size` is larger than MAX_UPLOAD_BYTES", body = ErrorBody),
        (status = 415, description = "`content_type` is not audio MMT accepts", body = ErrorBody)
    )
)]
async fn create_upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<UploadRequest>,
) -> Result<(StatusCode, HeaderMap, Json<UploadState>), ApiError> {
    let principal = caller.require(Scope::Write)?.clone();
    let limit = state.config.http.max_upload_bytes;
    if request.size == 0 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "size must be at least 1 byte",
        ));
    }
    if request.size > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let format = AudioFormat::from_content_type(&request.content_type)
        .ok_or(ApiError::UnsupportedMediaType)?;
    let asked = RequestFields {
        engine: request.engine,
        task: request.task,
        language: request.language.as_deref(),
        prompt: request.prompt.as_deref(),
    }
    .validate(&state, &principal.owner)?;
    let record = TranscriptionRecord::new_awaiting_upload(
        crate::domain::TranscriptionId::new(),
        principal.owner.clone(),
        asked,
        clean_file_name(&request.filename).filter(|_| state.config.retention.store_phi),
        format,
        request.size,
        state.clock.now(),
    );
    let record = state
        .uploads()
        .begin_resumable(record)
        .await
        .map_err(resumable_failure)?;
    let answer = upload_state(&record, Vec::new());
    let mut headers = HeaderMap::new();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&answer.upload_url).map_err(ApiError::internal)?,
    );
    Ok((StatusCode::CREATED, headers, Json(answer)))
}

/// What has arrived of an upload, and what is missing: the place to resume from.
#[utoipa::path(
    get,
    path = "/v1/uploads/{id}",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Transcription id")),
    responses(
        (status = 200, body = UploadState),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such upload (or not yours)", body = ErrorBody),
        (status = 410, description = "The upload expired or was discarded: start again", body = ErrorBody)
    )
)]
async fn upload_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UploadState>, ApiError> {
    let principal = caller.require(Scope::Read)?;
    let record = load_owned(&state, principal, &id, AuditAction::Read).await?;
    let received = state
        .uploads()
        .received_parts(&record)
        .await
        .map_err(gone_if_not_found)?;
    Ok(Json(upload_state(&record, received)))
}

/// URLs to send parts to, valid for DIRECT_UPLOAD_TTL_SECS; ask again for fresh ones.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/parts",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Transcription id")),
    request_body = PartUrlRequest,
    responses(
        (status = 200, body = PartUrls),
        (status = 400, description = "A part number outside the upload", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The upload is already complete", body = ErrorBody),
        (status = 410, description = "The upload expired or was discarded", body = ErrorBody)
    )
)]
async fn part_urls(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<PartUrlRequest>,
) -> Result<Json<PartUrls>, ApiError> {
    let principal = caller.require(Scope::Write)?;
    let record = awaiting_parts(&state, principal, &id).await?;
    let plan = UploadPlan::for_size(record.size_bytes);
    let wanted = match request.parts {
        Some(numbers) => {
            if let Some(bad) = numbers.iter().find(|n| !plan.contains(**n)) {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("part {bad} is not in this upload (1..={})", plan.part_count),
                ));
            }
            numbers
        }
        None => {
            let received = state
                .uploads()
                .received_parts(&record)
                .await
                .map_err(gone_if_not_found)?;
            plan.numbers().filter(|n| !received.contains(n)).collect()
        }
    };
    if wanted.len() > MAX_URLS_PER_REQUEST {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("ask for at most {MAX_URLS_PER_REQUEST} parts at a time"),
        ));
    }
    let ttl = state.config.http.direct_upload_ttl;
    let mut parts = Vec::with_capacity(wanted.len());
    for number in wanted {
        let length = plan.part_length(number);
        let target = match state
            .blobs
            .presign_part(&record.audio_key, number, length, ttl)
            .await
            .map_err(gone_if_not_found)?
        {
            Some(presigned) => PartTarget {
                number,
                length,
                url: presigned.url,
                method: "PUT",
                headers: presigned.headers.into_iter().collect(),
                expires_at: presigned.expires_at,
            },
            None => {
                let grant = PartGrant {
                    upload: record.id.to_string(),
                    part: number,
                    length,
                };
                let token = state
                    .tokens
                    .issue_part_grant(&grant, ttl)
                    .map_err(ApiError::internal)?;
                PartTarget {
                    number,
                    length,
                    url: format!("/v1/uploads/{}/parts/{number}?token={token}", record.id),
                    method: "PUT",
                    headers: BTreeMap::new(),
                    expires_at: state.clock.now()
                        + chrono::Duration::from_std(ttl).map_err(ApiError::internal)?,
                }
            }
        };
        parts.push(target);
    }
    Ok(Json(PartUrls { parts }))
}

/// Receive one part (this server's part URLs). Authorised by the URL's grant alone, like a
/// presigned URL: the bearer token is not needed.
#[utoipa::path(
    put,
    path = "/v1/uploads/{id}/parts/{number}",
    tag = "uploads",
    params(
        ("id" = String, Path, description = "Transcription id"),
        ("number" = u32, Path, description = "Part number, from 1"),
        PartQuery
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored (a part sent again replaces the earlier one)"),
        (status = 400, description = "The body is not exactly the part's length; nothing kept", body = ErrorBody),
        (status = 403, description = "The URL's grant is invalid, expired, or for another part", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 408, description = "The body stalled; nothing kept", body = ErrorBody),
        (status = 409, description = "The upload is already complete", body = ErrorBody)
    )
)]
async fn put_part(
    State(state): State<AppState>,
    Path((id, number)): Path<(String, u32)>,
    Query(query): Query<PartQuery>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let forbidden = || {
        ApiError::Forbidden(
            "invalid_part_url",
            "this part URL is invalid or has expired; ask for a new one",
        )
    };
    let grant = state
        .tokens
        .verify_part_grant(&query.token)
        .map_err(|_| forbidden())?;
    let transcription_id = parse_transcription_id(&id)?;
    if grant.upload != transcription_id.to_string() || grant.part != number {
        return Err(forbidden());
    }
    let record = state
        .records
        .get(&transcription_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if record.status != Status::AwaitingUpload {
        return Err(ApiError::Conflict("this upload is already complete".into()));
    }
    let plan = UploadPlan::for_size(record.size_bytes);
    if !plan.contains(number) || plan.part_length(number) != grant.length {
        return Err(forbidden());
    }
    let body = exact_length(
        request.into_body().into_data_stream(),
        grant.length,
        state.config.http.body_idle_timeout,
    );
    match state.blobs.put_part(&record.audio_key, number, body).await {
        Ok(()) => Ok(StatusCode::OK),
        Err(BlobError::Body(err)) if err.kind() == std::io::ErrorKind::TimedOut => {
            Err(ApiError::RequestTimeout)
        }
        Err(BlobError::Body(err)) if err.kind() == std::io::ErrorKind::InvalidData => {
            Err(ApiError::bad_request(
                "wrong_part_length",
                format!("part {number} is exactly {} bytes", grant.length),
            ))
        }
        Err(err) => Err(err.into()),
    }
}

/// Join the parts and start the transcription. Answers as `POST /v1/transcriptions` does;
/// completing again answers the same.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/complete",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Transcription id")),
    responses(
        (status = 202, description = "Complete and queued", body = Accepted,
         headers(("Location" = String, description = "The transcription's URL"))),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Parts are missing (listed); send them, then complete again", body = ErrorBody),
        (status = 410, description = "The upload expired or was discarded", body = ErrorBody),
        (status = 415, description = "The file is not audio MMT accepts; the upload is discarded", body = ErrorBody)
    )
)]
async fn complete_upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, HeaderMap, Json<Accepted>), ApiError> {
    let principal = caller.require(Scope::Write)?;
    let record = load_owned(&state, principal, &id, AuditAction::Create).await?;
    let record = match record.status {
        Status::AwaitingUpload => state
            .uploads()
            .complete_resumable(record)
            .await
            .map_err(resumable_failure)?,
        Status::Failed => {
            return Err(ApiError::Conflict(
                "this upload failed; start a new one".into(),
            ));
        }
        // Completed before (an answer lost on the way back, or the queue failed): queued
        // again, which is safe, since a duplicate message is refused by the record's claim.
        Status::Queued => {
            state.uploads().enqueue(&record.id).await?;
            record
        }
        Status::Processing | Status::Completed => record,
    };
    accepted(&record)
}

/// The answers for a resumable upload that could not go on.
fn resumable_failure(err: ResumableError) -> ApiError {
    match err {
        ResumableError::MissingParts { missing, total } => {
            let listed: Vec<String> = missing.iter().take(20).map(u32::to_string).collect();
            let more = if missing.len() > 20 { ", ..." } else { "" };
            ApiError::Conflict(format!(
                "{} of {total} parts are missing: {}{more}",
                missing.len(),
                listed.join(", ")
            ))
        }
        ResumableError::NotAudio => ApiError::UnsupportedMediaType,
        ResumableError::Records(err) => err.into(),
        ResumableError::Blobs(err) => gone_if_not_found(err),
        ResumableError::Queue(err) => err.into(),
    }
}

/// The caller's upload, still waiting for parts.
async fn awaiting_parts(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<TranscriptionRecord, ApiError> {
    let record = load_owned(state, principal, id, AuditAction::Create).await?;
    match record.status {
        Status::AwaitingUpload => Ok(record),
        _ => Err(ApiError::Conflict(
            "this upload is no longer waiting for parts".into(),
        )),
    }
}

fn upload_state(record: &TranscriptionRecord, received: Vec<u32>) -> UploadState {
    let plan = UploadPlan::for_size(record.size_bytes);
    let received_bytes = received.iter().map(|n| plan.part_length(*n)).sum();
    let missing = plan.numbers().filter(|n| !received.contains(n)).collect();
    UploadState {
        id: record.id.to_string(),
        status: record.status,
        size: plan.size,
        part_size: plan.part_size,
        part_count: plan.part_count,
        received,
        received_bytes,
        missing,
        upload_url: format!("/v1/uploads/{}", record.id),
        url: format!("/v1/transcriptions/{}", record.id),
    }
}

/// The store no longer has the upload (S3 aborted it after a day, or it was discarded).
fn gone_if_not_found(err: BlobError) -> ApiError {
    match err {
        BlobError::NotFound => ApiError::UploadGone,
        other => other.into(),
    }
}

/// The body, failing (so the store keeps nothing) when it is longer or shorter than `length`
/// or stalls for `idle`.
fn exact_length(
    body: axum::body::BodyDataStream,
    length: u64,
    idle: std::time::Duration,
) -> crate::ports::ByteStream<'static> {
    let wrong_length = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the part is not its exact length",
        )
    };
    stream::unfold(
        (body, 0u64, false),
        move |(mut body, seen, done)| async move {
            if done {
                return None;
            }
            match tokio::time::timeout(idle, body.next()).await {
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no part bytes within the idle timeout",
                    )),
                    (body, seen, true),
                )),
                Ok(None) if seen == length => None,
                Ok(None) => Some((Err(wrong_length()), (body, seen, true))),
                Ok(Some(Err(err))) => Some((Err(std::io::Error::other(err)), (body, seen, true))),
                Ok(Some(Ok(chunk))) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > length {
                        Some((Err(wrong_length()), (body, seen, true)))
                    } else {
                        Some((Ok::<Bytes, std::io::Error>(chunk), (body, seen, false)))
                    }
                }
            }
        },
    )
    .boxed()
}
