//! The transcribe queue's messages: each names a record for [`app::transcriptions::process`].

use tracing::Instrument;

use super::{Disposition, JobKind, settle};
use crate::{
    app::{AppState, JobError, transcriptions::Processed},
    domain::{Backoff, Notification, TranscriptionId},
    ports::{Job, ReceivedJob},
    telemetry,
};

/// Handles one transcription message. Safe to call again for the same message: a record that
/// is already final is left alone, so a redelivery never duplicates work or regresses status.
pub async fn handle_transcribe_message(state: &AppState, message: &ReceivedJob) -> Disposition {
    let span = telemetry::job_span(JobKind::Transcribe.name(), message);
    handle(state, message).instrument(span).await
}

async fn handle(state: &AppState, message: &ReceivedJob) -> Disposition {
    let id = match Job::from_message(&message.body) {
        Some(Job::Transcribe { transcription_id }) => transcription_id,
        Some(Job::EhrPush { .. }) => {
            return settle::dead_letter(JobError::WrongQueue {
                found: "EHR",
                queue: "transcribe",
            });
        }
        Some(Job::Notify { notification }) => return notify(state, message, &notification).await,
        None => return settle::dead_letter(JobError::Unreadable),
    };
    match state
        .transcriptions()
        .process(&id, message.message_id.as_str())
        .await
    {
        Ok(Processed::Completed(_)) => Disposition::Ack,
        Ok(Processed::Skipped(why)) => {
            tracing::info!(transcription_id = %id, why, "nothing to do");
            Disposition::Ack
        }
        Err(err) => match settle::decide(
            Backoff::new(state.config.queue.retry_base_delay),
            message.receive_count,
            state.config.queue.max_receive_count,
            &err,
        ) {
            settle::Decision::Retry(disposition) => {
                tracing::warn!(transcription_id = %id, error.cause_chain = %err.reason(), "transcription attempt failed; will retry");
                disposition
            }
            settle::Decision::GiveUp(reason) => give_up(state, &id, reason).await,
        },
    }
}

/// Sends a notification; a receiver that is down gets it again after the backoff, until the
/// queue's last attempt.
async fn notify(
    state: &AppState,
    message: &ReceivedJob,
    notification: &Notification,
) -> Disposition {
    let Err(err) = state.send_notification(notification).await else {
        return Disposition::Ack;
    };
    match settle::decide(
        Backoff::new(state.config.queue.retry_base_delay),
        message.receive_count,
        state.config.queue.max_receive_count,
        &err,
    ) {
        settle::Decision::Retry(disposition) => {
            tracing::warn!(notification_id = %notification.id, error.cause_chain = %err.reason(), "notification not accepted; will retry");
            disposition
        }
        settle::Decision::GiveUp(reason) => settle::dead_letter_with(reason),
    }
}

/// Fails the record, then dead-letters the message. If even that write fails, the message
/// is dead-lettered anyway: the retention sweep's reconciler fails the record once its claim
/// goes stale, so it never stays `processing`.
async fn give_up(state: &AppState, id: &TranscriptionId, reason: String) -> Disposition {
    tracing::error!(transcription_id = %id, error.cause_chain = %reason, "transcription failed");
    if let Err(err) = state.transcriptions().fail(id, &reason).await {
        tracing::error!(transcription_id = %id, error.cause_chain = %err.reason(), "could not mark the record failed; the sweep will");
    }
    Disposition::DeadLetter { reason }
}
