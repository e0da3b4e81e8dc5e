//! The domain: what a transcription is and how it moves through its life. Names no vendor.

mod audio;
mod audit;
mod ehr;
mod ids;
mod languages;
pub mod live;
mod note_structure;
mod notify;
mod phi_mask;
mod retry;
mod transcript;
mod upload;
mod vocabulary;

pub use audio::{AudioFormat, sniff_audio_format};
pub use audit::{
    AuditAction, AuditEvent, AuditOutcome, AuditQuery, ChainLink, ChainReport, verify_chains,
};
pub use ehr::{
    DeliveryStatus, EhrDelivery, EhrError, EhrLogin, EhrReceipt, EncounterSummary, MAX_NOTE_BYTES,
    MAX_PATIENT_RESULTS, MIN_NOTE_BYTES, NoteDelivery, NoteError, NoteSection, PatientQuery,
    PatientSummary, delivery_marker, newest_first, note_fields,
};
pub use ids::{BlobKey, InvalidId, JobId, OwnerId, PARTS_SUFFIX, TranscriptionId};
pub use languages::{language_code, language_name};
pub use note_structure::{
    NoteTemplate, SectionSpec, SectionText, StructureError, StructuredNote, split_by_headings,
};
pub use notify::{
    EventKind, Notification, WEBHOOK_REPLAY_WINDOW_SECS, verify_webhook, webhook_signature,
};
pub use phi_mask::mask_phi;
pub use retry::{Backoff, MAX_BACKOFF};
pub use transcript::{
    ResponseFormat, Revision, Segment, TokenScore, Transcript, TranscriptEdit, TranscriptVersion,
    Word, carry_segments, render_transcript,
};
pub use upload::{MIN_PART_BYTES, UploadPlan};
pub use vocabulary::{
    MAX_TERM_CHARS, MAX_TERMS, PROMPT_TOKEN_BUDGET, Prompt, Vocabulary, VocabularyError,
    compose_prompt, estimated_tokens,
};

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which engine turns audio into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// An OpenAI-compatible transcription API.
    Cloud,
    /// Whisper running in this process (CPU or GPU).
    Local,
}

impl EngineKind {
    pub const ALL: [EngineKind; 2] = [Self::Cloud, Self::Local];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cloud => "cloud",
            Self::Local => "local",
        }
    }
}

impl FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cloud" => Ok(Self::Cloud),
            "local" => Ok(Self::Local),
            _ => Err("expected cloud or local".into()),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine makes of the speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Text in the language spoken.
    #[default]
    Transcribe,
    /// English text, whatever language was spoken (multilingual models only).
    Translate,
}

impl Task {
    pub const ALL: [Task; 2] = [Self::Transcribe, Self::Translate];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transcribe => "transcribe",
            Self::Translate => "translate",
        }
    }
}

impl FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "transcribe" => Ok(Self::Transcribe),
            "translate" => Ok(Self::Translate),
            _ => Err("task must be transcribe or translate".into()),
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a client asked of a recording, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionRequest {
    pub engine: EngineKind,
    pub task: Task,
    /// ISO 639-1 code of the language spoken; `None` = detect.
    pub language: Option<String>,
    /// Vocabulary hints for the engine. PHI-adjacent: never logged.
    pub prompt: Option<String>,
}

/// Where a transcription is in its life. `Completed` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created by `POST /v1/uploads`; the client has not completed its resumable upload yet.
    AwaitingUpload,
    Queued,
    Processing,
    Completed,
    Failed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Self::AwaitingUpload,
        Self::Queued,
        Self::Processing,
        Self::Completed,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingUpload => "awaiting_upload",
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "awaiting_upload" => Ok(Self::AwaitingUpload),
            "queued" => Ok(Self::Queued),
            "processing" => Ok(Self::Processing),
            "completed" => Ok(Self::Completed),
            "failed" => Ok(Self::Failed),
            other => Err(format!("unknown status {other:?}")),
        }
    }
}

/// One uploaded recording and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionRecord {
    pub id: TranscriptionId,
    pub owner: OwnerId,
    pub status: Status,
    pub engine: EngineKind,
    pub task: Task,
    /// The language the client asked for (ISO 639-1), or the one the engine detected.
    pub language: Option<String>,
    /// Vocabulary hints for the engine (e.g. drug names). PHI-adjacent: never logged.
    pub prompt: Option<String>,
    /// The client's file name. PHI-adjacent: never logged.
    pub file_name: Option<String>,
    pub audio_format: AudioFormat,
    pub audio_key: BlobKey,
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub attempts: u32,
    /// How far the engine has got, 0–100 (100 once completed).
    pub progress: u8,
    pub transcript: Option<Transcript>,
    pub error: Option<String>,
}

impl TranscriptionRecord {
    /// A freshly uploaded recording, waiting for the worker.
    pub fn new_queued(
        id: TranscriptionId,
        owner: OwnerId,
        request: TranscriptionRequest,
        file_name: Option<String>,
        audio_format: AudioFormat,
        size_bytes: u64,
        now: DateTime<Utc>,
    ) -> Self {
        // Stores keep microseconds: a record reads back exactly as it was made.
        let now = chrono::SubsecRound::trunc_subsecs(now, 6);
        Self {
            audio_key: BlobKey::for_transcription(&id),
            id,
            owner,
            status: Status::Queued,
            engine: request.engine,
            task: request.task,
            language: request.language,
            prompt: request.prompt,
            file_name,
            audio_format,
            size_bytes,
            created_at: now,
            updated_at: now,
            attempts: 0,
            progress: 0,
            transcript: None,
            error: None,
        }
    }

    /// A record for a resumable upload: the audio arrives in parts later, and its format and
    /// size are confirmed when the upload is completed.
    pub fn new_awaiting_upload(
        id: TranscriptionId,
        owner: OwnerId,
        request: TranscriptionRequest,
        file_name: Option<String>,
        declared_format: AudioFormat,
        declared_size: u64,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            status: Status::AwaitingUpload,
            audio_key: BlobKey::for_transcription(&id),
            ..Self::new_queued(
                id,
                owner,
                request,
                file_name,
                declared_format,
                declared_size,
                now,
            )
        }
    }

    /// The name to hand an engine: the client's, or one made from the id and sniffed format.
    /// Engines such as OpenAI's infer the container from the extension.
    pub fn engine_file_name(&self) -> String {
        format!("{}.{}", self.id, self.audio_format.extension())
    }
}

/// A validated language code (ISO 639-1, two or three lowercase letters).
pub fn parse_language(raw: &str) -> Result<String, String> {
    let lang = raw.trim().to_ascii_lowercase();
    if (2..=3).contains(&lang.len()) && lang.chars().all(|c| c.is_ascii_lowercase()) {
        Ok(lang)
    } else {
        Err("language must be an ISO 639-1 code such as \"en\"".into())
    }
}
