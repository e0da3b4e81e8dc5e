//! Response shapes for transcriptions.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{
    EngineKind, NoteSection, Segment, Status, StructuredNote, Task, TranscriptionRecord,
};

/// One section of a structured note.
#[derive(Debug, Serialize, ToSchema)]
pub struct SectionView {
    /// The template's key (`subjective`, `hpi`, ...).
    pub key: String,
    pub title: &'static str,
    /// The SOAP field the EHR push writes it into.
    pub field: NoteSection,
    pub text: String,
}

/// A transcript split into a note template's sections.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteView {
    /// `soap`, `history_and_physical` or `progress_note`.
    pub template: String,
    /// In the template's order; sections not dictated are absent.
    pub sections: Vec<SectionView>,
    /// Text spoken before the first heading.
    pub preamble: String,
}

impl From<&StructuredNote> for NoteView {
    fn from(note: &StructuredNote) -> Self {
        Self {
            template: note.template.as_str().to_owned(),
            sections: note
                .sections
                .iter()
                .filter_map(|s| {
                    let spec = note.template.section(&s.key)?;
                    Some(SectionView {
                        key: s.key.clone(),
                        title: spec.title,
                        field: spec.field,
                        text: s.text.clone(),
                    })
                })
                .collect(),
            preamble: note.preamble.clone(),
        }
    }
}

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
    /// The transcript's version once completed: 1 as the engine wrote it, one more per edit.
    /// Send it back with an edit.
    pub version: Option<u32>,
    /// Who saved this version (absent for the engine's).
    pub edited_by: Option<String>,
    pub edited_at: Option<DateTime<Utc>>,
    /// The sections, once the transcript was structured.
    pub note: Option<NoteView>,
}

impl From<TranscriptionRecord> for TranscriptionView {
    fn from(r: TranscriptionRecord) -> Self {
        let version = r.transcript.as_ref().map(|t| t.version());
        let revision = r.transcript.as_ref().and_then(|t| t.revision.clone());
        let note = r
            .transcript
            .as_ref()
            .and_then(|t| t.note.as_ref())
            .map(NoteView::from);
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
            version,
            edited_by: revision.as_ref().and_then(|r| r.author.clone()),
            edited_at: revision.map(|r| r.at),
            note,
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
