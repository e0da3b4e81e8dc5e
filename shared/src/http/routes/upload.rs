//! `POST /v1/transcriptions`: one multipart request, streamed to storage and queued.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json,
    extract::{FromRequest, Multipart, Request, State, multipart::Field},
    http::{HeaderMap, HeaderValue, StatusCode, header},
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::AppState,
    app::uploads::Then,
    auth::Scope,
    domain::{
        AudioFormat, BlobKey, EngineKind, OwnerId, Status, Task, TranscriptionId,
        TranscriptionRecord, TranscriptionRequest, parse_language, sniff_audio_format,
    },
    http::{ApiError, ErrorBody, extract::Caller},
};

pub fn routes() -> OpenApiRouter<AppState> {
    // The body is streamed and counted by the handler itself, against MAX_UPLOAD_BYTES.
    OpenApiRouter::new()
        .routes(routes!(create_transcription))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// Room for multipart boundaries, part headers and the small text fields.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
pub(crate) const MAX_PROMPT_CHARS: usize = 2000;
/// After refusing an upload, read at most this much more so the client can see the answer.
const DRAIN_LIMIT_BYTES: u64 = 8 * 1024 * 1024;
const DRAIN_LIMIT_TIME: Duration = Duration::from_secs(5);

/// The form, as documented. The handler reads it as a stream.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The recording: wav, mp3, flac, ogg, webm, m4a/mp4 or aac (recognised by content).
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    /// ISO 639-1 language code, e.g. `en`; omitted = detect.
    language: Option<String>,
    /// Vocabulary hints for the engine (drug names, clinician names), at most 2000 characters.
    prompt: Option<String>,
    /// `cloud` or `local`; omitted = the deployment's default engine.
    engine: Option<EngineKind>,
    /// `transcribe` (the default), or `translate`: English text from speech in any language
    /// (multilingual models only).
    task: Option<Task>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    pub status: Status,
    pub engine: EngineKind,
    pub created_at: DateTime<Utc>,
    pub size_bytes: u64,
    /// Poll this for status and the transcript.
    pub url: String,
}

/// Upload a recording for transcription. Answers 202 at once; poll the returned URL.
#[utoipa::path(
    post,
    path = "/v1/transcriptions",
    tag = "transcriptions",
    security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Stored and queued", body = Accepted,
         headers(("Location" = String, description = "The new transcription's URL"))),
        (status = 400, description = "Missing file, bad field, or engine not enabled", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Larger than MAX_UPLOAD_BYTES; nothing is kept", body = ErrorBody),
        (status = 415, description = "The file is not audio MMT accepts", body = ErrorBody)
    )
)]
async fn create_transcription(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<(StatusCode, HeaderMap, Json<Accepted>), ApiError> {
    let principal = caller.require(Scope::Write)?.clone();
    let upload = receive_upload(&state, request, UPLOAD_TEXT_FIELDS).await?;
    let (id, format, size_bytes) = (upload.id, upload.format, upload.size_bytes);

    let request = match upload_request(&state, &upload, &principal.owner) {
        Ok(request) => request,
        Err(err) => {
            state.uploads().discard_audio(&upload.key).await;
            return Err(err);
        }
    };
    let record = TranscriptionRecord::new_queued(
        id,
        principal.owner.clone(),
        request,
        upload
            .file_name
            .clone()
            .filter(|_| state.config.retention.store_phi),
        format,
        size_bytes,
        state.clock.now(),
    );
    let record = state.uploads().accept(record, Then::Queue).await?;
    accepted(&record)
}

/// The 202 answer for a stored, queued recording: where to poll it.
pub(crate) fn accepted(
    record: &TranscriptionRecord,
) -> Result<(StatusCode, HeaderMap, Json<Accepted>), ApiError> {
    let url = format!("/v1/transcriptions/{}", record.id);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&url).map_err(ApiError::internal)?,
    );
    Ok((
        StatusCode::ACCEPTED,
        headers,
        Json(Accepted {
            id: record.id.to_string(),
            status: record.status,
            engine: record.engine,
            created_at: record.created_at,
            size_bytes: record.size_bytes,
            url,
        }),
    ))
}

