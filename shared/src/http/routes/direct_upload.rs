//! `POST /v1/uploads`: the client uploads straight to the blob store with a presigned URL, so
//! recordings larger than Lambda's 6 MB request payload never pass through a function. The
//! store's ObjectCreated notification starts the transcription (see `jobs::transcribe`).

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    auth::Scope,
    domain::{AudioFormat, EngineKind, Status, TranscriptionId, TranscriptionRecord},
    http::{
        ApiError, ErrorBody,
        extract::{ApiJson, Caller},
        routes::upload::{UploadFields, clean_file_name},
    },
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_upload))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The recording's file name (kept only when STORE_PHI is on).
    filename: String,
    /// The recording's MIME type, e.g. `audio/webm`; the `PUT` must send the same.
    content_type: String,
    /// Size in bytes; at most MAX_UPLOAD_BYTES.
    size: u64,
    /// ISO 639-1 language code, e.g. `en`; omitted = detect.
    language: Option<String>,
    /// Vocabulary hints for the engine, at most 2000 characters.
    prompt: Option<String>,
    /// `cloud` or `local`; omitted = the deployment's default engine.
    engine: Option<EngineKind>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadTicket {
    pub id: String,
    pub status: Status,
    /// `PUT` the file's bytes here, with `upload_headers`, before `expires_at`.
    pub upload_url: String,
    pub upload_method: &'static str,
    pub upload_headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
    /// Poll this: `awaiting_upload` until the bytes arrive, then as any transcription.
    pub url: String,
}

/// Start a direct upload: answers a presigned URL; the transcription starts when the file lands.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    tag = "transcriptions",
    security(("bearer" = [])),
    request_body = UploadRequest,
    responses(
        (status = 201, description = "Upload URL issued; record awaiting the upload", body = UploadTicket,
         headers(("Location" = String, description = "The new transcription's URL"))),
        (status = 400, description = "Bad field, or engine not enabled", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "`size` is larger than MAX_UPLOAD_BYTES", body = ErrorBody),
        (status = 415, description = "`content_type` is not audio MMT accepts", body = ErrorBody),
        (status = 501, description = "This deployment's storage cannot issue upload URLs (BLOB_STORE=disk)", body = ErrorBody)
    )
)]
async fn create_upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<UploadRequest>,
) -> Result<(StatusCode, HeaderMap, Json<UploadTicket>), ApiError> {
    let principal = caller.require(Scope::Write)?.clone();
    let limit = state.config.max_upload_bytes;
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
    let fields = UploadFields::validate(
        &state,
        request.language.as_deref(),
        request.prompt.as_deref(),
        request.engine,
    )?;

    let id = TranscriptionId::new();
    let record = TranscriptionRecord::new_awaiting_upload(
        id,
        principal.owner.clone(),
        fields.engine,
        fields.language,
        fields.prompt,
        clean_file_name(&request.filename).filter(|_| state.config.store_phi),
        format,
        request.size,
        state.clock.now(),
    );
    // The content type is signed into the URL: normalised, so what the client sends matches.
    let content_type = format.mime_type();
    let presigned = state
        .blobs
        .presign_upload(
            &record.audio_key,
            content_type,
            state.config.direct_upload_ttl,
        )
        .await?
        .ok_or(ApiError::DirectUploadUnsupported)?;
    state.records.insert(&record).await?;
    tracing::info!(transcription_id = %id, engine = %record.engine, format = %format, size_bytes = request.size, "direct upload issued");
    crate::audit::record_success(
        &state,
        &principal.owner,
        crate::audit::AuditAction::Create,
        record.id,
    )
    .await;

    let url = format!("/v1/transcriptions/{id}");
    let mut headers = HeaderMap::new();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&url).map_err(ApiError::internal)?,
    );
    Ok((
        StatusCode::CREATED,
        headers,
        Json(UploadTicket {
            id: id.to_string(),
            status: record.status,
            upload_url: presigned.url,
            upload_method: "PUT",
            upload_headers: presigned.headers.into_iter().collect(),
            expires_at: presigned.expires_at,
            url,
        }),
    ))
}
