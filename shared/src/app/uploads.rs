//! Accepting recordings: the steps every way of uploading shares (one multipart request,
//! the resumable API, the OpenAI-compatible endpoint). A record is inserted and its job queued
//! together, or neither is kept, audio included; the creation is audited once.

use std::sync::Arc;

use futures::StreamExt;

use super::{AppState, audit::AuditTrail};
use crate::{
    domain::{
        AudioFormat, AuditAction, BlobKey, Status, TranscriptionId, TranscriptionRecord,
        UploadPlan, sniff_audio_format,
    },
    metrics::Metrics,
    ports::{BlobError, BlobStore, Clock, Job, JobQueue, QueueError, RecordStore, StoreError},
    telemetry,
};

/// What accepting a recording needs.
pub struct Uploads {
    records: Arc<dyn RecordStore>,
    blobs: Arc<dyn BlobStore>,
    queue: Arc<dyn JobQueue>,
    audit: AuditTrail,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl AppState {
    pub fn uploads(&self) -> Uploads {
        Uploads {
            records: self.records.clone(),
            blobs: self.blobs.clone(),
            queue: self.transcribe_queue.clone(),
            audit: self.audit_trail(),
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("could not store the transcription record")]
    Records(#[from] StoreError),
    #[error("could not queue the transcription")]
    Queue(#[from] QueueError),
}

/// Why a resumable upload could not be started or completed.
#[derive(Debug, thiserror::Error)]
pub enum ResumableError {
    #[error("{} of {total} parts are missing", missing.len())]
    MissingParts { missing: Vec<u32>, total: u32 },
    #[error("the uploaded file is not audio MMT can transcribe")]
    NotAudio,
    #[error("could not store the transcription record")]
    Records(#[from] StoreError),
    #[error("could not read or write the upload's parts")]
    Blobs(#[from] BlobError),
    #[error("could not queue the transcription")]
    Queue(#[from] QueueError),
}

/// What follows the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// A worker transcribes it (the 202 answers).
    Queue,
    /// The caller transcribes it now (the synchronous endpoint).
    ProcessNow,
}

impl Uploads {
    /// Keeps the record of a recording whose audio is stored, queues its job unless the caller
    /// processes it now, and audits the creation. On failure nothing is kept: not the record, not
    /// the audio.
    pub async fn accept(
        &self,
        record: TranscriptionRecord,
        then: Then,
    ) -> Result<TranscriptionRecord, AcceptError> {
        let kept = async {
            self.records.insert(&record).await?;
            if then == Then::Queue
                && let Err(err) = self.enqueue(&record.id).await
            {
                // A record no worker will ever see is worse than a clear 503.
                if let Err(cleanup) = self.records.delete(&record.id).await {
                    tracing::error!(transcription_id = %record.id, error.cause_chain = %telemetry::error_chain(&cleanup), "could not remove the record of an upload that was not queued");
                }
                return Err(AcceptError::Queue(err));
            }
            Ok(())
        }
        .await;
        if let Err(err) = kept {
            self.discard_audio(&record.audio_key).await;
            return Err(err);
        }
        self.metrics.record_upload(record.size_bytes);
        tracing::info!(transcription_id = %record.id, engine = %record.engine, format = %record.audio_format, size_bytes = record.size_bytes, "recording accepted");
        self.audit
            .record_success(&record.owner, AuditAction::Create, record.id)
            .await;
        Ok(record)
    }

    /// Queues the transcription of a record. Safe to repeat (a client completing an upload again
    /// after a lost answer): a second message for the same record is refused by its claim.
    pub async fn enqueue(&self, id: &TranscriptionId) -> Result<(), QueueError> {
        let job = Job::Transcribe {
            transcription_id: *id,
        };
        self.queue
            .enqueue(&job, &telemetry::job_origin())
            .await
            .map(|_| ())
    }

    /// Removes the audio of a recording that will not be transcribed.
    pub async fn discard_audio(&self, key: &BlobKey) {
        if let Err(err) = self.blobs.delete(key).await {
            tracing::error!(error.cause_chain = %telemetry::error_chain(&err), "could not remove the audio of a refused upload");
        }
    }

    /// Starts a resumable upload of a record `awaiting_upload`: the store is told to expect
    /// its parts, the record is kept, the creation audited. Nothing is kept on failure.
    pub async fn begin_resumable(
        &self,
        record: TranscriptionRecord,
    ) -> Result<TranscriptionRecord, ResumableError> {
        self.blobs
            .begin_parts(&record.audio_key, record.audio_format.mime_type())
            .await?;
        if let Err(err) = self.records.insert(&record).await {
            self.discard_parts(&record).await;
            return Err(err.into());
        }
        let plan = UploadPlan::for_size(record.size_bytes);
        tracing::info!(transcription_id = %record.id, engine = %record.engine, format = %record.audio_format, size_bytes = record.size_bytes, parts = plan.part_count, "resumable upload created");
        self.audit
            .record_success(&record.owner, AuditAction::Create, record.id)
            .await;
        Ok(record)
    }

    /// The parts of an upload that have arrived (all of them, once it is complete).
    pub async fn received_parts(
        &self,
        record: &TranscriptionRecord,
    ) -> Result<Vec<u32>, BlobError> {
        let plan = UploadPlan::for_size(record.size_bytes);
        if record.status != Status::AwaitingUpload {
            return Ok(plan.numbers().collect());
        }
        self.blobs.received_parts(&record.audio_key, &plan).await
    }

    /// Every part arrived: they become one object, checked to be audio by its first bytes,
    /// and the transcription is queued. Audio that is not audio fails the record and goes.
    pub async fn complete_resumable(
        &self,
        record: TranscriptionRecord,
    ) -> Result<TranscriptionRecord, ResumableError> {
        let plan = UploadPlan::for_size(record.size_bytes);
        let received = self.received_parts(&record).await?;
        let missing: Vec<u32> = plan.numbers().filter(|n| !received.contains(n)).collect();
        if !missing.is_empty() {
            return Err(ResumableError::MissingParts {
                missing,
                total: plan.part_count,
            });
        }
        self.blobs.complete_parts(&record.audio_key, &plan).await?;
        let Some(format) = self.sniff_stored(&record).await? else {
            self.discard_audio(&record.audio_key).await;
            self.records
                .fail(
                    &record.id,
                    &ResumableError::NotAudio.to_string(),
                    self.clock.now(),
                )
                .await?;
            return Err(ResumableError::NotAudio);
        };
        self.records
            .confirm_upload(&record.id, format, plan.size, self.clock.now())
            .await?;
        // The record is queued now; if this fails the client completes again, which queues again.
        self.enqueue(&record.id).await?;
        self.metrics.record_upload(plan.size);
        tracing::info!(transcription_id = %record.id, format = %format, size_bytes = plan.size, parts = plan.part_count, "resumable upload complete; transcription queued");
        Ok(self.records.get(&record.id).await?.unwrap_or(record))
    }

    /// Removes the parts of an upload that will not be completed (aborts an S3 multipart
    /// upload).
    pub async fn discard_parts(&self, record: &TranscriptionRecord) {
        let plan = UploadPlan::for_size(record.size_bytes);
        if let Err(err) = self.blobs.discard_parts(&record.audio_key, &plan).await {
            tracing::error!(transcription_id = %record.id, error.cause_chain = %telemetry::error_chain(&err), "could not discard the parts of an upload");
        }
    }

    /// The format of a stored recording, judged by its first bytes.
    async fn sniff_stored(
        &self,
        record: &TranscriptionRecord,
    ) -> Result<Option<AudioFormat>, BlobError> {
        let mut body = self.blobs.get(&record.audio_key).await?;
        let mut head = Vec::with_capacity(AudioFormat::SNIFF_LEN);
        while head.len() < AudioFormat::SNIFF_LEN {
            match body.next().await {
                Some(chunk) => head.extend_from_slice(&chunk.map_err(BlobError::Body)?),
                None => break,
            }
        }
        Ok(sniff_audio_format(&head))
    }
}
