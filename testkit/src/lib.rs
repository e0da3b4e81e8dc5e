//! Test and demo helpers for MMT.
//!
//! [`OpenAiContractServer`] is an HTTP server that follows OpenAI's documented
//! `POST /v1/audio/transcriptions` and `POST /v1/audio/translations` contracts (the API
//! reference's "Create transcription" and "Create translation", and the `CreateTranslationRequest`
//! / `CreateTranslationResponseVerboseJson` schemas of the openai-python SDK generated from
//! OpenAI's OpenAPI spec) — authentication, multipart fields, the 25 MB limit, every
//! `response_format`, and error bodies — and can be scripted to fail the ways the
//! real service fails (429 with `Retry-After`, `insufficient_quota`, 5xx, 401, hanging past a
//! client's timeout). It cannot understand speech: a successful answer describes the audio it
//! received (size and SHA-256), so a test can prove the whole file arrived intact.
//!
//! It also serves `POST /v1/chat/completions` as OpenAI's API reference ("Create chat
//! completion") documents it: JSON `model` and non-empty `messages` required (400
//! `invalid_request_error` otherwise), `response_format: {"type": "json_object"}` refused with
//! 400 unless a message contains the word "json", the `chat.completion` object on success,
//! and the same scripted failures. It cannot write notes: its reply is what a test set, or a
//! JSON object putting the user's message into `subjective`.

pub mod fhir;
pub mod hostile_audio;
pub mod live;
pub mod oidc;
pub mod openemr;
pub mod telemetry;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Multipart, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::json;
use sha2::{Digest, Sha256};

/// OpenAI's upload limit.
pub const MAX_FILE_BYTES: usize = 25 * 1024 * 1024;
const ACCEPTED_EXTENSIONS: &[&str] = &[
    "flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm",
];

/// A failure the server should produce instead of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// 429 `rate_limit_exceeded`, optionally with `Retry-After` seconds.
    RateLimited { retry_after_s: Option<u32> },
    /// 429 `insufficient_quota`: retrying soon does not help.
    QuotaExhausted,
    /// A 5xx status with OpenAI's `server_error` body.
    ServerError(u16),
    /// 401 `invalid_api_key`, whatever key was sent.
    Unauthorized,
    /// Accept the request, then stall this long before answering (to trip client timeouts).
    Stall(Duration),
}

/// What one request to the server carried.
#[derive(Debug, Clone, Default)]
pub struct RecordedRequest {
    /// `transcriptions` or `translations`.
    pub endpoint: &'static str,
    pub authorized: bool,
    pub model: Option<String>,
    pub response_format: Option<String>,
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub temperature: Option<String>,
    pub timestamp_granularities: Vec<String>,
    pub file_name: Option<String>,
    pub file_content_type: Option<String>,
    pub file_len: usize,
    pub file_sha256: Option<String>,
}