/// The upload form's own text fields and their byte limits.
const UPLOAD_TEXT_FIELDS: &[(&str, usize)] = &[
    ("language", 16),
    ("prompt", MAX_PROMPT_CHARS * 4),
    ("engine", 16),
    ("task", 16),
];

/// What an upload asks for, as the client sent it.
#[derive(Default)]
pub(crate) struct RequestFields<'a> {
    pub engine: Option<EngineKind>,
    pub task: Option<Task>,
    pub language: Option<&'a str>,
    pub prompt: Option<&'a str>,
}

impl RequestFields<'_> {
    /// Checks the language code and prompt, and resolves the engine against the deployment
    /// and what `owner` may use.
    pub(crate) fn validate(
        self,
        state: &AppState,
        owner: &OwnerId,
    ) -> Result<TranscriptionRequest, ApiError> {
        let engine = resolve_engine(state, self.engine)?;
        if engine == EngineKind::Cloud && owner.is_guest() && !state.config.auth.guest_cloud_engine
        {
            // A guest costs the deployment nothing it did not agree to.
            return Err(ApiError::Forbidden(
                "engine_forbidden",
                "guests may not use the cloud engine on this deployment (GUEST_CLOUD_ENGINE)",
            ));
        }
        let task = self.task.unwrap_or_default();
        if task == Task::Translate
            && state
                .engines
                .get(engine)
                .is_some_and(|loaded| !loaded.translates())
        {
            return Err(ApiError::bad_request(
                "translation_unavailable",
                format!(
                    "the {engine} engine's model is English-only and cannot translate: \
                     deploy a multilingual model (e.g. MODEL=base)"
                ),
            ));
        }
        Ok(TranscriptionRequest {
            engine,
            task,
            language: self
                .language
                .map(parse_language)
                .transpose()
                .map_err(|e| ApiError::bad_request("invalid_request", e))?,
            prompt: parse_prompt(self.prompt)?,
        })
    }
}

fn upload_request(
    state: &AppState,
    upload: &ReceivedUpload,
    owner: &OwnerId,
) -> Result<TranscriptionRequest, ApiError> {
    let invalid = |e: String| ApiError::bad_request("invalid_request", e);
    RequestFields {
        engine: upload
            .field("engine")
            .map(str::parse::<EngineKind>)
            .transpose()
            .map_err(invalid)?,
        task: upload
            .field("task")
            .map(str::parse::<Task>)
            .transpose()
            .map_err(invalid)?,
        language: upload.field("language"),
        prompt: upload.field("prompt"),
    }
    .validate(state, owner)
}

/// A prompt field: blank means none; at most MAX_PROMPT_CHARS characters.
pub(crate) fn parse_prompt(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let prompt = raw.map(str::to_owned).filter(|p| !p.trim().is_empty());
    if prompt
        .as_ref()
        .is_some_and(|p| p.chars().count() > MAX_PROMPT_CHARS)
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("prompt is limited to {MAX_PROMPT_CHARS} characters"),
        ));
    }
    if prompt.as_ref().is_some_and(|p| {
        p.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    }) {
        // A NUL would also cut the prompt short in whisper.cpp's C string.
        return Err(ApiError::bad_request(
            "invalid_request",
            "prompt must be plain text without control characters",
        ));
    }
    Ok(prompt)
}

/// The engine an upload asked for, or the deployment's default, if it is enabled.
fn resolve_engine(state: &AppState, requested: Option<EngineKind>) -> Result<EngineKind, ApiError> {
    match requested.or(state.config.engines.default_engine) {
        Some(engine) if state.config.engines.enabled(engine) => Ok(engine),
        Some(engine) => Err(ApiError::bad_request(
            "engine_unavailable",
            format!("the {engine} engine is not enabled on this deployment"),
        )),
        None => Err(ApiError::bad_request(
            "engine_unavailable",
            "no transcription engine is enabled",
        )),
    }
}

