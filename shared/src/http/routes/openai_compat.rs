//! `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`: OpenAI's contracts, so
//! existing OpenAI SDK clients can point their base URL at MMT. Synchronous; the caller's
//! bearer token is the "API key"; each result is also kept as an owner-only record like any
//! other.

use axum::{
    Json,
    extract::{Request, State},
    http::header,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::upload::{MAX_PROMPT_CHARS, ReceivedUpload, RequestFields, receive_upload};
use crate::{
    app::{AppState, JobError, transcriptions::Processed, uploads::Then},
    auth::Scope,
    domain::{
        OwnerId, ResponseFormat, Task, Transcript, TranscriptionId, TranscriptionRecord,
        TranscriptionRequest, language_name, render_transcript,
    },
    http::{ApiError, ErrorBody, extract::Caller},
    ports::{EngineError, StoreError},
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_audio_transcription))
        .routes(routes!(create_audio_translation))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

const TRANSCRIPTION_FIELDS: &[(&str, usize)] = &[
    ("model", 64),
    ("language", 16),
    ("prompt", MAX_PROMPT_CHARS * 4),
    ("response_format", 16),
    ("temperature", 16),
    ("timestamp_granularities[]", 16),
    ("include[]", 16),
];

/// OpenAI's translation form has no language (it is detected) and no word or token detail.
const TRANSLATION_FIELDS: &[(&str, usize)] = &[
    ("model", 64),
    ("prompt", MAX_PROMPT_CHARS * 4),
    ("response_format", 16),
    ("temperature", 16),
];

/// OpenAI's form, as documented.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OpenAiTranscriptionForm {
    /// The audio file (wav, mp3, flac, ogg, webm, m4a/mp4, aac).
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    /// Required by the contract; MMT transcribes with its configured engine whatever the name.
    model: String,
    language: Option<String>,
    prompt: Option<String>,
    /// json (default), text, srt, vtt or verbose_json.
    response_format: Option<String>,
    /// 0–1. MMT's engines decode deterministically from 0 with their own fallback.
    temperature: Option<f32>,
    /// `segment` (the default) and/or `word`; needs `response_format=verbose_json`.
    #[schema(rename = "timestamp_granularities[]")]
    timestamp_granularities: Option<Vec<String>>,
    /// `logprobs`: each token's log-probability in the answer; needs `response_format=json`.
    /// Reported by the local engine (the cloud engine's whisper models give none).
    #[schema(rename = "include[]")]
    include: Option<Vec<String>>,
}

/// OpenAI's translation form, as documented.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OpenAiTranslationForm {
    /// The audio file (wav, mp3, flac, ogg, webm, m4a/mp4, aac), speech in any language.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    /// Required by the contract; MMT translates with its configured engine whatever the name.
    model: String,
    /// Vocabulary hints, in English.
    prompt: Option<String>,
    /// json (default), text, srt, vtt or verbose_json.
    response_format: Option<String>,
    /// 0–1. MMT's engines decode deterministically from 0 with their own fallback.
    temperature: Option<f32>,
}

/// `response_format=json`.
#[derive(Serialize, ToSchema)]
pub struct OpenAiTranscription {
    text: String,
    /// With `include[]=logprobs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<Vec<OpenAiLogprob>>,
}

