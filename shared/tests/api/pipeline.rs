use std::time::Duration;

use chrono::{DateTime, Utc};
use mmt_core::{
    adapters::{Database, SqliteJobQueue},
    app::TRANSCRIBE_QUEUE,
    domain::{AudioFormat, BlobKey, OwnerId, Transcript, TranscriptionId, TranscriptionRecord},
    jobs::Disposition,
    ports::{Claim, Job, JobOrigin, Page, PageRequest, RecordStore, StoreError},
};
use mmt_testkit::Failure;

use crate::helpers::{TestApp, spawn_app, spawn_app_customised, spawn_app_with};

fn dead_letter_view(app: &TestApp) -> SqliteJobQueue {
    let db = Database::open(&app.dir.path().join("mmt.db")).unwrap();
    SqliteJobQueue::new(db, TRANSCRIBE_QUEUE, Duration::from_secs(30), 3)
}

async fn record(app: &TestApp, token: &str, id: &str) -> serde_json::Value {
    app.get_json(token, &format!("/v1/transcriptions/{id}"))
        .await
        .1
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_within_the_attempt() {
    let app = spawn_app().await;
    app.openai.script([
        Failure::RateLimited {
            retry_after_s: Some(0),
        },
        Failure::ServerError(503),
    ]);
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    assert_eq!(app.drain_jobs().await, vec![Disposition::Ack]);
    let r = record(&app, &token, &id).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["attempts"], 1);
    assert_eq!(app.openai.requests().len(), 3);
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let app = spawn_app_with(&[("OPENAI_TIMEOUT_SECS", "2")]).await;
    app.openai.script([Failure::Stall(Duration::from_secs(5))]);
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    app.drain_jobs().await;
    assert_eq!(record(&app, &token, &id).await["status"], "completed");
    assert_eq!(app.openai.requests().len(), 2);
}

#[tokio::test]
async fn an_engine_that_always_fails_ends_failed_and_dead_lettered_after_max_receives() {
    let app = spawn_app_with(&[("MAX_RECEIVE_COUNT", "3")]).await;
    app.openai.always(Some(Failure::ServerError(500)));
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;

    let done = app.drain_jobs().await;
    assert_eq!(done.len(), 3, "{done:?}");
    assert!(matches!(done[0], Disposition::Retry { .. }));
    assert!(matches!(done[1], Disposition::Retry { .. }));
    assert!(matches!(done[2], Disposition::DeadLetter { .. }));

    let r = record(&app, &token, &id).await;
    assert_eq!(r["status"], "failed");
    assert_eq!(r["attempts"], 3);
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 500") && error.contains("gave up after 3 attempts"),
        "{error}"
    );
    // Each attempt made the initial request plus OPENAI_MAX_RETRIES=2 retries.
    assert_eq!(app.openai.requests().len(), 9);

    let dead = dead_letter_view(&app).dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].1.contains(&id),
        "the dead letter keeps the job body"
    );
    assert_eq!(dead[0].2, 3);
    let stats = app.state.transcribe_queue.stats().await.unwrap();
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_lettered),
        (0, 0, 1)
    );
}

#[tokio::test]
async fn a_rejected_api_key_fails_at_once_without_retries() {
    let app = spawn_app().await;
    app.openai.always(Some(Failure::Unauthorized));
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    let done = app.drain_jobs().await;
    assert!(
        matches!(done.as_slice(), [Disposition::DeadLetter { .. }]),
        "{done:?}"
    );
    let r = record(&app, &token, &id).await;
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("rejected the API key (HTTP 401"),
        "{r}"
    );
    assert_eq!(app.openai.requests().len(), 1);
    assert!(!r["error"].as_str().unwrap().contains("sk-test-key"));
}

#[tokio::test]
async fn exhausted_quota_is_not_hammered() {
    let app = spawn_app_with(&[("MAX_RECEIVE_COUNT", "2")]).await;
    app.openai.always(Some(Failure::QuotaExhausted));
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    app.drain_jobs().await;
    let r = record(&app, &token, &id).await;
    assert_eq!(r["status"], "failed");
    assert!(r["error"].as_str().unwrap().contains("quota"), "{r}");
    // One request per job attempt: no in-attempt retries against an empty quota.
    assert_eq!(app.openai.requests().len(), 2);
}

#[tokio::test]
async fn redelivery_after_completion_changes_nothing() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    app.drain_jobs().await;
    let before = record(&app, &token, &id).await;
    assert_eq!(before["status"], "completed");

    // The same job arrives again (an SQS redelivery, a duplicate enqueue).
    let job = Job::Transcribe {
        transcription_id: id.parse().unwrap(),
    };
    app.state
        .transcribe_queue
        .enqueue(&job, &JobOrigin::default())
        .await
        .unwrap();
    assert_eq!(app.drain_jobs().await, vec![Disposition::Ack]);
    assert_eq!(record(&app, &token, &id).await, before);
    assert_eq!(app.openai.requests().len(), 1, "no second engine call");
}

