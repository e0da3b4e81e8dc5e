//! The small traits the use cases talk to (records, audit trail, EHR, blobs, job queue,
//! engines, time), and the plain types that cross them. Adapters implement them; the layers
//! above see only these.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use serde::{Deserialize, Serialize};

use crate::domain::{
    AudioFormat, AuditEvent, AuditQuery, BlobKey, EhrDelivery, EhrError, EhrLogin, EhrReceipt,
    EncounterSummary, EngineKind, JobId, NoteDelivery, NoteTemplate, Notification, OwnerId,
    PatientQuery, PatientSummary, StructuredNote, Task, Transcript, TranscriptionId,
    TranscriptionRecord, UploadPlan, Vocabulary, estimated_tokens,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error and its sources on one line ("a: b: c"), for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("record store unavailable")]
    Unavailable(#[source] BoxError),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

/// Opaque position in an owner's newest-first listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: TranscriptionId,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once('|')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Cursor>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// Transcription records. Status changes are conditional: a late or repeated writer can never
/// move a record backwards (a redelivered job after completion changes nothing).
#[async_trait]
pub trait RecordStore: Send + Sync {
    async fn insert(&self, record: &TranscriptionRecord) -> Result<(), StoreError>;
    async fn get(&self, id: &TranscriptionId) -> Result<Option<TranscriptionRecord>, StoreError>;
    async fn list_by_owner(
        &self,
        owner: &OwnerId,
        page: &PageRequest,
    ) -> Result<Page<TranscriptionRecord>, StoreError>;
    /// `awaiting_upload → queued` once a direct upload has arrived, with the format sniffed
    /// from its bytes and its real size. `false` when it was not awaiting an upload.
    async fn confirm_upload(
        &self,
        id: &TranscriptionId,
        format: AudioFormat,
        size_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Takes the record for one piece of work, counting an attempt: `queued → processing`;
    /// `processing → processing` only for the claim's own holder (the same message delivered
    /// again) or when the last claim went stale. `false` when final, missing, or in the hands
    /// of other live work: a duplicate message is refused here, not by the queue.
    async fn claim(&self, id: &TranscriptionId, claim: &Claim) -> Result<bool, StoreError>;
    /// `queued|processing → completed`. `false` when already final or missing.
    async fn complete(
        &self,
        id: &TranscriptionId,
        transcript: &Transcript,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// `awaiting_upload|queued|processing → failed`. `false` when already final or missing.
    async fn fail(
        &self,
        id: &TranscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Records how far a `processing` transcription has got (0–100), and that its worker is
    /// alive: the write renews the claim.
    async fn set_progress(
        &self,
        id: &TranscriptionId,
        percent: u8,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Fails, with `reason`, `processing` records not touched since `stale_before` (their
    /// worker died, or their last message was dead-lettered), at most `limit`; their ids.
    async fn fail_stale(
        &self,
        stale_before: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<TranscriptionId>, StoreError>;
    /// `true` when a record was removed.
    async fn delete(&self, id: &TranscriptionId) -> Result<bool, StoreError>;
    /// Records created before `cutoff`, oldest first, at most `limit`.
    async fn created_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(TranscriptionId, BlobKey)>, StoreError>;
    /// Every record, `limit` at a time, continuing after `after` in the store's own stable
    /// order: for batch jobs such as key rotation.
    async fn scan(
        &self,
        after: Option<&TranscriptionId>,
        limit: u32,
    ) -> Result<Vec<TranscriptionRecord>, StoreError>;
    /// Replaces the stored prompt, file name and transcript with `record`'s, if the record
    /// has not changed since it was read (its `updated_at`). Key rotation rewrites sealed
    /// fields with it. `false` when the record changed meanwhile or is gone.
    async fn rewrite_phi(&self, record: &TranscriptionRecord) -> Result<bool, StoreError>;
    /// A clinician's edit: replaces a completed record's transcript with `record`'s and its
    /// `updated_at` with `record.updated_at`, if nothing changed the record since it was read
    /// at `read_at` (compare-and-swap, so two edits of one version cannot both win). `false`
    /// when something came first, or the record is gone or not completed.
    async fn revise(
        &self,
        record: &TranscriptionRecord,
        read_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Clears what deleted or rewritten values leave behind in storage (an embedded
    /// database's write-ahead log); a no-op where the store leaves nothing. Run after the
    /// retention sweep and key rotation.
    async fn purge_residue(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Who takes a record to work on it, and from when an earlier claim counts as abandoned.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The job message (or request) doing the work: its own redelivery may claim again.
    pub by: String,
    pub now: DateTime<Utc>,
    /// A `processing` record not touched since then was abandoned by its worker.
    pub stale_before: DateTime<Utc>,
}

/// What one batch of a key rotation did.
#[derive(Debug, Default)]
pub struct ResealedPage {
    /// The records looked at, with their audio, in scan order.
    pub scanned: Vec<(TranscriptionId, BlobKey)>,
    /// Records whose fields were sealed again under the primary key.
    pub resealed: usize,
}

/// A record store that seals PHI fields and can seal them again under the primary key.
#[async_trait]
pub trait RecordResealer: RecordStore {
    /// Seals again, under the primary key, the records after `after` (at most `limit`) that
    /// another key sealed. Safe to repeat and to interrupt.
    async fn reseal_page(
        &self,
        after: Option<&TranscriptionId>,
        limit: u32,
    ) -> Result<ResealedPage, StoreError>;
}

// ---------------------------------------------------------------------------------------------
// Vocabularies
// ---------------------------------------------------------------------------------------------

/// A store that seals some of what it keeps, and can seal it all again under the primary key
/// (key rotation). Safe to repeat and to interrupt.
#[async_trait]
pub trait Resealable: Send + Sync {
    /// Seals again, under the primary key, every value an older key sealed; how many.
    async fn reseal_all(&self) -> Result<usize, StoreError>;
}

/// Each owner's medical vocabulary. Stores seal it when field encryption is on: clinician and
/// clinic names are not for a database reader's eyes.
#[async_trait]
pub trait VocabularyStore: Send + Sync {
    async fn get(&self, owner: &OwnerId) -> Result<Option<Vocabulary>, StoreError>;
    /// Replaces the owner's vocabulary; an empty one removes it.
    async fn put(
        &self,
        owner: &OwnerId,
        vocabulary: &Vocabulary,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Seals again, under the primary key, every vocabulary another key sealed; how many.
    /// Safe to repeat and to interrupt. Nothing to do without field encryption.
    async fn reseal_all(&self) -> Result<usize, StoreError>;
}

// ---------------------------------------------------------------------------------------------
// Access: revoked tokens and shared counters
// ---------------------------------------------------------------------------------------------

/// What every instance of a deployment must agree on about access: which tokens were revoked,
/// and counters over time windows (rate limits, failed sign-ins). Kept in the deployment's
/// store — the SQLite file every process opens, DynamoDB in AWS — so a limit or a sign-out
/// holds across processes, Lambda instances and cold starts.
#[async_trait]
pub trait AccessLedger: Send + Sync {
    /// Revokes one token (by its `jti`) until `until`, when it would have expired anyway.
    async fn revoke_token(&self, token_id: &str, until: DateTime<Utc>) -> Result<(), StoreError>;
    /// Revokes every token of `owner` issued before `before`.
    async fn revoke_owner(&self, owner: &OwnerId, before: DateTime<Utc>) -> Result<(), StoreError>;
    /// Whether the token `token_id` of `owner`, issued at `issued_at`, was revoked.
    async fn is_revoked(
        &self,
        token_id: &str,
        owner: &OwnerId,
        issued_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Counts one event of `key` at `now` in its window: a counter whose window has ended
    /// (or that does not exist) starts again at one, with a window of `window` from `now`.
    /// Atomic across every process sharing the store.
    async fn increment(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: std::time::Duration,
    ) -> Result<Counted, StoreError>;
    /// The counter `key` at `now`, `None` when absent or its window has ended.
    async fn count(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Counted>, StoreError>;
}

/// A counter of the [`AccessLedger`]: events so far in its window, and when the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub count: u64,
    pub window_ends: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log unavailable")]
    Unavailable(#[source] BoxError),
    #[error("stored audit event is unreadable: {0}")]
    Corrupt(String),
}

/// The append-only audit trail. There is deliberately no update and no delete.
#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn append(&self, event: &AuditEvent) -> Result<(), AuditError>;
    /// Events matching `query`, newest first, at most `query.limit`.
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, AuditError>;
}

// ---------------------------------------------------------------------------------------------
// Note drafts
// ---------------------------------------------------------------------------------------------

/// Why a draft could not be made. Reasons never carry the transcript.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DraftError {
    /// The model's service is busy or down (429, 5xx, timeouts, after retries).
    #[error("{0}")]
    Unavailable(String),
    /// The service refused (a bad key, a model it does not know): retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// The model answered something that is not the sections asked for.
    #[error("{0}")]
    Unusable(String),
}

/// Drafts a note's sections from an unstructured transcript (a conversation, a dictation
/// without headings). The clinician reviews the draft; it is never pushed unread.
#[async_trait]
pub trait NoteDrafter: Send + Sync {
    async fn draft(
        &self,
        transcript: &str,
        template: NoteTemplate,
    ) -> Result<StructuredNote, DraftError>;
}

// ---------------------------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------------------------

/// Why a notification was not accepted. Reasons never carry the body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotifyError {
    /// Worth retrying: connection errors, timeouts, 429 and 5xx.
    #[error("{reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The receiver refused it (4xx): retrying the same message will not help.
    #[error("{0}")]
    Permanent(String),
}

/// Sends a notification's body to the integration that listens (a webhook, an event bus).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// `id` is the notification's id (the same on every retry); `body` the JSON to send.
    async fn send(&self, id: &str, body: &[u8]) -> Result<(), NotifyError>;
}

// ---------------------------------------------------------------------------------------------
// EHR
// ---------------------------------------------------------------------------------------------

/// Writes notes into an electronic health record, and finds the patient and encounter a note
/// belongs to.
#[async_trait]
pub trait EhrClient: Send + Sync {
    /// Writes the note, or (with `check_existing`) returns the one an earlier attempt wrote.
    async fn deliver(&self, note: &NoteDelivery) -> Result<EhrReceipt, EhrError>;
    /// Patients matching a name, birth date or record number (at most
    /// [`crate::domain::MAX_PATIENT_RESULTS`]), as `login` may see them.
    async fn find_patients(
        &self,
        query: &PatientQuery,
        login: &EhrLogin,
    ) -> Result<Vec<PatientSummary>, EhrError>;
    /// A patient's encounters, newest first. `Permanent` when the EHR does not know the patient.
    async fn encounters(
        &self,
        patient_ref: &str,
        login: &EhrLogin,
    ) -> Result<Vec<EncounterSummary>, EhrError>;
    /// Names the EHR in logs and status answers (no secrets).
    fn describe(&self) -> String;
    /// The state of a login; `None` before any was stored (or where the EHR needs none).
    async fn connection_state(&self, login: &EhrLogin)
    -> Result<Option<ConnectionState>, EhrError>;
    /// Where a clinician signs in to the EHR to link their account (OAuth2 authorization code
    /// with PKCE): the authorization URL for `state` and the S256 `challenge`.
    fn link_url(&self, _state: &str, _challenge: &str) -> Result<String, EhrError> {
        Err(EhrError::Permanent(
            "this EHR offers no per-clinician sign-in".into(),
        ))
    }
    /// Exchanges the code the EHR sent back for the clinician's own tokens, and keeps them.
    async fn complete_link(
        &self,
        _login: &EhrLogin,
        _code: &str,
        _verifier: &str,
    ) -> Result<(), EhrError> {
        Err(EhrError::Permanent(
            "this EHR offers no per-clinician sign-in".into(),
        ))
    }
    /// Forgets a clinician's link.
    async fn unlink(&self, _login: &EhrLogin) -> Result<bool, EhrError> {
        Ok(false)
    }
}

/// The EHR outbox: one row per delivery, written before its job is queued. Status changes
/// are conditional (only a `pending` delivery moves), like the records'.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    async fn insert(&self, delivery: &EhrDelivery) -> Result<(), StoreError>;
    async fn get(&self, id: &uuid::Uuid) -> Result<Option<EhrDelivery>, StoreError>;
    /// A transcription's deliveries, oldest first.
    async fn for_transcription(
        &self,
        transcription: &TranscriptionId,
    ) -> Result<Vec<EhrDelivery>, StoreError>;
    /// Counts an attempt of a pending delivery. `false` when it is no longer pending.
    async fn record_attempt(&self, id: &uuid::Uuid, now: DateTime<Utc>)
    -> Result<bool, StoreError>;
    /// `pending → delivered`.
    async fn mark_delivered(
        &self,
        id: &uuid::Uuid,
        receipt: &EhrReceipt,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// `pending → failed`.
    async fn mark_failed(
        &self,
        id: &uuid::Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Removes a transcription's deliveries (they hold EHR identifiers): with the record.
    async fn delete_for_transcription(
        &self,
        transcription: &TranscriptionId,
    ) -> Result<(), StoreError>;
}

/// The state of the long-lived login to an EHR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ConnectionState {
    Connected,
    /// The refresh token was refused: an administrator must sign in again.
    NeedsLogin {
        reason: String,
    },
}

/// The refresh token of an EHR connection, kept across restarts. The EHR rotates it on every
/// use, so a new one must be stored before the access token it came with is used, and only
/// if no one else rotated it meanwhile.
#[async_trait]
pub trait EhrConnectionStore: Send + Sync {
    /// The current refresh token and state, if a login was ever stored.
    async fn load(&self, connection: &str)
    -> Result<Option<(String, ConnectionState)>, StoreError>;
    /// Stores `new` if the stored token is still `expected` (`None`: nothing stored yet).
    /// `false` when another process rotated it first.
    async fn rotate(
        &self,
        connection: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool, StoreError>;
    async fn set_state(&self, connection: &str, state: &ConnectionState) -> Result<(), StoreError>;
    /// Removes a login (a clinician unlinks their EHR account). `false` when none was stored.
    async fn forget(&self, connection: &str) -> Result<bool, StoreError>;
}

// ---------------------------------------------------------------------------------------------
// Blobs
// ---------------------------------------------------------------------------------------------

/// A body of bytes. Uploads borrow the request (`'a`); reads from the store are `'static`.
pub type ByteStream<'a> = BoxStream<'a, Result<Bytes, std::io::Error>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    #[error("upload exceeds the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("upload body could not be read")]
    Body(#[source] std::io::Error),
    #[error("blob store unavailable")]
    Unavailable(#[source] BoxError),
    /// A store that refuses overwrites (S3, with `If-None-Match: *`) already holds the key.
    #[error("an object already exists under this key")]
    AlreadyExists,
}

impl BlobError {
    /// Whether the same read or write may succeed later: the store was unavailable or a stream
    /// broke. A missing blob or a refused size stays so. Both engines judge storage by this.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Body(_))
    }
}

/// Where and how a client sends one part of an upload straight to the store, bypassing the API.
#[derive(Debug, Clone)]
pub struct PresignedUpload {
    pub url: String,
    /// Headers the client must send with its `PUT`, exactly as given (they are signed).
    pub headers: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
}

/// Audio storage. `put` streams: memory use does not grow with the file.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Begins a resumable upload of `key` in numbered parts (see [`UploadPlan`]).
    async fn begin_parts(&self, _key: &BlobKey, _content_type: &str) -> Result<(), BlobError> {
        Ok(())
    }
    /// A URL the client can `PUT` part `number` to directly, signed for exactly `length`
    /// bytes. `Ok(None)` when parts travel through the API instead ([`BlobStore::put_part`]).
    async fn presign_part(
        &self,
        _key: &BlobKey,
        _number: u32,
        _length: u64,
        _expires_in: Duration,
    ) -> Result<Option<PresignedUpload>, BlobError> {
        Ok(None)
    }
    /// Stores part `number` of a resumable upload; sending a part again replaces it. The
    /// caller has bounded `body` to the part's exact length; if it fails, nothing is kept.
    async fn put_part(
        &self,
        key: &BlobKey,
        number: u32,
        body: ByteStream<'_>,
    ) -> Result<(), BlobError> {
        self.put(&key.part(number), body, u64::MAX).await.map(drop)
    }
    /// The numbers of the parts of `plan` that have arrived whole, ascending.
    async fn received_parts(
        &self,
        key: &BlobKey,
        plan: &UploadPlan,
    ) -> Result<Vec<u32>, BlobError> {
        let mut received = Vec::new();
        for number in plan.numbers() {
            if self.exists(&key.part(number)).await? {
                received.push(number);
            }
        }
        Ok(received)
    }
    /// Joins every part of `plan`, in order, into the object `key`, then drops the parts.
    /// The caller has checked that all of them arrived.
    async fn complete_parts(&self, key: &BlobKey, plan: &UploadPlan) -> Result<(), BlobError> {
        // Each part is opened only when the one before it has been read to the end.
        let joined = futures::stream::iter(plan.numbers().map(|number| key.part(number)))
            .then(|part| async move { self.get(&part).await })
            .map_err(std::io::Error::other)
            .try_flatten()
            .boxed();
        self.put(key, joined, plan.size).await?;
        self.discard_parts(key, plan).await
    }
    /// Removes what arrived of a resumable upload. Idempotent.
    async fn discard_parts(&self, key: &BlobKey, plan: &UploadPlan) -> Result<(), BlobError> {
        for number in plan.numbers() {
            self.delete(&key.part(number)).await?;
        }
        Ok(())
    }
    /// Whether an object is stored under `key`.
    async fn exists(&self, key: &BlobKey) -> Result<bool, BlobError> {
        match self.get(key).await {
            Ok(_) => Ok(true),
            Err(BlobError::NotFound) => Ok(false),
            Err(err) => Err(err),
        }
    }
    /// Writes `body` under `key`. Over `max_bytes`, or if the body fails, nothing is kept.
    async fn put(
        &self,
        key: &BlobKey,
        body: ByteStream<'_>,
        max_bytes: u64,
    ) -> Result<u64, BlobError>;
    async fn get(&self, key: &BlobKey) -> Result<ByteStream<'static>, BlobError>;
    /// Idempotent: deleting a missing blob succeeds.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;
    async fn ping(&self) -> Result<(), BlobError>;
}

/// A blob store that seals what it keeps and can seal a blob again under the primary key.
#[async_trait]
pub trait BlobResealer: Send + Sync {
    /// `true` when the blob was rewritten; `false` when the primary key already sealed it.
    async fn reseal(&self, key: &BlobKey) -> Result<bool, BlobError>;
}

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

/// Work handed between functions. JSON only at the queue boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Job {
    Transcribe {
        transcription_id: TranscriptionId,
    },
    EhrPush {
        delivery_id: uuid::Uuid,
    },
    /// A notification to send (travels on the transcribe queue, retried with its backoff).
    Notify {
        notification: Notification,
    },
}

impl Job {
    /// The job a queue message carries; `None` for anything else (dead-lettered by consumers).
    pub fn from_message(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }
}

/// The message attribute (SQS) that carries the HTTP request's correlation id with a job.
pub const CORRELATION_ATTRIBUTE: &str = "correlation_id";
/// The message attribute (SQS) that carries the W3C trace context of the span that queued a job.
pub const TRACEPARENT_ATTRIBUTE: &str = "traceparent";

/// Where a job came from, for logs and traces: the correlation id of the request that queued
/// it, and the W3C `traceparent` of the span that did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOrigin {
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
}

/// A message as a consumer receives it (from the local queue or from an SQS event).
#[derive(Debug, Clone)]
pub struct ReceivedJob {
    pub message_id: JobId,
    /// Names this delivery; stale after the lease runs out and the message is redelivered.
    pub receipt: String,
    /// 1 on first delivery.
    pub receive_count: u32,
    pub body: String,
    pub origin: JobOrigin,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    pub visible: u64,
    pub in_flight: u64,
    pub dead_lettered: u64,
    pub oldest_age_s: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job queue unavailable")]
    Unavailable(#[source] BoxError),
    #[error("the lease on this message has expired or moved to another consumer")]
    StaleReceipt,
}

/// SQS semantics: receive leases a message for the visibility timeout and counts the receive;
/// a message not acked reappears; past the maximum receive count it goes to the dead letters.
///
/// Delivery is at least once, on every backend: two enqueues of the same job are two
/// messages, and a message may arrive twice. Duplicate work is stopped by the record's
/// conditional state ([`RecordStore::claim`], a delivery's `pending` status), not by the queue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, job: &Job, origin: &JobOrigin) -> Result<JobId, QueueError>;
    async fn receive(&self, max: usize) -> Result<Vec<ReceivedJob>, QueueError>;
    /// Heartbeat: keeps the lease while long work runs.
    async fn extend_lease(&self, job: &ReceivedJob, visibility: Duration)
    -> Result<(), QueueError>;
    /// Done: the message is deleted.
    async fn ack(&self, job: &ReceivedJob) -> Result<(), QueueError>;
    /// Failed this attempt: visible again after `delay`.
    async fn retry_later(&self, job: &ReceivedJob, delay: Duration) -> Result<(), QueueError>;
    /// Not attempted (shutting down): visible again now, and this receive does not count.
    async fn release(&self, job: &ReceivedJob) -> Result<(), QueueError>;
    /// Failed for good: kept in the dead-letter store with the reason, never silently dropped.
    async fn dead_letter(&self, job: &ReceivedJob, reason: &str) -> Result<(), QueueError>;
    async fn stats(&self) -> Result<QueueStats, QueueError>;
}

/// Keeps the machine a job runs on from being scaled in while the job is in hand (ECS task
/// protection). Best effort: a failure is logged, never fails the job.
#[async_trait]
pub trait ScaleInProtection: Send + Sync {
    async fn job_started(&self);
    async fn job_ended(&self);
}

// ---------------------------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------------------------

/// The audio an engine should transcribe. Opened as a stream, possibly more than once
/// (an engine that retries opens it again).
#[derive(Clone)]
pub struct AudioInput {
    pub file_name: String,
    pub format: AudioFormat,
    pub size_bytes: u64,
    pub key: BlobKey,
    pub blobs: Arc<dyn BlobStore>,
}

impl AudioInput {
    /// The stored audio of a record.
    pub fn of(record: &TranscriptionRecord, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            file_name: record.engine_file_name(),
            format: record.audio_format,
            size_bytes: record.size_bytes,
            key: record.audio_key.clone(),
            blobs,
        }
    }

    pub async fn open(&self) -> Result<ByteStream<'static>, BlobError> {
        self.blobs.get(&self.key).await
    }
}

#[derive(Debug, Clone, Default)]
pub struct TranscribeOptions {
    pub task: Task,
    /// The language spoken; `None` = the engine detects it.
    pub language: Option<String>,
    pub prompt: Option<String>,
}

impl TranscribeOptions {
    /// What the record's owner asked for.
    pub fn of(record: &TranscriptionRecord) -> Self {
        Self {
            task: record.task,
            language: record.language.clone(),
            prompt: record.prompt.clone(),
        }
    }
}

/// Reasons are shown to the record's owner and logged: they must never carry PHI.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Worth another attempt later (rate limit, 5xx, timeout, network).
    #[error("{0}")]
    Transient(String),
    /// Will fail the same way again (bad audio, rejected credentials, file too large).
    #[error("{0}")]
    Permanent(String),
}

/// Where an engine reports how far it has got (0–100). Cheap to call often.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(u8) + Send + Sync>);

impl Progress {
    pub fn new(report: impl Fn(u8) + Send + Sync + 'static) -> Self {
        Self(Arc::new(report))
    }

    /// For callers that do not track progress.
    pub fn ignore() -> Self {
        Self::new(|_| {})
    }

    pub fn report(&self, percent: u8) {
        (self.0)(percent.min(100));
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

#[async_trait]
pub trait Transcriber: Send + Sync {
    fn kind(&self) -> EngineKind;
    /// A short label for health checks and logs, e.g. the model name.
    fn describe(&self) -> String;
    /// Whether [`Task::Translate`] is possible (English-only models cannot translate).
    fn translates(&self) -> bool;
    /// How many prompt tokens `text` makes for this engine's model; an estimate where the
    /// engine's tokenizer is not at hand.
    fn prompt_tokens(&self, text: &str) -> usize {
        estimated_tokens(text)
    }
    async fn transcribe(
        &self,
        audio: &AudioInput,
        options: &TranscribeOptions,
        progress: &Progress,
    ) -> Result<Transcript, EngineError>;
}

/// Live dictation's engine: one decoder per session, re-transcribing a window of the newest
/// audio as it arrives (the policy that settles words is [`crate::domain::live`]).
pub trait LiveEngine: Send + Sync {
    /// A short label for logs, e.g. the model name.
    fn describe(&self) -> String;
    /// A decoder for one session, in `language` (or the engine's default).
    fn open(&self, language: Option<&str>) -> Result<Box<dyn LiveDecoder>, EngineError>;
}

/// One session's decoder: its own engine state, used by one thread at a time.
pub trait LiveDecoder: Send {
    /// Transcribes `samples` (16 kHz mono), with `prompt` as the text said before them: the
    /// words, timed in seconds from the first sample.
    fn decode(
        &mut self,
        samples: &[f32],
        prompt: &str,
    ) -> Result<Vec<crate::domain::Word>, EngineError>;
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests move by hand (retention, token expiry).
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(start))
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().expect("clock lock");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: TranscriptionId::new(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not-a-cursor"), None);
    }

    #[test]
    fn jobs_serialise_with_a_type_tag() {
        let id = TranscriptionId::new();
        let job = Job::Transcribe {
            transcription_id: id,
        };
        let json = serde_json::to_string(&job).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"type":"transcribe","transcription_id":"{id}"}}"#)
        );
        assert_eq!(serde_json::from_str::<Job>(&json).unwrap(), job);
    }
}