/// A stored upload: the audio is in the blob store under `key`; the text fields are as sent.
pub(crate) struct ReceivedUpload {
    pub id: TranscriptionId,
    pub key: BlobKey,
    pub format: AudioFormat,
    pub size_bytes: u64,
    pub file_name: Option<String>,
    /// The form's other fields, in order (a name may repeat).
    pub fields: Vec<(String, String)>,
}

impl ReceivedUpload {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a multipart upload: streams `file` into the blob store (sniffing its first bytes,
/// counting against MAX_UPLOAD_BYTES) and collects the text fields named in `text_fields`
/// (name, byte limit); any other field is refused. On failure nothing is left in the store.
#[tracing::instrument(name = "upload", skip_all, fields(size_bytes, format))]
pub(crate) async fn receive_upload(
    state: &AppState,
    request: Request,
    text_fields: &[(&str, usize)],
) -> Result<ReceivedUpload, ApiError> {
    let (mut multipart, stalled) = open_multipart(state, request).await?;
    let id = TranscriptionId::new();
    let mut upload = ReceivedUpload {
        id,
        key: BlobKey::for_transcription(&id),
        format: AudioFormat::Wav,
        size_bytes: 0,
        file_name: None,
        fields: Vec::new(),
    };
    // Set before the file is written, so a failure anywhere after removes what was written.
    let mut file_seen = false;
    let read = read_fields(
        state,
        &mut multipart,
        text_fields,
        &mut upload,
        &mut file_seen,
    )
    .await;
    if let Err(err) = read {
        if file_seen {
            state.uploads().discard_audio(&upload.key).await;
        }
        if stalled.load(Ordering::Relaxed) {
            return Err(ApiError::RequestTimeout);
        }
        if matches!(
            err,
            ApiError::PayloadTooLarge { .. } | ApiError::UnsupportedMediaType
        ) {
            drain_multipart(multipart).await;
        }
        return Err(err);
    }
    if !file_seen {
        return Err(ApiError::bad_request(
            "missing_file",
            "the form has no `file` field",
        ));
    }
    let span = tracing::Span::current();
    span.record("size_bytes", upload.size_bytes);
    span.record("format", upload.format.extension());
    Ok(upload)
}

/// The body as a multipart stream, refused early when its declared length is too large; the
/// flag turns true if the client stops sending (the idle timeout).
async fn open_multipart(
    state: &AppState,
    request: Request,
) -> Result<(Multipart, Arc<AtomicBool>), ApiError> {
    let limit = state.config.http.max_upload_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.saturating_add(MULTIPART_OVERHEAD)) {
        drain_body(request).await;
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let stalled = Arc::new(AtomicBool::new(false));
    let request = with_idle_timeout(
        request,
        state.config.http.body_idle_timeout,
        stalled.clone(),
    );
    let multipart = Multipart::from_request(request, state).await.map_err(|_| {
        ApiError::bad_request(
            "invalid_request",
            "expected a multipart/form-data body with a `file` field",
        )
    })?;
    Ok((multipart, stalled))
}

/// Reads every field: the one `file` is stored as it streams, the known text fields are kept.
async fn read_fields(
    state: &AppState,
    multipart: &mut Multipart,
    text_fields: &[(&str, usize)],
    upload: &mut ReceivedUpload,
    file_seen: &mut bool,
) -> Result<(), ApiError> {
    let malformed = |_| ApiError::bad_request("invalid_request", "the multipart body is malformed");
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if *file_seen {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "send exactly one `file`",
                ));
            }
            *file_seen = true;
            upload.file_name = field.file_name().and_then(clean_file_name);
            (upload.format, upload.size_bytes) = store_audio(state, &upload.key, field).await?;
        } else if let Some((_, max)) = text_fields.iter().find(|(n, _)| *n == name) {
            if upload.fields.len() >= 32 {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "too many form fields",
                ));
            }
            let value = small_text(field, *max).await?;
            upload.fields.push((name, value));
        } else {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!(
                    "unknown form field {:?}",
                    name.chars().take(40).collect::<String>()
                ),
            ));
        }
    }
    Ok(())
}