#[tokio::test]
async fn a_duplicate_message_is_refused_by_the_records_claim() {
    a_duplicate_message_does_no_work(&spawn_app().await).await;
}

/// Two messages for one record (a client completing twice, an at-least-once redelivery):
/// the queue delivers both, on every backend; the record's claim lets only the first work.
pub(crate) async fn a_duplicate_message_does_no_work(app: &crate::helpers::TestApp) {
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    let job = Job::Transcribe {
        transcription_id: id.parse().unwrap(),
    };
    let queue = &app.state.transcribe_queue;
    queue.enqueue(&job, &JobOrigin::default()).await.unwrap();
    let mut received = Vec::new();
    for _ in 0..20 {
        received.extend(queue.receive(2).await.unwrap());
        if received.len() >= 2 {
            break;
        }
    }
    assert_eq!(
        received.len(),
        2,
        "at least once: the duplicate is a message of its own"
    );
    let (first, second) = (received.remove(0), received.remove(0));
    // The first message's worker has started on the record.
    let now = chrono::Utc::now();
    let started = mmt_core::ports::Claim {
        by: first.message_id.as_str().to_owned(),
        now,
        stale_before: now - chrono::Duration::minutes(10),
    };
    assert!(
        app.state
            .records
            .claim(&id.parse().unwrap(), &started)
            .await
            .unwrap()
    );
    let transcribe = mmt_core::jobs::JobKind::Transcribe;
    assert_eq!(
        transcribe.handle(&app.state, &second).await,
        Disposition::Ack
    );
    assert!(
        app.openai.requests().is_empty(),
        "the duplicate did no work"
    );
    assert_eq!(record(app, &token, &id).await["status"], "processing");
    assert_eq!(
        transcribe.handle(&app.state, &first).await,
        Disposition::Ack
    );
    assert_eq!(app.openai.requests().len(), 1);
    assert_eq!(record(app, &token, &id).await["status"], "completed");
    for message in [&first, &second] {
        queue.ack(message).await.unwrap();
    }
}

#[tokio::test]
async fn unreadable_jobs_are_dead_lettered_not_dropped() {
    let app = spawn_app().await;
    let db = Database::open(&app.dir.path().join("mmt.db")).unwrap();
    db.call(|conn| {
        conn.execute(
            "INSERT INTO jobs (id, queue, body, enqueued_at, visible_at) VALUES ('junk', 'transcribe', '{oops', 0, 0)",
            [],
        )?;
        Ok(())
    })
    .await
    .unwrap();
    let done = app.drain_jobs().await;
    assert!(
        matches!(done.as_slice(), [Disposition::DeadLetter { .. }]),
        "{done:?}"
    );
    let dead = dead_letter_view(&app).dead_letters().await.unwrap();
    assert_eq!(dead[0].0, "junk");
    assert_eq!(dead[0].3, "unreadable job body");
}

/// The app's blob store, whose first `blips` reads fail as an S3 blip would (503 from the
/// store: `BlobError::Unavailable`); everything else passes through.
struct BlippingStore {
    inner: std::sync::Arc<dyn mmt_core::ports::BlobStore>,
    blips: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl mmt_core::ports::BlobStore for BlippingStore {
    async fn put(
        &self,
        key: &mmt_core::domain::BlobKey,
        body: mmt_core::ports::ByteStream<'_>,
        max_bytes: u64,
    ) -> Result<u64, mmt_core::ports::BlobError> {
        self.inner.put(key, body, max_bytes).await
    }

    async fn get(
        &self,
        key: &mmt_core::domain::BlobKey,
    ) -> Result<mmt_core::ports::ByteStream<'static>, mmt_core::ports::BlobError> {
        use std::sync::atomic::Ordering;
        if self
            .blips
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(mmt_core::ports::BlobError::Unavailable(
                "503 SlowDown from the store".into(),
            ));
        }
        self.inner.get(key).await
    }

    async fn delete(
        &self,
        key: &mmt_core::domain::BlobKey,
    ) -> Result<(), mmt_core::ports::BlobError> {
        self.inner.delete(key).await
    }

    async fn ping(&self) -> Result<(), mmt_core::ports::BlobError> {
        self.inner.ping().await
    }
}

pub(crate) fn blip_first_reads(state: &mut mmt_core::AppState, blips: u32) {
    state.blobs = std::sync::Arc::new(BlippingStore {
        inner: state.blobs.clone(),
        blips: blips.into(),
    });
}

