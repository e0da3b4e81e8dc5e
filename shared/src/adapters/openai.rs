//! [`Transcriber`] for OpenAI-compatible transcription APIs (`POST {base}/audio/transcriptions`,
//! and `POST {base}/audio/translations` for [`Task::Translate`]).
//!
//! Contract: multipart `file` (≤ 25 MB, a file name with an extension) and `model`, optional
//! `language`, `prompt`, `response_format`, `temperature`, `timestamp_granularities[]`; the
//! translation form has no `language` and no `timestamp_granularities[]`, and only the whisper
//! models translate (OpenAI's API reference, "Create translation").
//! Failures: 429 (rate limit, or `insufficient_quota`), 5xx, timeouts are retried here with
//! exponential backoff and full jitter, honouring `Retry-After`; other 4xx are not.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, multipart};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::{
    config::CloudEngineConfig,
    domain::{Backoff, EngineKind, Segment, Task, Transcript, language_code},
    ports::{AudioInput, EngineError, Progress, TranscribeOptions, Transcriber},
};

/// OpenAI's documented upload limit.
pub const MAX_CLOUD_FILE_BYTES: u64 = 25 * 1024 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct OpenAiTranscriber {
    http: reqwest::Client,
    config: CloudEngineConfig,
}

/// How one HTTP attempt ended, when it did not succeed.
#[derive(Debug)]
pub(super) struct AttemptFailure {
    pub(super) reason: String,
    /// Worth repeating within this job attempt (after `retry_after` if the server said).
    pub(super) retry_here: bool,
    pub(super) retry_after: Option<Duration>,
    /// Worth another job attempt later, once retries here are spent.
    pub(super) transient: bool,
}

impl AttemptFailure {
    pub(super) fn retryable(reason: String, retry_after: Option<Duration>) -> Self {
        Self {
            reason,
            retry_here: true,
            retry_after,
            transient: true,
        }
    }

    pub(super) fn permanent(reason: String) -> Self {
        Self {
            reason,
            retry_here: false,
            retry_after: None,
            transient: false,
        }
    }
}

#[derive(Deserialize)]
struct VerboseResponse {
    text: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    segments: Vec<Segment>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

impl OpenAiTranscriber {
    pub fn new(config: CloudEngineConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.request_timeout)
            .user_agent(concat!("mmt/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, config })
    }

    /// The gpt-4o transcribe models answer only `json`/`text` and do not translate; whisper
    /// models give segments and translate.
    fn wants_segments(&self) -> bool {
        !self.config.model.starts_with("gpt-4o")
    }

    async fn attempt(
        &self,
        audio: &AudioInput,
        options: &TranscribeOptions,
    ) -> Result<Transcript, AttemptFailure> {
        let form = self.form(audio, options).await?;
        let endpoint = match options.task {
            Task::Transcribe => "transcriptions",
            Task::Translate => "translations",
        };
        let response = self
            .http
            .post(format!("{}/audio/{endpoint}", self.config.base_url))
            .bearer_auth(self.config.api_key.expose_secret())
            .multipart(form)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                AttemptFailure::retryable(format!("cloud engine {what}"), None)
            })?;

        if response.status().is_success() {
            let body = response.bytes().await.map_err(|_| {
                AttemptFailure::retryable("cloud engine response was cut off".into(), None)
            })?;
            let mut transcript = parse_success(&body)?;
            if options.task == Task::Translate {
                // A translation names its output's language (always English), not the speaker's.
                transcript.language = options.language.clone();
            }
            return Ok(transcript);
        }
        Err(failure_of(response).await)
    }

    /// The multipart request OpenAI documents, with the audio streamed from storage.
    async fn form(
        &self,
        audio: &AudioInput,
        options: &TranscribeOptions,
    ) -> Result<multipart::Form, AttemptFailure> {
        let stream = audio.open().await.map_err(|e| {
            let reason = format!("audio could not be read from storage: {e}");
            if e.is_transient() {
                AttemptFailure::retryable(reason, None)
            } else {
                AttemptFailure::permanent(reason)
            }
        })?;
        let file = multipart::Part::stream_with_length(
            reqwest::Body::wrap_stream(stream),
            audio.size_bytes,
        )
        .file_name(audio.file_name.clone())
        .mime_str(audio.format.mime_type())
        .map_err(|e| AttemptFailure::permanent(format!("invalid content type: {e}")))?;
        let response_format = if self.wants_segments() {
            "verbose_json"
        } else {
            "json"
        };
        let mut form = multipart::Form::new()
            .part("file", file)
            .text("model", self.config.model.clone())
            .text("response_format", response_format)
            .text("temperature", "0");
        if options.task == Task::Transcribe {
            if self.wants_segments() {
                form = form.text("timestamp_granularities[]", "segment");
            }
            if let Some(language) = &options.language {
                form = form.text("language", language.clone());
            }
        }
        if let Some(prompt) = &options.prompt {
            form = form.text("prompt", prompt.clone());
        }
        Ok(form)
    }