#[derive(Debug, Default)]
struct Behaviour {
    /// Served first, one per request.
    scripted: VecDeque<Failure>,
    /// Served to every request once the script is used up.
    always: Option<Failure>,
    /// Served to every request whose file has this SHA-256 (hex), before the script.
    by_file: std::collections::HashMap<String, Failure>,
    /// Delay before each successful answer.
    latency: Duration,
    /// Fixed transcript text; `None` describes the received audio.
    transcript: Option<String>,
    requests: Vec<RecordedRequest>,
    /// The assistant's reply to chat completions, and its `finish_reason`.
    chat_reply: Option<(String, &'static str)>,
    chat_requests: Vec<serde_json::Value>,
}

#[derive(Clone)]
struct Shared {
    api_key: String,
    behaviour: Arc<Mutex<Behaviour>>,
}

/// A running contract server on 127.0.0.1; stops when dropped.
pub struct OpenAiContractServer {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl OpenAiContractServer {
    /// Starts on a free loopback port, expecting `api_key` as the bearer token.
    pub async fn start(api_key: &str) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), api_key).await
    }

    pub async fn start_on(addr: SocketAddr, api_key: &str) -> std::io::Result<Self> {
        let shared = Shared {
            api_key: api_key.to_owned(),
            behaviour: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The value for `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next requests fail like this, in order; later ones succeed.
    pub fn script(&self, failures: impl IntoIterator<Item = Failure>) {
        self.behaviour().scripted.extend(failures);
    }

    /// Every request (after the script) fails like this; `None` restores success.
    pub fn always(&self, failure: Option<Failure>) {
        self.behaviour().always = failure;
    }

    /// Every request carrying this exact file (SHA-256, hex) fails like this: one poisoned
    /// recording among healthy ones.
    pub fn fail_file(&self, sha256_hex: impl Into<String>, failure: Failure) {
        self.behaviour().by_file.insert(sha256_hex.into(), failure);
    }

    /// Successful answers wait this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.behaviour().latency = latency;
    }

    /// Successful answers carry this text instead of a description of the audio.
    pub fn set_transcript(&self, text: impl Into<String>) {
        self.behaviour().transcript = Some(text.into());
    }

    /// What the next chat completions answer (and their `finish_reason`: `stop`, `length`).
    pub fn set_chat_reply(&self, content: impl Into<String>, finish_reason: &'static str) {
        self.behaviour().chat_reply = Some((content.into(), finish_reason));
    }

    /// The JSON bodies of the chat completion requests received.
    pub fn chat_requests(&self) -> Vec<serde_json::Value> {
        self.behaviour().chat_requests.clone()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.behaviour().requests.clone()
    }

    fn behaviour(&self) -> std::sync::MutexGuard<'_, Behaviour> {
        self.shared.behaviour.lock().expect("behaviour lock")
    }
}

impl Drop for OpenAiContractServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/audio/transcriptions", post(transcribe))
        .route("/v1/audio/translations", post(translate))
        .route("/v1/chat/completions", post(chat_completion))
        .layer(DefaultBodyLimit::max(MAX_FILE_BYTES + 1024 * 1024))
        .with_state(shared)
}

fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
}

type Form = Result<Multipart, axum::extract::multipart::MultipartRejection>;

/// The scripted failure for one request, as the transcription endpoints serve it.
fn scripted_failure(failure: Option<Failure>) -> Option<Response> {
    match failure? {
        Failure::RateLimited { retry_after_s } => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for requests.",
                "requests",
                Some("rate_limit_exceeded"),
            );
            if let Some(s) = retry_after_s {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            Some(response)
        }
        Failure::QuotaExhausted => Some(error(
            StatusCode::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            Some("insufficient_quota"),
        )),
        Failure::ServerError(status) => Some(error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "The server had an error while processing your request.",
            "server_error",
            None,
        )),
        Failure::Unauthorized => Some(error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        )),
        Failure::Stall(_) => None,
    }
}

async fn chat_completion(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.api_key));
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let (failure, reply) = {
        let mut b = shared.behaviour.lock().expect("behaviour lock");
        b.chat_requests.push(request.clone());
        let failure = b.scripted.pop_front().or_else(|| b.always.clone());
        (failure, b.chat_reply.clone())
    };
    if !authorized {
        return scripted_failure(Some(Failure::Unauthorized)).expect("a 401");
    }
    if let Some(Failure::Stall(duration)) = failure {
        tokio::time::sleep(duration).await;
    } else if let Some(response) = scripted_failure(failure) {
        return response;
    }
    let Some(model) = request["model"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
        );
    };
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "'messages' is a required property",
            "invalid_request_error",
            None,
        );
    }
    let says_json = messages.iter().any(|m| {
        m["content"]
            .as_str()
            .is_some_and(|c| c.to_lowercase().contains("json"))
    });
    if request["response_format"]["type"] == "json_object" && !says_json {
        return error(
            StatusCode::BAD_REQUEST,
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            "invalid_request_error",
            None,
        );
    }
    let user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let (content, finish_reason) =
        reply.unwrap_or_else(|| (json!({"subjective": user}).to_string(), "stop"));
    Json(json!({
        "id": "chatcmpl-contract",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }))
    .into_response()
}

async fn transcribe(State(shared): State<Shared>, headers: HeaderMap, form: Form) -> Response {
    answer(shared, headers, form, "transcriptions").await
}

async fn translate(State(shared): State<Shared>, headers: HeaderMap, form: Form) -> Response {
    answer(shared, headers, form, "translations").await
}

async fn answer(
    shared: Shared,
    headers: HeaderMap,
    multipart: Form,
    endpoint: &'static str,
) -> Response {
    let translating = endpoint == "translations";
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.api_key));
    let mut recorded = RecordedRequest {
        endpoint,
        authorized,
        ..Default::default()
    };
    let parsed = match multipart {
        Ok(multipart) => read_form(multipart, &mut recorded).await,
        Err(_) => Err("Could not parse multipart form"),
    };
    let file = parsed.as_ref().ok().and_then(|f| f.clone());

    let (failure, latency, fixed_text) = {
        let mut b = shared.behaviour.lock().expect("behaviour lock");
        b.requests.push(recorded.clone());
        let for_file = recorded
            .file_sha256
            .as_ref()
            .and_then(|sha| b.by_file.get(sha).cloned());
        let failure = for_file
            .or_else(|| b.scripted.pop_front())
            .or_else(|| b.always.clone());
        (failure, b.latency, b.transcript.clone())
    };

    if !authorized || failure == Some(Failure::Unauthorized) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        );
    }
    match failure {
        Some(Failure::RateLimited { retry_after_s }) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for requests.",
                "requests",
                Some("rate_limit_exceeded"),
            );
            if let Some(s) = retry_after_s {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            return response;
        }
        Some(Failure::QuotaExhausted) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                Some("insufficient_quota"),
            );
        }
        Some(Failure::ServerError(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(
                status,
                "The server had an error while processing your request.",
                "server_error",
                None,
            );
        }
        Some(Failure::Stall(duration)) => tokio::time::sleep(duration).await,
        Some(Failure::Unauthorized) | None => {}
    }

    let file = match parsed {
        Err(message) => {
            return error(
                StatusCode::BAD_REQUEST,
                message,
                "invalid_request_error",
                None,
            );
        }
        Ok(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "you must provide a file",
                "invalid_request_error",
                None,
            );
        }
        Ok(Some(_)) => file.expect("parsed file"),
    };
    if file.len() > MAX_FILE_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Maximum content size limit (26214400) exceeded.",
            "invalid_request_error",
            None,
        );
    }
    let Some(model) = recorded.model.clone() else {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
        );
    };
    let extension_ok = recorded
        .file_name
        .as_deref()
        .and_then(|n| n.rsplit_once('.'))
        .is_some_and(|(_, ext)| ACCEPTED_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()));
    if !extension_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']",
            "invalid_request_error",
            None,
        );
    }
    // "Create translation": `model` — "Only `whisper-1` (which is powered by our open source
    // Whisper V2 model) is currently available." The answer's wording is not documented.
    if translating && model != "whisper-1" {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("model '{model}' is not supported for translations"),
            "invalid_request_error",
            Some("unsupported_value"),
        );
    }
    let format = recorded
        .response_format
        .clone()
        .unwrap_or_else(|| "json".into());
    if model.starts_with("gpt-4o") && !matches!(format.as_str(), "json" | "text") {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("response_format '{format}' is not compatible with model '{model}'"),
            "invalid_request_error",
            Some("unsupported_value"),
        );
    }
    if !recorded.timestamp_granularities.is_empty() && format != "verbose_json" {
        return error(
            StatusCode::BAD_REQUEST,
            "timestamp_granularities requires response_format=verbose_json",
            "invalid_request_error",
            None,
        );
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let duration = wav_duration(&file).unwrap_or(1.0);
    let text = fixed_text.unwrap_or_else(|| {
        format!(
            "Received {} bytes of audio. Checksum {}.",
            file.len(),
            &recorded.file_sha256.as_deref().unwrap_or_default()[..16]
        )
    });
    let segments = segments_for(&text, duration);
    match format.as_str() {
        "json" => Json(json!({"text": text})).into_response(),
        "text" => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response(),
        // CreateTranslationResponseVerboseJson: duration, language ("always `english`"), text,
        // segments.
        "verbose_json" if translating => Json(json!({
            "language": "english",
            "duration": duration,
            "text": text,
            "segments": segments,
        }))
        .into_response(),
        "verbose_json" => Json(json!({
            "task": "transcribe",
            "language": if recorded.language.as_deref().is_some_and(|l| l != "en") { "unknown" } else { "english" },
            "duration": duration,
            "text": text,
            "segments": segments,
        }))
        .into_response(),
        "srt" | "vtt" => {
            let mut out = if format == "vtt" { String::from("WEBVTT\n\n") } else { String::new() };
            for (i, s) in segments.iter().enumerate() {
                let (start, end) = (s["start"].as_f64().unwrap_or(0.0), s["end"].as_f64().unwrap_or(0.0));
                let mark = if format == "vtt" { '.' } else { ',' };
                if format == "srt" {
                    out.push_str(&format!("{}\n", i + 1));
                }
                out.push_str(&format!("{} --> {}\n{}\n\n", stamp(start, mark), stamp(end, mark), s["text"].as_str().unwrap_or("")));
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
        }
        other => error(
            StatusCode::BAD_REQUEST,
            &format!("'{other}' is not one of ['json', 'text', 'srt', 'verbose_json', 'vtt'] - 'response_format'"),
            "invalid_request_error",
            None,
        ),
    }
}

/// Reads the form, recording every field; returns the file's bytes if there was one.
async fn read_form(
    mut multipart: Multipart,
    recorded: &mut RecordedRequest,
) -> Result<Option<Vec<u8>>, &'static str> {
    let mut file = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|_| "Could not parse multipart form")?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            recorded.file_name = field.file_name().map(str::to_owned);
            recorded.file_content_type = field.content_type().map(str::to_owned);
            let bytes = field
                .bytes()
                .await
                .map_err(|_| "Could not parse multipart form")?;
            recorded.file_len = bytes.len();
            recorded.file_sha256 = Some(hex::encode(Sha256::digest(&bytes)));
            file = Some(bytes.to_vec());
            continue;
        }
        let value = field
            .text()
            .await
            .map_err(|_| "Could not parse multipart form")?;
        match name.as_str() {
            "model" => recorded.model = Some(value),
            "response_format" => recorded.response_format = Some(value),
            "language" => recorded.language = Some(value),
            "prompt" => recorded.prompt = Some(value),
            "temperature" => recorded.temperature = Some(value),
            "timestamp_granularities[]" => recorded.timestamp_granularities.push(value),
            _ => {}
        }
    }
    Ok(file)
}

/// Duration of a PCM WAV from its header, if it is one.
fn wav_duration(bytes: &[u8]) -> Option<f64> {
    if bytes.len() < 44 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut pos = 12;
    let mut byte_rate = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
        if id == b"fmt " && pos + 20 <= bytes.len() {
            byte_rate = Some(u32::from_le_bytes(
                bytes[pos + 16..pos + 20].try_into().ok()?,
            ));
        }
        if id == b"data" {
            let data_len = len.min(bytes.len() - pos - 8);
            return byte_rate
                .filter(|r| *r > 0)
                .map(|r| data_len as f64 / f64::from(r));
        }
        pos += 8 + len + (len & 1);
    }
    None
}

/// Sentences spread evenly over the audio, shaped like OpenAI's verbose_json segments.
fn segments_for(text: &str, duration: f64) -> Vec<serde_json::Value> {
    let sentences: Vec<&str> = text
        .split_inclusive(['.', '?', '!'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let n = sentences.len().max(1) as f64;
    sentences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let start = duration * i as f64 / n;
            let end = duration * (i + 1) as f64 / n;
            json!({"id": i, "seek": 0, "start": start, "end": end, "text": format!(" {s}"), "tokens": [],
                   "temperature": 0.0, "avg_logprob": -0.25, "compression_ratio": 1.2, "no_speech_prob": 0.01})
        })
        .collect()
}

fn stamp(seconds: f64, mark: char) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{mark}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// A 16-bit mono PCM WAV of `seconds` of a quiet tone: real audio for tests, made in memory.
pub fn tone_wav(seconds: f64, sample_rate: u32) -> Vec<u8> {
    let samples = (seconds * f64::from(sample_rate)) as u32;
    let data_len = samples * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let t = f64::from(i) / f64::from(sample_rate);
        let v = (t * 440.0 * std::f64::consts::TAU).sin() * 3000.0;
        out.extend_from_slice(&(v as i16).to_le_bytes());
    }
    out
}

/// A real AWS emulator for tests: `moto_server` (PyPI `moto[server]`, installed by
/// `scripts/setup.sh`) on the loopback port it binds itself, stopped when dropped. Its SQS
/// clock moves with [`MotoServer::advance_sqs_clock`].
pub struct MotoServer {
    child: std::process::Child,
    endpoint: String,
    clock_file: tempfile::NamedTempFile,
    clock_offset: std::sync::Mutex<Duration>,
}

impl MotoServer {
    pub async fn start() -> std::io::Result<Self> {
        // moto_server's own Python (the virtual environment `make setup` made), running
        // testkit/moto/moto_server.py: moto with its ListParts answer put right.
        let moto = which("moto_server").ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "moto_server is not on PATH (run `make setup`)",
            )
        })?;
        let python = moto.with_file_name("python3");
        let launcher = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("moto/moto_server.py");
        let clock_file = tempfile::NamedTempFile::new()?;
        let mut child = std::process::Command::new(&python)
            .arg(launcher)
            .args(["-H", "127.0.0.1"])
            .env("MMT_MOTO_CLOCK_FILE", clock_file.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("{}: {e} (run `make setup`)", python.display()),
                )
            })?;
        // The launcher prints the port it bound, once it listens.
        let stdout = child.stdout.take().expect("stdout is piped");
        let first_line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .map(|_| line)
        });
        let port: u16 = match tokio::time::timeout(Duration::from_secs(30), first_line).await {
            Ok(Ok(Ok(line))) => line.trim().parse().map_err(|_| {
                std::io::Error::other(format!("moto_server printed {line:?}, not a port"))
            })?,
            _ => {
                let _ = child.kill();
                return Err(std::io::Error::other(
                    "moto_server did not start within 30 s",
                ));
            }
        };
        Ok(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            clock_file,
            clock_offset: std::sync::Mutex::new(Duration::ZERO),
        })
    }

    /// Moves this emulator's SQS clock forward by `by`: visibility timeouts and delays run
    /// out as if that much time had passed.
    pub fn advance_sqs_clock(&self, by: Duration) {
        let mut offset = self.clock_offset.lock().expect("clock lock");
        *offset += by;
        std::fs::write(self.clock_file.path(), offset.as_secs_f64().to_string())
            .expect("the clock file is writable");
    }

    /// The value for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// The first `name` on PATH.
fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_duration_reads_the_header() {
        let wav = tone_wav(2.5, 16_000);
        let d = wav_duration(&wav).unwrap();
        assert!((d - 2.5).abs() < 1e-3, "{d}");
        assert_eq!(
            wav_duration(b"not a wav file at all, clearly not one......"),
            None
        );
    }

    #[test]
    fn segments_cover_the_audio() {
        let segs = segments_for("One. Two? Three!", 3.0);
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[2]["end"], 3.0);
        assert_eq!(segs[1]["text"], " Two?");
    }
}
