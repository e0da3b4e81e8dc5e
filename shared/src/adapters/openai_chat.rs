//! [`NoteDrafter`] on an OpenAI-compatible chat-completions API (`POST {base}/chat/completions`,
//! OpenAI's API reference, "Create chat completion").
//!
//! Contract: JSON `model` and `messages` (`system` then `user`), `temperature` 0 and
//! `response_format: {"type": "json_object"}`, which OpenAI accepts only when a message names
//! JSON. The answer's `choices[0].message.content` is the JSON object of sections;
//! `finish_reason` `length` means it was cut off. Failures are those of the transcription
//! endpoint (429 with `Retry-After` or `insufficient_quota`, 5xx, timeouts retried with backoff;
//! 401, 403, 404 and other 4xx not), read by the same code.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::openai::{AttemptFailure, failure_of};
use crate::{
    config::CloudEngineConfig,
    domain::{Backoff, NoteTemplate, SectionText, StructuredNote},
    ports::{DraftError, NoteDrafter},
};

const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub struct OpenAiNoteDrafter {
    http: reqwest::Client,
    config: CloudEngineConfig,
    model: String,
}

impl OpenAiNoteDrafter {
    /// `None` when no draft model is configured (`NOTE_DRAFT_MODEL`).
    pub fn new(config: CloudEngineConfig) -> Result<Option<Self>, reqwest::Error> {
        let Some(model) = config.draft_model.clone() else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.request_timeout)
            .user_agent(concat!("mmt/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Some(Self {
            http,
            config,
            model,
        }))
    }

    fn request(&self, transcript: &str, template: NoteTemplate) -> Value {
        let keys: Vec<&str> = template.sections().iter().map(|s| s.key).collect();
        let titles: Vec<String> = template
            .sections()
            .iter()
            .map(|s| format!("{} ({})", s.key, s.title))
            .collect();
        let system = format!(
            "You are a clinical documentation assistant. Split the transcript the user gives \
             (a clinician's dictation or a clinician-patient conversation) into the sections of \
             a {template} note: {}. Answer with one JSON object whose keys are exactly {} and \
             whose values are the text for each section, in the transcript's own words. Do not \
             add facts that are not in the transcript. Use an empty string for a section with \
             nothing in it.",
            titles.join(", "),
            keys.join(", ")
        );
        json!({
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": transcript},
            ],
        })
    }

    async fn attempt(&self, body: &Value) -> Result<Value, AttemptFailure> {
        let response = self
            .http
            .post(format!("{}/chat/completions", self.config.base_url))
            .bearer_auth(self.config.api_key.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "could not be reached"
                };
                AttemptFailure::retryable(format!("the draft model {what}"), None)
            })?;
        if !response.status().is_success() {
            return Err(failure_of(response).await);
        }
        response.json().await.map_err(|_| {
            AttemptFailure::retryable("the draft model's answer was cut off".into(), None)
        })
    }
}

/// The sections in a chat completion, checked against the template.
fn sections_of(answer: &Value, template: NoteTemplate) -> Result<StructuredNote, DraftError> {
    let choice = &answer["choices"][0];
    if choice["finish_reason"] == "length" {
        return Err(DraftError::Unusable(
            "the draft model stopped before it finished the note".into(),
        ));
    }
    let content = choice["message"]["content"]
        .as_str()
        .ok_or_else(|| DraftError::Unusable("the draft model gave no text".into()))?;
    let object: serde_json::Map<String, Value> = serde_json::from_str(content)
        .map_err(|_| DraftError::Unusable("the draft model did not answer in JSON".into()))?;
    let sections: Vec<SectionText> = template
        .sections()
        .iter()
        .filter_map(|spec| {
            let text = object.get(spec.key)?.as_str()?.trim();
            (!text.is_empty()).then(|| SectionText {
                key: spec.key.into(),
                text: text.to_owned(),
            })
        })
        .collect();
    if sections.is_empty() {
        return Err(DraftError::Unusable(
            "the draft model filled none of the template's sections".into(),
        ));
    }
    StructuredNote::from_parts(template, sections, String::new())
        .map_err(|e| DraftError::Unusable(e.to_string()))
}

#[async_trait]
impl NoteDrafter for OpenAiNoteDrafter {
    async fn draft(
        &self,
        transcript: &str,
        template: NoteTemplate,
    ) -> Result<StructuredNote, DraftError> {
        let body = self.request(transcript, template);
        let mut attempt = 0;
        loop {
            match self.attempt(&body).await {
                Ok(answer) => return sections_of(&answer, template),
                Err(failure) if failure.retry_here && attempt < self.config.max_retries => {
                    attempt += 1;
                    let delay = Backoff::new(self.config.retry_base_delay)
                        .capped_at(MAX_BACKOFF)
                        .delay(attempt, failure.retry_after);
                    tracing::warn!(attempt, reason = %failure.reason, "note draft failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(failure) if failure.transient => {
                    return Err(DraftError::Unavailable(failure.reason));
                }
                Err(failure) => return Err(DraftError::Refused(failure.reason)),
            }
        }
    }
}
