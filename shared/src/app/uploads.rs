//! Accepting recordings: the steps every way of uploading shares (one multipart request,
//! the resumable API, the OpenAI-compatible endpoint). A record is inserted and its job queued
//! together, or neither is kept, audio included; the creation is audited once.

use std::sync::Arc;

use super::{AppState, audit::AuditTrail};
use crate::{
    domain::{AuditAction, TranscriptionId, TranscriptionRecord},
    metrics::Metrics,
    ports::{BlobStore, Job, JobQueue, QueueError, RecordStore, StoreError},
    telemetry,
};

/// What accepting a recording needs.
pub struct Uploads {
    records: Arc<dyn RecordStore>,
    blobs: Arc<dyn BlobStore>,
    queue: Arc<dyn JobQueue>,
    audit: AuditTrail,
    metrics: Arc<Metrics>,
}

impl AppState {
    pub fn uploads(&self) -> Uploads {
        Uploads {
            records: self.records.clone(),
            blobs: self.blobs.clone(),
            queue: self.transcribe_queue.clone(),
            audit: self.audit_trail(),
            metrics: self.metrics.clone(),
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
            self.discard_audio(&record).await;
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
    pub async fn discard_audio(&self, record: &TranscriptionRecord) {
        if let Err(err) = self.blobs.delete(&record.audio_key).await {
            tracing::error!(transcription_id = %record.id, error.cause_chain = %telemetry::error_chain(&err), "could not remove the audio of a refused upload");
        }
    }
}