/// A token, its log-probability and its UTF-8 bytes (OpenAI's `Transcription.Logprob`).
#[derive(Serialize, ToSchema)]
pub struct OpenAiLogprob {
    token: String,
    logprob: f64,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

struct Params {
    format: Format,
    words: bool,
    logprobs: bool,
    request: TranscriptionRequest,
}

fn parse_params(
    state: &AppState,
    upload: &ReceivedUpload,
    task: Task,
    owner: &OwnerId,
) -> Result<Params, ApiError> {
    let invalid = |m: String| ApiError::bad_request("invalid_request", m);
    if upload.field("model").is_none_or(|m| m.trim().is_empty()) {
        return Err(invalid("you must provide a model parameter".into()));
    }
    let format = match upload.field("response_format").unwrap_or("json") {
        "json" => Format::Json,
        "text" => Format::Text,
        "srt" => Format::Srt,
        "vtt" => Format::Vtt,
        "verbose_json" => Format::VerboseJson,
        _ => {
            return Err(invalid(
                "response_format must be one of json, text, srt, vtt, verbose_json".into(),
            ));
        }
    };
    if let Some(t) = upload.field("temperature") {
        let t: f32 = t
            .parse()
            .map_err(|_| invalid("temperature must be a number".into()))?;
        if !(0.0..=1.0).contains(&t) {
            return Err(invalid("temperature must be between 0 and 1".into()));
        }
    }
    let (mut words, mut logprobs) = (false, false);
    for (name, value) in &upload.fields {
        match (name.as_str(), value.as_str()) {
            ("timestamp_granularities[]", granularity) => {
                if format != Format::VerboseJson {
                    return Err(invalid(
                        "timestamp_granularities requires response_format=verbose_json".into(),
                    ));
                }
                match granularity {
                    "segment" => {}
                    "word" => words = true,
                    _ => {
                        return Err(invalid(
                            "timestamp_granularities are word or segment".into(),
                        ));
                    }
                }
            }
            ("include[]", "logprobs") if format == Format::Json => logprobs = true,
            ("include[]", "logprobs") => {
                return Err(invalid("logprobs requires response_format=json".into()));
            }
            ("include[]", _) => return Err(invalid("include accepts only logprobs".into())),
            _ => {}
        }
    }
    Ok(Params {
        format,
        words,
        logprobs,
        request: RequestFields {
            task: Some(task),
            language: upload.field("language"),
            prompt: upload.field("prompt"),
            ..RequestFields::default()
        }
        .validate(state, owner)?,
    })
}

/// Transcribe a file and answer with the transcript (OpenAI's contract).
#[utoipa::path(
    post,
    path = "/v1/audio/transcriptions",
    tag = "openai-compatible",
    security(("bearer" = [])),
    request_body(content = OpenAiTranscriptionForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The transcript in the requested format", content(
            (OpenAiTranscription = "application/json"), (String = "text/plain")
        )),
        (status = 400, description = "Bad field, or audio that cannot be transcribed", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Larger than MAX_UPLOAD_BYTES", body = ErrorBody),
        (status = 415, description = "Not audio", body = ErrorBody),
        (status = 503, description = "The engine is unavailable; retry later", body = ErrorBody)
    )
)]
async fn create_audio_transcription(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    answer_now(state, caller, request, Task::Transcribe).await
}

/// Translate speech in any language into English text (OpenAI's contract). Needs a
/// multilingual model.
#[utoipa::path(
    post,
    path = "/v1/audio/translations",
    tag = "openai-compatible",
    security(("bearer" = [])),
    request_body(content = OpenAiTranslationForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The English text in the requested format", content(
            (OpenAiTranscription = "application/json"), (String = "text/plain")
        )),
        (status = 400, description = "Bad field, audio that cannot be transcribed, or an \
            English-only model (`translation_unavailable`)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Larger than MAX_UPLOAD_BYTES", body = ErrorBody),
        (status = 415, description = "Not audio", body = ErrorBody),
        (status = 503, description = "The engine is unavailable; retry later", body = ErrorBody)
    )
)]
async fn create_audio_translation(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    answer_now(state, caller, request, Task::Translate).await
}

/// Stores the upload as a record, processes it at once and answers with the result.
async fn answer_now(
    state: AppState,
    caller: Caller,
    request: Request,
    task: Task,
) -> Result<Response, ApiError> {
    let principal = caller.require(Scope::Write)?.clone();
    let fields = match task {
        Task::Transcribe => TRANSCRIPTION_FIELDS,
        Task::Translate => TRANSLATION_FIELDS,
    };
    let upload = receive_upload(&state, request, fields).await?;
    let prepared = async {
        let params = parse_params(&state, &upload, task, &principal.owner)?;
        let engine = params.request.engine;
        if state.engines.get(engine).is_none() {
            return Err(ApiError::EngineUnavailable(format!(
                "the {engine} engine is not available"
            )));
        }
        Ok(params)
    }
    .await;
    let params = match prepared {
        Ok(params) => params,
        Err(err) => {
            state.uploads().discard_audio(&upload.key).await;
            return Err(err);
        }
    };
    let record = TranscriptionRecord::new_queued(
        upload.id,
        principal.owner.clone(),
        params.request.clone(),
        upload
            .file_name
            .clone()
            .filter(|_| state.config.retention.store_phi),
        upload.format,
        upload.size_bytes,
        state.clock.now(),
    );
    let record = state.uploads().accept(record, Then::ProcessNow).await?;
    // Its own task: a client that goes away drops this handler, not the work, and the record
    // still ends `completed` or `failed`.
    let work = tokio::spawn(transcribe_now(state.clone(), record.id));
    let transcript = match work.await {
        Ok(Ok(transcript)) => transcript,
        Ok(Err(err)) => return Err(engine_failure(err)),
        Err(panicked) => return Err(ApiError::internal(panicked)),
    };
    Ok(render(&transcript, &params))
}

