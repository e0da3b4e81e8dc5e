//! The use cases: what MMT does (accept uploads, process transcriptions, push to the EHR,
//! sweep what retention says must go, rotate keys, keep the audit trail), written once against
//! the ports and called alike by the HTTP handlers, the job consumers and the CLI.

pub mod audit;
pub mod deliveries;
pub mod edits;
pub mod errors;
pub mod heartbeats;
pub mod keys;
pub mod live;
pub mod notify;
pub mod rate_limit;
pub mod records;
pub mod retention;
pub mod transcriptions;
pub mod uploads;

use std::sync::Arc;

use crate::{
    auth::TokenService,
    config::Config,
    domain::EngineKind,
    ports::{
        AccessLedger, AuditLog, BlobStore, Clock, DeliveryStore, EhrClient, JobQueue, RecordStore,
        ScaleInProtection, Transcriber, VocabularyStore,
    },
};

pub use errors::JobError;
pub use heartbeats::WorkerHeartbeats;
pub use keys::{KeyRotation, RotationError, RotationReport};
pub use retention::{Retention, RetentionReport};

/// The queue that carries transcription jobs.
pub const TRANSCRIBE_QUEUE: &str = "transcribe";
/// The queue that carries EHR pushes.
pub const EHR_QUEUE: &str = "ehr";

/// The engines this process can run, by kind.
#[derive(Clone, Default)]
pub struct Engines {
    pub cloud: Option<Arc<dyn Transcriber>>,
    pub local: Option<Arc<dyn Transcriber>>,
}

impl Engines {
    pub fn get(&self, kind: EngineKind) -> Option<&Arc<dyn Transcriber>> {
        match kind {
            EngineKind::Cloud => self.cloud.as_ref(),
            EngineKind::Local => self.local.as_ref(),
        }
    }
}

/// Everything a handler or worker needs. Cheap to clone; built once per process (per Lambda
/// cold start), never per request.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub records: Arc<dyn RecordStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// Each owner's medical vocabulary, given to the engine with the upload's prompt.
    pub vocabularies: Arc<dyn VocabularyStore>,
    /// Revoked tokens and the counters every process shares (rate limits, failed sign-ins).
    pub access: Arc<dyn AccessLedger>,
    pub transcribe_queue: Arc<dyn JobQueue>,
    /// The append-only audit trail, kept apart from the records.
    pub audit: Arc<dyn AuditLog>,
    /// `Some` when `EHR_TARGET` is set.
    pub ehr: Option<EhrServices>,
    /// This process's counters, served at `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The in-process consumers' heartbeats, read by `/health/ready`.
    pub worker_heartbeats: Arc<WorkerHeartbeats>,
    pub engines: Engines,
    /// Live dictation (`GET /v1/stream`); `None` where it is off or there is no local engine.
    pub live: Option<Arc<live::LiveDictation>>,
    pub tokens: Arc<TokenService>,
    pub clock: Arc<dyn Clock>,
    /// `Some` when field encryption is on: re-seals what older keys sealed.
    pub key_rotation: Option<Arc<KeyRotation>>,
    /// `Some` in an ECS task (`ECS_AGENT_URI`): jobs in hand protect the task from scale-in.
    pub scale_in_protection: Option<Arc<dyn ScaleInProtection>>,
    /// `None` when `RATE_LIMIT_PER_MINUTE` is 0.
    pub rate_limiter: Option<Arc<rate_limit::RateLimiter>>,
    /// Verifies access tokens from the clinic's identity providers (`OIDC_ISSUERS`).
    pub oidc: Option<Arc<crate::auth::oidc::OidcVerifier>>,
    /// Drafts a note's sections with a chat model (`NOTE_DRAFT_MODEL`, cloud engine only).
    pub drafter: Option<Arc<dyn crate::ports::NoteDrafter>>,
    /// Sends notifications (`WEBHOOK_URL`); `None` when none is configured.
    pub notifier: Option<Arc<dyn crate::ports::Notifier>>,
    /// Patient and encounter look-ups per user (`EHR_LOOKUPS_PER_MINUTE`); `None` without EHR.
    pub ehr_lookups: Option<Arc<rate_limit::RateLimiter>>,
    /// Locks an account out after too many failed sign-ins (shared across processes).
    pub sign_in_guard: Arc<rate_limit::SignInGuard>,
    /// Password checks, on a fixed set of threads: argon2id takes 19 MiB and a core each.
    pub password_checks: Arc<crate::auth::PasswordChecker>,
}

/// What EHR pushes need: the client, the outbox and the queue its jobs travel on.
#[derive(Clone)]
pub struct EhrServices {
    pub client: Arc<dyn EhrClient>,
    pub deliveries: Arc<dyn DeliveryStore>,
    pub queue: Arc<dyn JobQueue>,
    /// The logins (and clinicians' pending links), sealed.
    pub connections: Arc<dyn crate::ports::EhrConnectionStore>,
}
