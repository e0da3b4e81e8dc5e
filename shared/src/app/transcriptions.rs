//! Processing a transcription: claim the record, run its engine over the audio, keep the
//! transcript, or the reason it failed. The transcribe job and the synchronous
//! OpenAI-compatible endpoint both call [`process`]; neither repeats its steps.

use std::{sync::Arc, time::Duration};

use tracing::Instrument;

use super::{AppState, Engines, errors::JobError};
use crate::{
    domain::{
        EventKind, NoteTemplate, Notification, Transcript, TranscriptionId, TranscriptionRecord,
        Vocabulary, compose_prompt, split_by_headings,
    },
    metrics::Metrics,
    ports::{
        AudioInput, BlobStore, Claim, Clock, Progress, RecordStore, StoreError, TranscribeOptions,
        Transcriber, VocabularyStore,
    },
};

/// What processing a transcription needs.
pub struct Transcriptions {
    records: Arc<dyn RecordStore>,
    blobs: Arc<dyn BlobStore>,
    vocabularies: Arc<dyn VocabularyStore>,
    /// The deployment's vocabulary, before each owner's.
    vocabulary: Vocabulary,
    engines: Engines,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// How long a `processing` record may go untouched before its claim counts as abandoned:
    /// the engine's progress renews it, and a retry comes back within a visibility timeout
    /// plus the longest backoff.
    lease: Duration,
    /// Without it, the transcript is all the product keeps.
    store_phi: bool,
    notifications: super::notify::Notifications,
}

impl AppState {
    pub fn transcriptions(&self) -> Transcriptions {
        Transcriptions {
            records: self.records.clone(),
            blobs: self.blobs.clone(),
            vocabularies: self.vocabularies.clone(),
            vocabulary: self.config.engines.vocabulary.clone(),
            engines: self.engines.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            lease: self.config.queue.processing_lease(),
            store_phi: self.config.retention.store_phi,
            notifications: self.notifications(),
        }
    }
}

/// What processing did.
#[derive(Debug)]
pub enum Processed {
    Completed(Box<Transcript>),
    /// Nothing to do: the record is gone, already final, or in the hands of other live work
    /// (a duplicate message).
    Skipped(&'static str),
}

/// Progress is written at most twice a second, and only when it moved.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

impl Transcriptions {
    /// Claims the record as `claimant` (a job message's id, or the request's), transcribes it and
    /// stores the transcript. Safe to call again for the same record: a final record is left
    /// alone, and a record claimed by other live work is skipped.
    pub async fn process(
        &self,
        id: &TranscriptionId,
        claimant: &str,
    ) -> Result<Processed, JobError> {
        let Some(record) = self.records.get(id).await.map_err(JobError::Records)? else {
            return Ok(Processed::Skipped("record no longer exists"));
        };
        if record.status.is_final() {
            return Ok(Processed::Skipped("already final"));
        }
        let engine = self
            .engines
            .get(record.engine)
            .cloned()
            .ok_or(JobError::NoEngine(record.engine))?;
        // Before the claim: the attempt it counts starts with the engine's work.
        let options = self.options(&record, engine.as_ref()).await?;
        let claim = Claim {
            by: claimant.to_owned(),
            now: self.clock.now(),
            stale_before: self.stale_before(),
        };
        if !self
            .records
            .claim(id, &claim)
            .await
            .map_err(JobError::Records)?
        {
            return Ok(Processed::Skipped("claimed by other live work"));
        }

        let (progress, progress_writer) = self.progress_to_record(*id);
        let started = std::time::Instant::now();
        let engine_span = tracing::info_span!(
            "engine",
            engine = record.engine.as_str(),
            model = %engine.describe(),
            audio_bytes = record.size_bytes,
        );
        let outcome = engine
            .transcribe(
                &AudioInput::of(&record, self.blobs.clone()),
                &options,
                &progress,
            )
            .instrument(engine_span)
            .await;
        progress_writer.abort();
        let mut transcript = outcome.map_err(JobError::Engine)?;
        // A dictation with spoken section headings arrives structured (version 1 keeps it).
        transcript.note = split_by_headings(&transcript.text, NoteTemplate::Soap);
        let stored = self
            .records
            .complete(id, &transcript, self.clock.now())
            .await
            .map_err(JobError::Records)?;
        self.completed(&record, engine.as_ref(), &transcript, stored, started)
            .await;
        Ok(Processed::Completed(Box::new(transcript)))
    }

