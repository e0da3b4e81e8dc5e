//! Response shapes for transcriptions.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{EngineKind, Segment, Status, Task, TranscriptionRecord};

/// A transcription as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptionView {
    pub id: String,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub engine: EngineKind,
    /// `translate`: the text is English, whatever `language` was spoken.
    pub task: Task,
    /// The language spoken (ISO 639-1): as requested, or as the engine detected it.
    pub language: Option<String>,
    /// How sure the engine was of a language it detected (0–1); absent when it was given.
    pub language_probability: Option<f64>,
    pub duration_s: Option<f64>,
    /// The transcript, once `completed`.
    pub text: Option<String>,
    pub segments: Vec<Segment>,
    /// Why the transcription failed, once `failed`.
    pub error: Option<String>,
    pub file_name: Option<String>,
    pub size_bytes: u64,
    /// Engine attempts so far.
    pub attempts: u32,
    /// How far the engine has got, 0–100: for progress bars while `processing`.
    pub progress: u8,
}

impl From<TranscriptionRecord> for TranscriptionView {
    fn from(r: TranscriptionRecord) -> Self {
        let (text, segments, duration_s, detected, probability) = match r.transcript {
            Some(t) => (
                Some(t.text),
                t.segments,
                t.duration_s,
                t.language,
                t.language_probability,
            ),
            None => (None, Vec::new(), None, None, None),
        };
        Self {
            id: r.id.to_string(),
            status: r.status,
            created_at: r.created_at,
            updated_at: r.updated_at,
            engine: r.engine,
            task: r.task,
            language_probability: probability,
            language: r.language.or(detected),
            duration_s,
            text,
            segments,
            error: r.error,
            file_name: r.file_name,
            size_bytes: r.size_bytes,
            attempts: r.attempts,
            progress: r.progress,
        }
    }
}

/// A transcription in a listing: everything but the transcript itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptionSummary {
    pub id: String,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub engine: EngineKind,
    pub task: Task,
    pub language: Option<String>,
    pub duration_s: Option<f64>,
    pub error: Option<String>,
    pub file_name: Option<String>,
    pub size_bytes: u64,
}

impl From<TranscriptionRecord> for TranscriptionSummary {
    fn from(r: TranscriptionRecord) -> Self {
        let view = TranscriptionView::from(r);
        Self {
            id: view.id,
            status: view.status,
            created_at: view.created_at,
            updated_at: view.updated_at,
            engine: view.engine,
            task: view.task,
            language: view.language,
            duration_s: view.duration_s,
            error: view.error,
            file_name: view.file_name,
            size_bytes: view.size_bytes,
        }
    }
}

/// One page of the caller's transcriptions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptionList {
    pub items: Vec<TranscriptionSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}
