//! Key rotation: after a new key is added to `ENCRYPTION_KEYS` and made primary, every record
//! (and, on the local file store, every audio file), every vocabulary, and the EHR outbox and
//! connection sealed with an older key are sealed again under the primary, batch by batch. Once it reports nothing left under other keys, the old
//! key can leave the ring.

use std::sync::Arc;

use crate::ports::{
    BlobError, BlobResealer, RecordResealer, Resealable, StoreError, VocabularyStore,
};

/// The stores that seal what they keep, as built for this process.
pub struct KeyRotation {
    records: Arc<dyn RecordResealer>,
    blobs: Option<Arc<dyn BlobResealer>>,
    vocabularies: Arc<dyn VocabularyStore>,
    /// The EHR outbox (patient and encounter ids) and connection (its refresh token).
    ehr: Vec<Arc<dyn Resealable>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RotationReport {
    pub records_scanned: usize,
    pub records_resealed: usize,
    pub audio_resealed: usize,
    /// Records whose audio is already gone (deleted after transcription, or never uploaded).
    pub audio_absent: usize,
    pub vocabularies_resealed: usize,
    /// EHR deliveries and connection logins sealed again.
    pub ehr_resealed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("record store: {0}")]
    Records(#[from] StoreError),
    #[error("audio store: {0}")]
    Blobs(#[from] BlobError),
}

impl KeyRotation {
    pub fn new(
        records: Arc<dyn RecordResealer>,
        blobs: Option<Arc<dyn BlobResealer>>,
        vocabularies: Arc<dyn VocabularyStore>,
        ehr: Vec<Arc<dyn Resealable>>,
    ) -> Self {
        Self {
            records,
            blobs,
            vocabularies,
            ehr,
        }
    }

    /// Runs to the end, `batch` records at a time, calling `progress` after each batch.
    /// Stopping half-way is safe: running again picks up what is left.
    pub async fn run(
        &self,
        batch: u32,
        mut progress: impl FnMut(&RotationReport),
    ) -> Result<RotationReport, RotationError> {
        let mut report = RotationReport {
            vocabularies_resealed: self.vocabularies.reseal_all().await?,
            ..RotationReport::default()
        };
        for store in &self.ehr {
            report.ehr_resealed += store.reseal_all().await?;
        }
        let mut after = None;
        loop {
            let page = self.records.reseal_page(after.as_ref(), batch).await?;
            report.records_scanned += page.scanned.len();
            report.records_resealed += page.resealed;
            if let Some(blobs) = &self.blobs {
                for (_, key) in &page.scanned {
                    match blobs.reseal(key).await {
                        Ok(true) => report.audio_resealed += 1,
                        Ok(false) => {}
                        Err(BlobError::NotFound) => report.audio_absent += 1,
                        Err(err) => return Err(err.into()),
                    }
                }
            }
            progress(&report);
            match page.scanned.last() {
                Some((id, _)) if page.scanned.len() == batch as usize => after = Some(*id),
                _ => break,
            }
        }
        // The old ciphertexts must not linger where the store keeps page images.
        self.records.purge_residue().await?;
        Ok(report)
    }
}