    /// Stores the transcript of a live dictation, whose record was just accepted: the same
    /// sections, counting, notification and audio policy as a transcribed upload.
    pub async fn complete_live(
        &self,
        record: &TranscriptionRecord,
        mut transcript: Transcript,
        started: std::time::Instant,
    ) -> Result<bool, JobError> {
        let engine = self
            .engines
            .get(record.engine)
            .cloned()
            .ok_or(JobError::NoEngine(record.engine))?;
        transcript.note = split_by_headings(&transcript.text, NoteTemplate::Soap);
        let stored = self
            .records
            .complete(&record.id, &transcript, self.clock.now())
            .await
            .map_err(JobError::Records)?;
        self.completed(record, engine.as_ref(), &transcript, stored, started)
            .await;
        Ok(stored)
    }

    /// Counts, logs and announces a transcript just stored, and forgets the audio where the
    /// deployment keeps none.
    async fn completed(
        &self,
        record: &TranscriptionRecord,
        engine: &dyn Transcriber,
        transcript: &Transcript,
        stored: bool,
        started: std::time::Instant,
    ) {
        let elapsed_s = started.elapsed().as_secs_f64();
        self.metrics.record_transcription(
            record.engine.as_str(),
            &engine.describe(),
            transcript.duration_s,
            elapsed_s,
        );
        tracing::info!(
            transcription_id = %record.id,
            engine = %record.engine,
            model = %engine.describe(),
            elapsed_s,
            audio_s = transcript.duration_s,
            stored,
            "transcription completed"
        );
        self.forget_audio(record).await;
        if stored {
            self.notifications
                .emit(Notification::new(
                    EventKind::TranscriptionCompleted,
                    record.id,
                    self.clock.now(),
                ))
                .await;
        }
    }

    /// What the owner asked for, with the prompt made from the deployment's vocabulary, the
    /// owner's and the upload's prompt, within the engine's token budget.
    async fn options(
        &self,
        record: &TranscriptionRecord,
        engine: &dyn Transcriber,
    ) -> Result<TranscribeOptions, JobError> {
        let own = match self.vocabularies.get(&record.owner).await {
            Ok(own) => own.unwrap_or_default(),
            Err(StoreError::Corrupt(reason)) => {
                // A hint, not the work: transcribe without it rather than not at all.
                tracing::warn!(transcription_id = %record.id, reason, "the owner's vocabulary is unreadable; transcribing without it");
                Vocabulary::default()
            }
            Err(unavailable) => return Err(JobError::Records(unavailable)),
        };
        let prompt = compose_prompt(&self.vocabulary, &own, record.prompt.as_deref(), &|text| {
            engine.prompt_tokens(text)
        });
        // Counts only: the terms themselves are the owner's business.
        tracing::debug!(
            transcription_id = %record.id,
            terms_used = prompt.terms_used,
            terms_left_out = prompt.terms_left_out,
            "prompt composed"
        );
        Ok(TranscribeOptions {
            prompt: prompt.text,
            ..TranscribeOptions::of(record)
        })
    }

    /// Fails the record with the error's reason. `false` when it was already final or gone.
    pub async fn fail(&self, id: &TranscriptionId, reason: &str) -> Result<bool, JobError> {
        let failed = self
            .records
            .fail(id, reason, self.clock.now())
            .await
            .map_err(JobError::Records)?;
        if failed {
            self.notifications
                .emit(Notification::new(
                    EventKind::TranscriptionFailed,
                    *id,
                    self.clock.now(),
                ))
                .await;
        }
        Ok(failed)
    }

    /// A record `processing` since before this instant was abandoned.
    pub fn stale_before(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now() - chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX)
    }

    /// Without `STORE_PHI`, the transcript is all the product keeps.
    async fn forget_audio(&self, record: &TranscriptionRecord) {
        if !self.store_phi
            && let Err(err) = self.blobs.delete(&record.audio_key).await
        {
            tracing::warn!(error = %crate::telemetry::error_chain(&err), "could not remove audio after transcription");
        }
    }

    /// Writes the engine's progress to the record, at most every [`PROGRESS_EVERY`] and only
    /// when it moved, and at least every quarter lease even when it did not, which renews the
    /// claim of a long silent attempt.
    fn progress_to_record(&self, id: TranscriptionId) -> (Progress, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = tokio::sync::watch::channel(0u8);
        let progress = Progress::new(move |percent| {
            sender.send_if_modified(|current| {
                let moved = percent > *current;
                if moved {
                    *current = percent;
                }
                moved
            });
        });
        let (records, clock) = (self.records.clone(), self.clock.clone());
        let renew_every = self.lease / 4;
        let writer = tokio::spawn(async move {
            loop {
                let changed = tokio::time::timeout(renew_every, receiver.changed()).await;
                if matches!(changed, Ok(Err(_))) {
                    break;
                }
                let percent = *receiver.borrow_and_update();
                if let Err(err) = records.set_progress(&id, percent, clock.now()).await {
                    tracing::warn!(error = %crate::telemetry::error_chain(&err), "could not record progress");
                }
                tokio::time::sleep(PROGRESS_EVERY).await;
            }
        });
        (progress, writer)
    }
}
