//! A [`RecordStore`] that encrypts every PHI field before it reaches the store underneath
//! (`ENABLE_FIELD_ENCRYPTION`): the prompt, the client's file name and the whole transcript
//! (text and segments). Ids, statuses, sizes, times and the language stay readable so the
//! store can index, list and expire records. Reading a field that does not open is an error,
//! never garbage and never a plaintext fallback.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    crypto::KeyRing,
    domain::{AudioFormat, BlobKey, OwnerId, Transcript, TranscriptionId, TranscriptionRecord},
    ports::{Claim, Page, PageRequest, RecordResealer, RecordStore, ResealedPage, StoreError},
};

const PROMPT: &str = "prompt";
const FILE_NAME: &str = "file_name";
const TRANSCRIPT: &str = "transcript";

pub struct EncryptedRecordStore {
    inner: Arc<dyn RecordStore>,
    keys: Arc<KeyRing>,
}

impl EncryptedRecordStore {
    pub fn new(inner: Arc<dyn RecordStore>, keys: Arc<KeyRing>) -> Self {
        Self { inner, keys }
    }

    /// Sealed bound to the record, its owner and the field.
    fn seal_text(&self, owner: &OwnerId, id: &TranscriptionId, field: &str, value: &str) -> String {
        self.keys
            .seal_owned(owner.as_str(), &id.to_string(), field, value.as_bytes())
    }

    fn open_text(
        &self,
        owner: &OwnerId,
        id: &TranscriptionId,
        field: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        let bytes = self
            .keys
            .open_owned(owner.as_str(), &id.to_string(), field, value)
            .map_err(|e| StoreError::Corrupt(format!("record {id}, field {field}: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|_| StoreError::Corrupt(format!("record {id}, field {field}: not UTF-8")))
    }

    /// The stored shape of a transcript: the sealed JSON of the whole transcript as its text,
    /// no segments, and the (non-PHI) language and duration the store may use.
    fn seal_transcript(
        &self,
        owner: &OwnerId,
        id: &TranscriptionId,
        transcript: &Transcript,
    ) -> Transcript {
        let json = serde_json::to_string(transcript).expect("a transcript serialises");
        Transcript {
            text: self.seal_text(owner, id, TRANSCRIPT, &json),
            segments: Vec::new(),
            language: transcript.language.clone(),
            language_probability: transcript.language_probability,
            duration_s: transcript.duration_s,
            ..Default::default()
        }
    }

    fn open_transcript(
        &self,
        owner: &OwnerId,
        id: &TranscriptionId,
        stored: &Transcript,
    ) -> Result<Transcript, StoreError> {
        let json = self.open_text(owner, id, TRANSCRIPT, &stored.text)?;
        serde_json::from_str(&json).map_err(|_| {
            StoreError::Corrupt(format!("record {id}, field {TRANSCRIPT}: not a transcript"))
        })
    }

    fn seal_record(&self, record: &TranscriptionRecord) -> TranscriptionRecord {
        let (id, owner) = (record.id, &record.owner);
        TranscriptionRecord {
            prompt: record
                .prompt
                .as_deref()
                .map(|p| self.seal_text(owner, &id, PROMPT, p)),
            file_name: record
                .file_name
                .as_deref()
                .map(|f| self.seal_text(owner, &id, FILE_NAME, f)),
            transcript: record
                .transcript
                .as_ref()
                .map(|t| self.seal_transcript(owner, &id, t)),
            ..record.clone()
        }
    }

    fn open_record(
        &self,
        mut record: TranscriptionRecord,
    ) -> Result<TranscriptionRecord, StoreError> {
        let (id, owner) = (record.id, record.owner.clone());
        if let Some(prompt) = record.prompt.take() {
            record.prompt = Some(self.open_text(&owner, &id, PROMPT, &prompt)?);
        }
        if let Some(file_name) = record.file_name.take() {
            record.file_name = Some(self.open_text(&owner, &id, FILE_NAME, &file_name)?);
        }
        if let Some(transcript) = record.transcript.take() {
            record.transcript = Some(self.open_transcript(&owner, &id, &transcript)?);
        }
        Ok(record)
    }
}

impl EncryptedRecordStore {
    /// Whether every sealed field of a stored record is under the primary key, and bound to
    /// its owner (fields sealed before owners were bound are sealed again by rotation).
    fn sealed_with_primary(&self, stored: &TranscriptionRecord) -> bool {
        let primary = Some(self.keys.primary_id());
        [
            stored.prompt.as_deref(),
            stored.file_name.as_deref(),
            stored.transcript.as_ref().map(|t| t.text.as_str()),
        ]
        .into_iter()
        .flatten()
        .all(|sealed| KeyRing::key_id_of(sealed) == primary && KeyRing::is_owned(sealed))
    }
}

#[async_trait]
impl RecordResealer for EncryptedRecordStore {
    /// Records already under the primary key are left alone, and a record that changes while
    /// it is being rewritten is read again rather than overwritten.
    async fn reseal_page(
        &self,
        after: Option<&TranscriptionId>,
        limit: u32,
    ) -> Result<ResealedPage, StoreError> {
        let mut page = ResealedPage::default();
        for stored in self.inner.scan(after, limit).await? {
            page.scanned.push((stored.id, stored.audio_key.clone()));
            let mut current = Some(stored);
            while let Some(stored) = current.take() {
                if self.sealed_with_primary(&stored) {
                    break;
                }
                let id = stored.id;
                let opened = self.open_record(stored)?;
                if self.inner.rewrite_phi(&self.seal_record(&opened)).await? {
                    page.resealed += 1;
                } else {
                    // Changed (or deleted) since it was read: look again.
                    current = self.inner.get(&id).await?;
                }
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl RecordStore for EncryptedRecordStore {
    async fn insert(&self, record: &TranscriptionRecord) -> Result<(), StoreError> {
        self.inner.insert(&self.seal_record(record)).await
    }

    async fn get(&self, id: &TranscriptionId) -> Result<Option<TranscriptionRecord>, StoreError> {
        self.inner
            .get(id)
            .await?
            .map(|r| self.open_record(r))
            .transpose()
    }

    async fn list_by_owner(
        &self,
        owner: &OwnerId,
        page: &PageRequest,
    ) -> Result<Page<TranscriptionRecord>, StoreError> {
        let page = self.inner.list_by_owner(owner, page).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|r| self.open_record(r))
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
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
        id: &TranscriptionId,
        transcript: &Transcript,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // The owner is part of what seals the transcript: read it from the record.
        let Some(record) = self.inner.get(id).await? else {
            return Ok(false);
        };
        self.inner
            .complete(
                id,
                &self.seal_transcript(&record.owner, id, transcript),
                now,
            )
            .await
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
        self.inner
            .scan(after, limit)
            .await?
            .into_iter()
            .map(|r| self.open_record(r))
            .collect()
    }

    async fn rewrite_phi(&self, record: &TranscriptionRecord) -> Result<bool, StoreError> {
        self.inner.rewrite_phi(&self.seal_record(record)).await
    }

    async fn revise(
        &self,
        record: &TranscriptionRecord,
        read_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.revise(&self.seal_record(record), read_at).await
    }

    async fn purge_residue(&self) -> Result<(), StoreError> {
        self.inner.purge_residue().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