/// Processes the record now, failing it with the reason when that does not work out.
async fn transcribe_now(state: AppState, id: TranscriptionId) -> Result<Transcript, JobError> {
    let outcome = match state
        .transcriptions()
        .process(&id, &format!("request:{id}"))
        .await
    {
        Ok(Processed::Completed(transcript)) => return Ok(*transcript),
        Ok(Processed::Skipped(why)) => Err(JobError::Records(StoreError::Corrupt(format!(
            "the new record could not be processed: {why}"
        )))),
        Err(err) => Err(err),
    };
    if let Err(err) = &outcome {
        tracing::warn!(transcription_id = %id, error.cause_chain = %err.reason(), "synchronous transcription failed");
        if let Err(not_failed) = state.transcriptions().fail(&id, &err.reason()).await {
            tracing::error!(transcription_id = %id, error.cause_chain = %not_failed.reason(), "could not mark the record failed; the sweep will");
        }
    }
    outcome
}

/// OpenAI's answers for a transcription that did not work: 400 for audio the engine refuses,
/// 503 for an engine that may work later.
fn engine_failure(err: JobError) -> ApiError {
    match err {
        JobError::Engine(EngineError::Permanent(reason)) => {
            ApiError::bad_request("invalid_audio", reason)
        }
        JobError::Engine(EngineError::Transient(reason)) => ApiError::EngineUnavailable(reason),
        JobError::Records(err) => err.into(),
        other if other.is_transient() => ApiError::EngineUnavailable(other.reason()),
        other => ApiError::bad_request("invalid_audio", other.reason()),
    }
}

fn render(transcript: &Transcript, params: &Params) -> Response {
    let text_body = |format: ResponseFormat| {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            render_transcript(transcript, format),
        )
            .into_response()
    };
    match params.format {
        Format::Json => Json(OpenAiTranscription {
            text: transcript.text.clone(),
            logprobs: params.logprobs.then(|| logprobs(transcript)),
        })
        .into_response(),
        Format::Text => text_body(ResponseFormat::Txt),
        Format::Srt => text_body(ResponseFormat::Srt),
        Format::Vtt => text_body(ResponseFormat::Vtt),
        Format::VerboseJson => Json(verbose(transcript, params)).into_response(),
    }
}

fn logprobs(transcript: &Transcript) -> Vec<OpenAiLogprob> {
    transcript
        .segments
        .iter()
        .flat_map(|s| &s.token_scores)
        .map(|t| OpenAiLogprob {
            token: t.text.clone(),
            logprob: t.logprob,
            bytes: t.text.as_bytes().to_vec(),
        })
        .collect()
}

/// OpenAI's `verbose_json` (`TranscriptionVerbose`, `TranslationVerbose`): segments always,
/// words when asked for. A translation's language is its output's, always "english".
fn verbose(transcript: &Transcript, params: &Params) -> serde_json::Value {
    let segments: Vec<_> = transcript
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "id": i, "seek": 0, "start": s.start, "end": s.end, "text": format!(" {}", s.text),
                "tokens": [], "temperature": 0.0, "avg_logprob": s.avg_logprob().unwrap_or(0.0),
                "compression_ratio": 0.0, "no_speech_prob": 0.0,
            })
        })
        .collect();
    let language = match params.request.task {
        Task::Translate => "english".to_owned(),
        Task::Transcribe => transcript
            .language
            .as_deref()
            .map(language_name)
            .unwrap_or_else(|| "unknown".into()),
    };
    let mut body = json!({
        "task": params.request.task.as_str(),
        "language": language,
        "duration": transcript.duration_s.unwrap_or(0.0),
        "text": transcript.text,
        "segments": segments,
    });
    if params.words {
        body["words"] = transcript
            .segments
            .iter()
            .flat_map(|s| s.words())
            .map(|w| json!({"word": w.word, "start": w.start, "end": w.end}))
            .collect();
    }
    body
}
