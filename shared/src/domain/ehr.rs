//! Pushing a transcript into an electronic health record: what is sent, and what came back.
//! Names no vendor: the adapters (`adapters::openemr`) map this onto an EHR's API.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use super::{OwnerId, TranscriptionId};

/// The most characters one note field takes (OpenEMR's SOAP-note limit).
pub const MAX_NOTE_CHARS: usize = 65_535;

/// Which part of a SOAP note the transcript goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteSection {
    Subjective,
    Objective,
    Assessment,
    Plan,
}

impl NoteSection {
    pub const ALL: [NoteSection; 4] = [
        Self::Subjective,
        Self::Objective,
        Self::Assessment,
        Self::Plan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subjective => "subjective",
            Self::Objective => "objective",
            Self::Assessment => "assessment",
            Self::Plan => "plan",
        }
    }
}

impl FromStr for NoteSection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "subjective" => Ok(Self::Subjective),
            "objective" => Ok(Self::Objective),
            "assessment" => Ok(Self::Assessment),
            "plan" => Ok(Self::Plan),
            _ => Err("expected subjective, objective, assessment or plan".into()),
        }
    }
}

impl fmt::Display for NoteSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One note to write: where, what, and the marker that identifies it afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteDelivery {
    /// The delivery this note belongs to (MMT's outbox id).
    pub delivery_id: uuid::Uuid,
    pub transcription_id: TranscriptionId,
    /// The EHR's patient id as the client gave it (a uuid, or a numeric id).
    pub patient_ref: String,
    /// The EHR's encounter id as the client gave it.
    pub encounter_ref: String,
    pub section: NoteSection,
    /// The note's text, marker included, within [`MAX_NOTE_CHARS`].
    pub text: String,
    /// Found in the text of a note MMT wrote: lets a retry find a note an earlier attempt
    /// wrote before its answer was lost.
    pub marker: String,
    /// Look for the marker before writing (every attempt after the first).
    pub check_existing: bool,
}

/// The marker MMT puts in every note it writes for a delivery.
pub fn delivery_marker(delivery_id: &str) -> String {
    format!("[MMT delivery {delivery_id}]")
}

/// The note text for a transcript: the transcript, cut at [`MAX_NOTE_CHARS`] with a clear
/// notice when it is longer, and the delivery marker on its own last line.
pub fn note_text(transcript: &str, transcription: &TranscriptionId, marker: &str) -> String {
    let footer = format!("\n\n{marker}");
    let body = transcript.trim();
    let room = MAX_NOTE_CHARS - footer.chars().count();
    if body.chars().count() <= room {
        return format!("{body}{footer}");
    }
    let notice = format!(
        "\n\n[Transcript truncated by MMT at {MAX_NOTE_CHARS} characters; the full text is transcription {transcription}.]"
    );
    let keep = room - notice.chars().count();
    let cut: String = body.chars().take(keep).collect();
    format!("{cut}{notice}{footer}")
}

/// What the EHR answered for a note it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EhrReceipt {
    /// The EHR's id of the note (OpenEMR: the SOAP note's `sid`).
    pub note_id: String,
    /// The EHR's id of the form or resource holding it (OpenEMR: `fid`), when it gives one.
    pub form_id: Option<String>,
    /// `true` when a retry found the note an earlier attempt had written.
    pub found_existing: bool,
}

/// Why a push did not (yet) succeed. Reasons never carry note text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EhrError {
    /// Worth retrying: connection errors, timeouts, 429 and 5xx.
    #[error("{reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help: the EHR refused the request (4xx other than 401/429), or the
    /// patient and encounter do not match.
    #[error("{0}")]
    Permanent(String),
    /// The EHR connection's login is no longer valid: an administrator must sign in again.
    #[error("{0}")]
    NeedsLogin(String),
}

/// Where a delivery is. `Delivered` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(format!("unknown delivery status {other:?}")),
        }
    }
}

/// One request to put a transcript into an EHR, and what became of it: the outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct EhrDelivery {
    /// A UUIDv7; also the marker MMT writes into the note.
    pub id: uuid::Uuid,
    pub transcription_id: TranscriptionId,
    pub owner: OwnerId,
    /// Which EHR connection (`openemr`).
    pub target: String,
    /// The EHR's patient id as given. PHI: sealed at rest with field encryption.
    pub patient_ref: String,
    /// The EHR's encounter id as given. PHI: sealed at rest with field encryption.
    pub encounter_ref: String,
    pub section: NoteSection,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub receipt: Option<EhrReceipt>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EhrDelivery {
    pub fn new_pending(
        transcription_id: TranscriptionId,
        owner: OwnerId,
        target: &str,
        patient_ref: String,
        encounter_ref: String,
        section: NoteSection,
        now: DateTime<Utc>,
    ) -> Self {
        let now = chrono::SubsecRound::trunc_subsecs(now, 6);
        Self {
            id: uuid::Uuid::now_v7(),
            transcription_id,
            owner,
            target: target.to_owned(),
            patient_ref,
            encounter_ref,
            section,
            status: DeliveryStatus::Pending,
            attempts: 0,
            receipt: None,
            error: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether this delivery already covers a push of the same transcript to the same place:
    /// then a second request returns it instead of writing a second note.
    pub fn covers(&self, target: &str, patient_ref: &str, encounter_ref: &str) -> bool {
        self.status != DeliveryStatus::Failed
            && self.target == target
            && self.patient_ref == patient_ref
            && self.encounter_ref == encounter_ref
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_transcripts_are_cut_with_a_notice_and_keep_the_marker() {
        let id = TranscriptionId::new();
        let marker = delivery_marker("d1");
        let short = note_text("  Patient is well.  ", &id, &marker);
        assert_eq!(short, format!("Patient is well.\n\n{marker}"));

        let long = "é".repeat(MAX_NOTE_CHARS * 2);
        let text = note_text(&long, &id, &marker);
        assert_eq!(text.chars().count(), MAX_NOTE_CHARS);
        assert!(text.ends_with(&marker));
        assert!(text.contains("truncated by MMT") && text.contains(&id.to_string()));
        // Exactly at the limit: kept whole.
        let room = MAX_NOTE_CHARS - format!("\n\n{marker}").chars().count();
        let exact = "a".repeat(room);
        assert!(!note_text(&exact, &id, &marker).contains("truncated"));
        assert!(note_text(&format!("{exact}b"), &id, &marker).contains("truncated"));
    }
}
