//! An owner's records: reading one (someone else's looks missing, and the attempt is audited)
//! and erasing one with everything that holds its PHI.

use std::sync::Arc;

use super::{AppState, audit::AuditTrail};
use crate::{
    domain::{
        AuditAction, AuditEvent, AuditOutcome, OwnerId, Status, TranscriptionId,
        TranscriptionRecord, UploadPlan,
    },
    ports::{BlobError, BlobStore, DeliveryStore, RecordStore, StoreError},
};

/// What reading and erasing records needs.
pub struct Records {
    records: Arc<dyn RecordStore>,
    blobs: Arc<dyn BlobStore>,
    deliveries: Option<Arc<dyn DeliveryStore>>,
    audit: AuditTrail,
}

impl AppState {
    pub fn owned_records(&self) -> Records {
        Records {
            records: self.records.clone(),
            blobs: self.blobs.clone(),
            deliveries: self.ehr.as_ref().map(|ehr| ehr.deliveries.clone()),
            audit: self.audit_trail(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("could not remove the audio")]
    Audio(#[from] BlobError),
    #[error("could not remove the record")]
    Records(#[from] StoreError),
}

impl Records {
    /// The record `id` if `owner` owns it. Someone else's record is `None`, as a missing one
    /// is; the trail records the attempt as `action`, denied.
    pub async fn owned(
        &self,
        owner: &OwnerId,
        id: &TranscriptionId,
        action: AuditAction,
    ) -> Result<Option<TranscriptionRecord>, StoreError> {
        match self.records.get(id).await? {
            Some(record) if record.owner == *owner => Ok(Some(record)),
            Some(_) => {
                let denied = AuditEvent::now(action, AuditOutcome::Denied, owner.as_str()).on(*id);
                self.audit.record(denied).await;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Removes a record and all that holds its PHI: audio first (what arrived of an unfinished
    /// upload too), then its EHR deliveries, then the record. An interruption leaves a record
    /// that can be erased again, never audio without a record. `true` when the record went.
    pub async fn erase(&self, record: &TranscriptionRecord) -> Result<bool, EraseError> {
        if record.status == Status::AwaitingUpload {
            let plan = UploadPlan::for_size(record.size_bytes);
            self.blobs.discard_parts(&record.audio_key, &plan).await?;
        }
        self.blobs.delete(&record.audio_key).await?;
        if let Some(deliveries) = &self.deliveries {
            deliveries.delete_for_transcription(&record.id).await?;
        }
        Ok(self.records.delete(&record.id).await?)
    }
}