/// The request with a body that fails once no bytes arrive for `idle`: a slow or stalled
/// client (slowloris) cannot hold an upload, a worker and a half-written blob forever.
fn with_idle_timeout(request: Request, idle: Duration, stalled: Arc<AtomicBool>) -> Request {
    let (parts, body) = request.into_parts();
    let chunks = stream::unfold(
        (body.into_data_stream(), false),
        move |(mut body, finished)| {
            let stalled = stalled.clone();
            async move {
                if finished {
                    return None;
                }
                match tokio::time::timeout(idle, body.next()).await {
                    Ok(Some(chunk)) => Some((chunk, (body, false))),
                    Ok(None) => None,
                    Err(_) => {
                        stalled.store(true, Ordering::Relaxed);
                        let err = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no upload bytes within the idle timeout",
                        );
                        Some((Err(axum::Error::new(err)), (body, true)))
                    }
                }
            }
        },
    );
    Request::from_parts(parts, axum::body::Body::from_stream(chunks))
}

/// Sniffs the first bytes, then streams the whole field into the blob store.
async fn store_audio(
    state: &AppState,
    key: &BlobKey,
    mut field: Field<'_>,
) -> Result<(AudioFormat, u64), ApiError> {
    let unreadable =
        |_| ApiError::bad_request("invalid_request", "the upload body could not be read");
    let mut head = Vec::with_capacity(AudioFormat::SNIFF_LEN);
    let mut head_chunks: Vec<Bytes> = Vec::new();
    while head.len() < AudioFormat::SNIFF_LEN {
        match field.chunk().await.map_err(unreadable)? {
            Some(chunk) => {
                head.extend_from_slice(
                    &chunk[..chunk.len().min(AudioFormat::SNIFF_LEN - head.len())],
                );
                head_chunks.push(chunk);
            }
            None => break,
        }
    }
    let format = sniff_audio_format(&head).ok_or(ApiError::UnsupportedMediaType)?;
    let rest = field.map_err(std::io::Error::other);
    let body = stream::iter(head_chunks.into_iter().map(Ok))
        .chain(rest)
        .boxed();
    let size = state
        .blobs
        .put(key, body, state.config.http.max_upload_bytes)
        .await?;
    Ok((format, size))
}

/// Reads a short text field without ever buffering more than `max_bytes`.
async fn small_text(mut field: Field<'_>, max_bytes: usize) -> Result<String, ApiError> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut buf = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|_| ApiError::bad_request("invalid_request", "the multipart body is malformed"))?
    {
        if buf.len() + chunk.len() > max_bytes {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("field `{name}` is too long"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| {
        ApiError::bad_request("invalid_request", format!("field `{name}` is not UTF-8"))
    })
}

/// The client's file name without any path, control characters, or excess length.
pub(crate) fn clean_file_name(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

/// Reads (and drops) a bounded amount of a refused body, so the client gets to read our answer
/// instead of a reset connection.
async fn drain_body(request: Request) {
    let mut body = request.into_body().into_data_stream();
    let _ = tokio::time::timeout(DRAIN_LIMIT_TIME, async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = body.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_LIMIT_BYTES {
                break;
            }
        }
    })
    .await;
}

async fn drain_multipart(mut multipart: Multipart) {
    let _ = tokio::time::timeout(DRAIN_LIMIT_TIME, async {
        let mut seen = 0u64;
        while let Ok(Some(mut field)) = multipart.next_field().await {
            while let Ok(Some(chunk)) = field.chunk().await {
                seen += chunk.len() as u64;
                if seen > DRAIN_LIMIT_BYTES {
                    return;
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::clean_file_name;

    #[test]
    fn file_names_lose_paths_and_controls() {
        assert_eq!(
            clean_file_name("C:\\Users\\dr\\visit.wav").as_deref(),
            Some("visit.wav")
        );
        assert_eq!(
            clean_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(clean_file_name("a\u{0}b\n.wav").as_deref(), Some("ab.wav"));
        assert_eq!(clean_file_name("   ").as_deref(), None);
    }
}
