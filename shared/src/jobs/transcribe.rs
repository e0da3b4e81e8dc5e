use std::time::Duration;

use rand::Rng;
use tracing::Instrument;

use crate::{
    AppState,
    domain::TranscriptionId,
    ports::{AudioInput, EngineError, Job, Progress, ReceivedJob, TranscribeOptions},
    telemetry,
};

/// What the consumer should do with a message after handling it.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Done (or nothing left to do): delete the message.
    Ack,
    /// Failed this time; deliver again after `delay`.
    Retry { delay: Duration, reason: String },
    /// Failed for good: the record is `failed`; keep the message in the dead letters.
    DeadLetter { reason: String },
}

/// Handles one transcription message. Safe to call again for the same message: a record that
/// is already final is left alone, so a redelivery never duplicates work or regresses status.
pub async fn handle_transcribe_message(state: &AppState, message: &ReceivedJob) -> Disposition {
    let span = telemetry::job_span(super::JobKind::Transcribe.name(), message);
    handle(state, message).instrument(span).await
}

async fn handle(state: &AppState, message: &ReceivedJob) -> Disposition {
    let retry = |reason: String| Disposition::Retry {
        delay: backoff(state.config.queue.retry_base_delay, message.receive_count),
        reason,
    };
    let id = match Job::from_message(&message.body) {
        Some(Job::Transcribe { transcription_id }) => transcription_id,
        Some(Job::EhrPush { .. }) => {
            tracing::error!("an EHR job on the transcribe queue; dead-lettering");
            return Disposition::DeadLetter {
                reason: "an EHR job on the transcribe queue".into(),
            };
        }
        None => {
            tracing::error!("unreadable job body; dead-lettering");
            return Disposition::DeadLetter {
                reason: "unreadable job body".into(),
            };
        }
    };

    let record = match state.records.get(&id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            tracing::info!(transcription_id = %id, "record no longer exists; nothing to do");
            return Disposition::Ack;
        }
        Err(err) => return retry(format!("record store: {err}")),
    };
    if record.status.is_final() {
        tracing::info!(transcription_id = %id, status = record.status.as_str(), "already final; redelivery ignored");
        return Disposition::Ack;
    }
    let Some(engine) = state.engines.get(record.engine).cloned() else {
        let reason = format!("the {} engine is not available", record.engine);
        return give_up(state, &id, reason).await;
    };
    match state.records.mark_processing(&id, state.clock.now()).await {
        Ok(true) => {}
        Ok(false) => return Disposition::Ack,
        Err(err) => return retry(format!("record store: {err}")),
    }

    let audio = AudioInput::of(&record, state.blobs.clone());
    let options = TranscribeOptions::of(&record);
    let (progress, progress_writer) = progress_to_record(state, id);
    let started = std::time::Instant::now();
    let engine_span = tracing::info_span!(
        "engine",
        engine = record.engine.as_str(),
        model = %engine.describe(),
        audio_bytes = record.size_bytes,
    );
    let outcome = engine
        .transcribe(&audio, &options, &progress)
        .instrument(engine_span)
        .await;
    let elapsed_s = started.elapsed().as_secs_f64();
    progress_writer.abort();

    match outcome {
        Ok(transcript) => {
            let duration_s = transcript.duration_s;
            match state
                .records
                .complete(&id, &transcript, state.clock.now())
                .await
            {
                Ok(changed) => {
                    state.metrics.record_transcription(
                        record.engine.as_str(),
                        &engine.describe(),
                        duration_s,
                        elapsed_s,
                    );
                    tracing::info!(
                        transcription_id = %id,
                        engine = %record.engine,
                        model = %engine.describe(),
                        elapsed_s,
                        audio_s = duration_s,
                        stored = changed,
                        "transcription completed"
                    );
                    if !state.config.store_phi {
                        // Keep only what the product needs: the transcript.
                        if let Err(err) = state.blobs.delete(&record.audio_key).await {
                            tracing::warn!(error = %err, "could not remove audio after transcription");
                        }
                    }
                    Disposition::Ack
                }
                Err(err) => retry(format!("record store: {err}")),
            }
        }
        Err(EngineError::Transient(reason))
            if message.receive_count < state.config.queue.max_receive_count =>
        {
            tracing::warn!(transcription_id = %id, reason = %reason, "transcription attempt failed; will retry");
            retry(reason)
        }
        Err(EngineError::Transient(reason)) => {
            let reason = format!(
                "{reason} (gave up after {} attempts)",
                message.receive_count
            );
            give_up(state, &id, reason).await
        }
        Err(EngineError::Permanent(reason)) => give_up(state, &id, reason).await,
    }
}

/// Engines report progress often; the record is written at most twice a second, and only when
/// the figure moved.
fn progress_to_record(
    state: &AppState,
    id: TranscriptionId,
) -> (Progress, tokio::task::JoinHandle<()>) {
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
    let records = state.records.clone();
    let writer = tokio::spawn(async move {
        while receiver.changed().await.is_ok() {
            let percent = *receiver.borrow_and_update();
            if let Err(err) = records.set_progress(&id, percent).await {
                tracing::warn!(error = %err, "could not record progress");
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
    (progress, writer)
}

async fn give_up(
    state: &AppState,
    id: &crate::domain::TranscriptionId,
    reason: String,
) -> Disposition {
    tracing::error!(transcription_id = %id, reason = %reason, "transcription failed");
    match state.records.fail(id, &reason, state.clock.now()).await {
        Ok(_) => Disposition::DeadLetter { reason },
        Err(err) => Disposition::Retry {
            delay: state.config.queue.retry_base_delay,
            reason: format!("record store: {err}"),
        },
    }
}

/// Exponential in the attempt number, with jitter, capped at five minutes.
fn backoff(base: Duration, receive_count: u32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(receive_count.saturating_sub(1)));
    exp.min(Duration::from_secs(300))
        .mul_f64(rand::rng().random_range(0.75..=1.25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(2);
        assert!(backoff(base, 1) <= Duration::from_millis(2500));
        assert!(backoff(base, 3) >= Duration::from_secs(6));
        assert!(backoff(base, 30) <= Duration::from_secs(375));
    }
}