    /// The calls of one attempt share a tighter cap than jobs: the attempt holds a lease.
    fn backoff(&self, attempt: u32) -> Duration {
        Backoff::new(self.config.retry_base_delay)
            .capped_at(MAX_BACKOFF)
            .delay(attempt + 1, None)
    }
}

/// What an error answer means: whether to retry, and after how long.
pub(super) async fn failure_of(response: reqwest::Response) -> AttemptFailure {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(60.0)));
    let detail: ErrorBody = response
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    // Only the error's type/code: the message text of a remote service is not ours to log.
    let label = [detail.error.kind.as_deref(), detail.error.code.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    let described = |what: &str| {
        if label.is_empty() {
            format!("cloud engine {what} (HTTP {})", status.as_u16())
        } else {
            format!("cloud engine {what} (HTTP {}: {label})", status.as_u16())
        }
    };
    match status {
        StatusCode::TOO_MANY_REQUESTS
            if detail.error.code.as_deref() == Some("insufficient_quota") =>
        {
            AttemptFailure {
                reason: described("quota is exhausted"),
                retry_here: false,
                retry_after: None,
                transient: true,
            }
        }
        StatusCode::TOO_MANY_REQUESTS => {
            AttemptFailure::retryable(described("rate-limited the request"), retry_after)
        }
        StatusCode::UNAUTHORIZED => AttemptFailure::permanent(described("rejected the API key")),
        StatusCode::FORBIDDEN => AttemptFailure::permanent(described("refused access")),
        StatusCode::NOT_FOUND => {
            AttemptFailure::permanent(described("does not know the configured model"))
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            AttemptFailure::permanent(described("refused the file as too large"))
        }
        StatusCode::REQUEST_TIMEOUT => {
            AttemptFailure::retryable(described("timed out"), retry_after)
        }
        s if s.is_server_error() => {
            AttemptFailure::retryable(described("had a server error"), retry_after)
        }
        _ => AttemptFailure::permanent(described("rejected the audio or request")),
    }
}

fn parse_success(body: &[u8]) -> Result<Transcript, AttemptFailure> {
    let parsed: VerboseResponse = serde_json::from_slice(body).map_err(|_| {
        AttemptFailure::retryable("cloud engine returned an unreadable response".into(), None)
    })?;
    let duration_s = parsed
        .duration
        .or_else(|| parsed.segments.iter().map(|s| s.end).reduce(f64::max));
    Ok(Transcript {
        text: parsed.text.trim().to_owned(),
        segments: parsed.segments,
        language: parsed.language.as_deref().and_then(language_code),
        language_probability: None,
        duration_s,
        ..Default::default()
    })
}

#[async_trait]
impl Transcriber for OpenAiTranscriber {
    fn kind(&self) -> EngineKind {
        EngineKind::Cloud
    }

    fn describe(&self) -> String {
        self.config.model.clone()
    }

    fn translates(&self) -> bool {
        self.wants_segments()
    }

    async fn transcribe(
        &self,
        audio: &AudioInput,
        options: &TranscribeOptions,
        _progress: &Progress,
    ) -> Result<Transcript, EngineError> {
        if audio.size_bytes > MAX_CLOUD_FILE_BYTES {
            return Err(EngineError::Permanent(format!(
                "audio is {} bytes; the cloud engine accepts at most {MAX_CLOUD_FILE_BYTES}",
                audio.size_bytes
            )));
        }
        let mut attempt = 0;
        loop {
            match self.attempt(audio, options).await {
                Ok(transcript) => return Ok(transcript),
                Err(failure) if failure.retry_here && attempt < self.config.max_retries => {
                    let wait = failure.retry_after.unwrap_or_else(|| self.backoff(attempt));
                    tracing::warn!(attempt = attempt + 1, wait_ms = wait.as_millis() as u64, reason = %failure.reason, "cloud engine attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(failure) if failure.transient => {
                    return Err(EngineError::Transient(failure.reason));
                }
                Err(failure) => return Err(EngineError::Permanent(failure.reason)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_json_maps_to_a_transcript() {
        let body = br#"{"task":"transcribe","language":"english","duration":3.2,"text":" Hello. ",
            "segments":[{"id":0,"seek":0,"start":0.0,"end":1.2,"text":" Hello.","tokens":[1],"temperature":0.0,
            "avg_logprob":-0.2,"compression_ratio":1.0,"no_speech_prob":0.01}]}"#;
        let t = parse_success(body).unwrap();
        assert_eq!(t.text, "Hello.");
        assert_eq!(t.language.as_deref(), Some("en"));
        assert_eq!(t.duration_s, Some(3.2));
        assert_eq!(t.segments.len(), 1);
    }

    #[test]
    fn plain_json_has_no_segments() {
        let t = parse_success(br#"{"text":"Hi"}"#).unwrap();
        assert_eq!(t.text, "Hi");
        assert!(t.segments.is_empty() && t.language.is_none());
    }

    #[test]
    fn garbage_is_a_retryable_failure() {
        let failure = parse_success(b"<html>bad gateway</html>").unwrap_err();
        assert!(failure.retry_here && failure.transient);
    }
}
