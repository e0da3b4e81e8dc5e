//! Correcting and structuring a transcript. Every change is a new version: the engine's text
//! and each earlier version stay in the record, with who saved them and when, and the EHR
//! push sends the latest.

use std::sync::Arc;

use super::{AppState, audit::AuditTrail};
use crate::{
    domain::{
        AuditAction, AuditEvent, AuditOutcome, NoteTemplate, OwnerId, Segment, Status,
        StructuredNote, TranscriptEdit, TranscriptionRecord, carry_segments, split_by_headings,
    },
    ports::{Clock, DraftError, NoteDrafter, RecordStore, StoreError},
};

/// The longest transcript text an edit may save (a long dictation is far shorter).
pub const MAX_EDIT_BYTES: usize = 512 * 1024;
/// The most segments an edit may send (a three-hour recording has a few thousand).
pub const MAX_EDIT_SEGMENTS: usize = 20_000;

/// Checks what a client sent before anything is saved: sizes, and segment times that are
/// numbers, in order within each segment.
fn check(request: &EditRequest) -> Result<(), EditError> {
    let note_bytes = request
        .note
        .as_ref()
        .and_then(Option::as_ref)
        .map_or(0, |n| {
            n.preamble.len() + n.sections.iter().map(|s| s.text.len()).sum::<usize>()
        });
    let text_bytes = request.text.as_ref().map_or(0, String::len);
    if text_bytes > MAX_EDIT_BYTES || note_bytes > MAX_EDIT_BYTES {
        return Err(EditError::Invalid(format!(
            "the text and the sections may each be at most {MAX_EDIT_BYTES} bytes"
        )));
    }
    if let Some(segments) = &request.segments {
        if segments.len() > MAX_EDIT_SEGMENTS {
            return Err(EditError::Invalid(format!(
                "at most {MAX_EDIT_SEGMENTS} segments"
            )));
        }
        let sane = |s: &Segment| {
            s.start.is_finite() && s.end.is_finite() && s.start >= 0.0 && s.start <= s.end
        };
        if !segments.iter().all(sane) {
            return Err(EditError::Invalid(
                "each segment needs 0 <= start <= end, in seconds".into(),
            ));
        }
    }
    Ok(())
}

/// What editing needs.
pub struct Edits {
    records: Arc<dyn RecordStore>,
    audit: AuditTrail,
    clock: Arc<dyn Clock>,
    drafter: Option<Arc<dyn NoteDrafter>>,
}

impl AppState {
    pub fn edits(&self) -> Edits {
        Edits {
            records: self.records.clone(),
            audit: self.audit_trail(),
            clock: self.clock.clone(),
            drafter: self.drafter.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("the transcription is {0}; it can be edited once it is completed")]
    NotCompleted(&'static str),
    /// Someone saved another version since the editor loaded `expected`.
    #[error("version {expected} is no longer the latest (it is {current}): reload and edit again")]
    Stale { expected: u32, current: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error("could not save the edit")]
    Store(#[from] StoreError),
    #[error("note drafts are not configured on this deployment (NOTE_DRAFT_MODEL)")]
    NoDrafter,
    #[error("the note could not be drafted: {0}")]
    Draft(#[from] DraftError),
}

/// An edit as a client asks for it.
pub struct EditRequest {
    /// The version the editor started from; `None` edits whatever is latest.
    pub base_version: Option<u32>,
    /// The new text; `None` keeps it (an edit of the sections alone).
    pub text: Option<String>,
    pub segments: Option<Vec<Segment>>,
    /// New sections; `Some(None)` removes the structure.
    pub note: Option<Option<StructuredNote>>,
}

impl Edits {
    /// Saves `request` as the record's next version by `author`, and returns the record as
    /// saved. Without new segments, the old ones keep their times around the edit; without
    /// new sections, a structured note is split again at the same template's headings.
    pub async fn revise(
        &self,
        mut record: TranscriptionRecord,
        author: &OwnerId,
        request: EditRequest,
    ) -> Result<TranscriptionRecord, EditError> {
        if record.status != Status::Completed {
            return Err(EditError::NotCompleted(record.status.as_str()));
        }
        check(&request)?;
        let read_at = record.updated_at;
        let transcript = record
            .transcript
            .as_mut()
            .ok_or(EditError::NotCompleted("without a transcript"))?;
        let current = transcript.version();
        if let Some(expected) = request.base_version
            && expected != current
        {
            return Err(EditError::Stale { expected, current });
        }
        let text = request.text.unwrap_or_else(|| transcript.text.clone());
        let segments = match request.segments {
            Some(segments) => Some(segments),
            None if text != transcript.text => Some(
                carry_segments(&transcript.segments, &transcript.text, &text).unwrap_or_default(),
            ),
            None => None,
        };
        let note = match request.note {
            Some(note) => Some(note),
            None if text != transcript.text => transcript
                .note
                .as_ref()
                .map(|old| split_by_headings(&text, old.template)),
            None => None,
        };
        let now = chrono::SubsecRound::trunc_subsecs(self.clock.now(), 6);
        transcript.revise(
            TranscriptEdit {
                text,
                segments,
                note,
            },
            author.as_str(),
            now,
            read_at,
        );
        let version = transcript.version();
        record.updated_at = now.max(read_at + chrono::Duration::microseconds(1));
        if !self.records.revise(&record, read_at).await? {
            let latest = self.records.get(&record.id).await?;
            let current = latest
                .and_then(|r| r.transcript)
                .map_or(current, |t| t.version());
            return Err(EditError::Stale {
                expected: version - 1,
                current,
            });
        }
        let event = AuditEvent::now(AuditAction::Edit, AuditOutcome::Success, author.as_str())
            .on(record.id)
            .detail(format!("saved version {version}"));
        self.audit.record(event).await;
        tracing::info!(transcription_id = %record.id, version, "transcript edited");
        Ok(record)
    }

    /// Splits the latest version into `template`'s sections at its spoken headings, as a new
    /// version. `Invalid` when no heading of the template was spoken.
    pub async fn structure(
        &self,
        record: TranscriptionRecord,
        author: &OwnerId,
        template: NoteTemplate,
    ) -> Result<TranscriptionRecord, EditError> {
        let text = record
            .transcript
            .as_ref()
            .map(|t| t.text.clone())
            .unwrap_or_default();
        let note = split_by_headings(&text, template).ok_or_else(|| {
            EditError::Invalid(format!(
                "no {template} section heading was spoken: say \"{}\" and the others, or \
                 write the sections yourself",
                template.sections()[0].title
            ))
        })?;
        self.revise(
            record,
            author,
            EditRequest {
                base_version: None,
                text: None,
                segments: None,
                note: Some(Some(note)),
            },
        )
        .await
    }

    /// Has the draft model split the latest version into `template`'s sections (for a
    /// conversation or a dictation without headings), saved as a new version for the
    /// clinician to review and correct.
    pub async fn draft(
        &self,
        record: TranscriptionRecord,
        author: &OwnerId,
        template: NoteTemplate,
    ) -> Result<TranscriptionRecord, EditError> {
        let drafter = self.drafter.as_ref().ok_or(EditError::NoDrafter)?;
        let text = record
            .transcript
            .as_ref()
            .map(|t| t.text.clone())
            .unwrap_or_default();
        if text.trim().is_empty() {
            return Err(EditError::Invalid("the transcript is empty".into()));
        }
        let note = drafter.draft(&text, template).await?;
        self.revise(
            record,
            author,
            EditRequest {
                base_version: None,
                text: None,
                segments: None,
                note: Some(Some(note)),
            },
        )
        .await
    }
}