#[tokio::test]
async fn a_storage_read_blip_is_retried_by_the_cloud_engine() {
    let app = spawn_app_customised(&[], |state| blip_first_reads(state, 1)).await;
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    app.drain_jobs().await;
    let r = record(&app, &token, &id).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["attempts"], 1, "retried within the attempt");
    assert_eq!(app.openai.requests().len(), 1);
}

#[tokio::test]
async fn audio_missing_from_storage_fails_at_once() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    for file in app.audio_files() {
        std::fs::remove_file(file).unwrap();
    }
    app.drain_jobs().await;
    let r = record(&app, &token, &id).await;
    assert_eq!(
        (r["status"].as_str(), r["attempts"].as_u64()),
        (Some("failed"), Some(1)),
        "{r}"
    );
    assert!(app.openai.requests().is_empty());
}

/// The root cause a broken store reports, planted so tests can look for it in records and logs.
pub(crate) const PLANTED_CAUSE: &str = "disk I/O error: planted by the test";

/// The app's record store, whose `complete` always fails as a broken disk would; everything
/// else passes through.
struct FailingCompletion {
    inner: std::sync::Arc<dyn RecordStore>,
}

fn planted() -> StoreError {
    StoreError::Unavailable(Box::new(std::io::Error::other(PLANTED_CAUSE)))
}

#[async_trait::async_trait]
impl RecordStore for FailingCompletion {
    async fn insert(&self, record: &TranscriptionRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }
    async fn get(&self, id: &TranscriptionId) -> Result<Option<TranscriptionRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn list_by_owner(
        &self,
        owner: &OwnerId,
        page: &PageRequest,
    ) -> Result<Page<TranscriptionRecord>, StoreError> {
        self.inner.list_by_owner(owner, page).await
    }
    async fn confirm_upload(
        &self,
        id: &TranscriptionId,
        format: AudioFormat,
        size_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.confirm_upload(id, format, size_bytes, now).await
    }
    async fn claim(&self, id: &TranscriptionId, claim: &Claim) -> Result<bool, StoreError> {
        self.inner.claim(id, claim).await
    }
    async fn complete(
        &self,
        _id: &TranscriptionId,
        _transcript: &Transcript,
        _now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Err(planted())
    }
    async fn fail(
        &self,
        id: &TranscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.fail(id, reason, now).await
    }
    async fn set_progress(
        &self,
        id: &TranscriptionId,
        percent: u8,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.set_progress(id, percent, now).await
    }
    async fn fail_stale(
        &self,
        stale_before: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<TranscriptionId>, StoreError> {
        self.inner
            .fail_stale(stale_before, reason, now, limit)
            .await
    }
    async fn delete(&self, id: &TranscriptionId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
    async fn created_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(TranscriptionId, BlobKey)>, StoreError> {
        self.inner.created_before(cutoff, limit).await
    }
    async fn scan(
        &self,
        after: Option<&TranscriptionId>,
        limit: u32,
    ) -> Result<Vec<TranscriptionRecord>, StoreError> {
        self.inner.scan(after, limit).await
    }
    async fn rewrite_phi(&self, record: &TranscriptionRecord) -> Result<bool, StoreError> {
        self.inner.rewrite_phi(record).await
    }
    async fn revise(
        &self,
        record: &TranscriptionRecord,
        read_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.revise(record, read_at).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

pub(crate) fn fail_every_completion(state: &mut mmt_core::AppState) {
    state.records = std::sync::Arc::new(FailingCompletion {
        inner: state.records.clone(),
    });
}

/// What a record that could never be stored ends as: failed, with the whole cause.
pub(crate) fn assert_failed_by_the_store(record: &serde_json::Value, receives: u32) {
    assert_eq!(record["status"], "failed", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("gave up after {receives} attempts")),
        "{error}"
    );
    assert!(
        error.contains(PLANTED_CAUSE),
        "the root cause is kept: {error}"
    );
}

#[tokio::test]
async fn a_record_whose_store_keeps_failing_ends_failed_after_the_last_receive() {
    let logs = crate::helpers::capture_logs();
    let app = spawn_app_customised(&[("MAX_RECEIVE_COUNT", "3")], fail_every_completion).await;
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    let done = app.drain_jobs().await;
    assert!(
        matches!(
            done.as_slice(),
            [
                Disposition::Retry { .. },
                Disposition::Retry { .. },
                Disposition::DeadLetter { .. }
            ]
        ),
        "{done:?}"
    );
    assert_failed_by_the_store(&record(&app, &token, &id).await, 3);

    // The one error line of the failed job carries the chain down to the planted cause.
    let logs = logs.text();
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("transcription failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{logs}");
    assert!(
        failed[0].contains("could not read or write the transcription record")
            && failed[0].contains(PLANTED_CAUSE),
        "{}",
        failed[0]
    );
}
