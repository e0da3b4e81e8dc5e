//! EHR pushes: one job per delivery in the outbox. Safe to run again for the same message: a
//! delivery that is no longer pending is left alone, and every attempt after the first looks
//! for the note an earlier attempt may have written before it posts.

use std::time::Duration;

use tracing::Instrument;

use super::{Disposition, JobKind, settle};
use crate::{
    app::{AppState, EhrServices, JobError},
    domain::{
        AuditAction, AuditEvent, AuditOutcome, DeliveryStatus, EhrDelivery, NoteDelivery, Status,
        delivery_marker, note_text,
    },
    ports::{Job, ReceivedJob},
    telemetry,
};

/// The subject EHR jobs act as in the audit trail.
const PUSHER: &str = "system:ehr-push";

pub async fn handle_ehr_message(state: &AppState, message: &ReceivedJob) -> Disposition {
    let span = telemetry::job_span(JobKind::EhrPush.name(), message);
    handle(state, message).instrument(span).await
}

fn audit_attempt(
    delivery: &EhrDelivery,
    outcome: AuditOutcome,
    detail: String,
    correlation_id: Option<&str>,
) -> AuditEvent {
    let mut event = AuditEvent::now(AuditAction::EhrPush, outcome, PUSHER)
        .on(delivery.transcription_id)
        .detail(detail);
    event.correlation_id = correlation_id.map(str::to_owned);
    event
}

async fn handle(state: &AppState, message: &ReceivedJob) -> Disposition {
    let Some(ehr) = state.ehr.clone() else {
        return settle::dead_letter(JobError::EhrNotConfigured);
    };
    let delivery_id = match Job::from_message(&message.body) {
        Some(Job::EhrPush { delivery_id }) => delivery_id,
        Some(Job::Transcribe { .. }) => {
            return settle::dead_letter(JobError::WrongQueue {
                found: "transcribe",
                queue: "EHR",
            });
        }
        None => return settle::dead_letter(JobError::Unreadable),
    };
    let mut attempt = Attempt {
        number: message.receive_count,
        delivery: None,
    };
    let Err(err) = push(state, &ehr, delivery_id, message, &mut attempt).await else {
        return Disposition::Ack;
    };
    let max_attempts = state.config.ehr.as_ref().map_or(1, |c| c.max_attempts);
    match settle::decide(state, attempt.number, max_attempts, &err) {
        settle::Decision::Retry(disposition) => {
            state.metrics.record_ehr("retry");
            tracing::warn!(%delivery_id, error.cause_chain = %err.reason(), "EHR push failed; will retry");
            disposition
        }
        settle::Decision::GiveUp(reason) => match attempt.delivery {
            Some(delivery) => give_up(state, &ehr, &delivery, message, reason).await,
            // The delivery could not even be read: the message keeps the reason.
            None => settle::dead_letter_with(reason),
        },
    }
}

/// How far one push got: its attempt number and the delivery, once read.
struct Attempt {
    number: u32,
    delivery: Option<EhrDelivery>,
}

/// One attempt at a delivery. `Ok` when it was delivered, or when nothing is left to do.
async fn push(
    state: &AppState,
    ehr: &EhrServices,
    delivery_id: uuid::Uuid,
    message: &ReceivedJob,
    attempt: &mut Attempt,
) -> Result<(), JobError> {
    let Some(delivery) = ehr
        .deliveries
        .get(&delivery_id)
        .await
        .map_err(JobError::Deliveries)?
    else {
        tracing::info!(%delivery_id, "delivery no longer exists; nothing to do");
        return Ok(());
    };
    attempt.number = attempt.number.max(delivery.attempts + 1);
    let delivery = attempt.delivery.insert(delivery);
    if delivery.status != DeliveryStatus::Pending {
        tracing::info!(%delivery_id, status = delivery.status.as_str(), "already settled; redelivery ignored");
        return Ok(());
    }
    let now = state.clock.now();
    let elapsed = (now - delivery.created_at).to_std().unwrap_or_default();
    let window = state
        .config
        .ehr
        .as_ref()
        .map_or(Duration::MAX, |c| c.max_total);
    if elapsed > window {
        return Err(JobError::DeliveryWindowPassed);
    }
    let transcript = match state.records.get(&delivery.transcription_id).await {
        Ok(Some(record)) if record.status == Status::Completed => record.transcript,
        Ok(_) => None,
        Err(err) => return Err(JobError::Records(err)),
    }
    .ok_or(JobError::TranscriptGone)?;
    // Every attempt after the first may follow a lost answer: look before writing.
    let check_existing = delivery.attempts > 0 || message.receive_count > 1;
    if !ehr
        .deliveries
        .record_attempt(&delivery.id, now)
        .await
        .map_err(JobError::Deliveries)?
    {
        return Ok(());
    }
    let note = note_for(delivery, &transcript.text, check_existing);
    let correlation = message.origin.correlation_id.as_deref();
    let receipt = match ehr.client.deliver(&note).await {
        Ok(receipt) => receipt,
        Err(err) => {
            let detail = format!("attempt {}: {err}", delivery.attempts + 1);
            state
                .audit_trail()
                .record(audit_attempt(
                    delivery,
                    AuditOutcome::Failed,
                    detail,
                    correlation,
                ))
                .await;
            return Err(JobError::Ehr(err));
        }
    };
    // If this write fails the note is in the EHR: the retry finds it by its marker.
    ehr.deliveries
        .mark_delivered(&delivery.id, &receipt, state.clock.now())
        .await
        .map_err(JobError::Deliveries)?;
    delivered(state, delivery, &receipt, correlation).await;
    Ok(())
}

/// The note of a delivery, marked so that a later attempt can find it.
fn note_for(delivery: &EhrDelivery, transcript: &str, check_existing: bool) -> NoteDelivery {
    let marker = delivery_marker(&delivery.id.to_string());
    NoteDelivery {
        delivery_id: delivery.id,
        transcription_id: delivery.transcription_id,
        patient_ref: delivery.patient_ref.clone(),
        encounter_ref: delivery.encounter_ref.clone(),
        section: delivery.section,
        text: note_text(transcript, &delivery.transcription_id, &marker),
        marker,
        check_existing,
    }
}

/// Counts, logs and audits a delivered note.
async fn delivered(
    state: &AppState,
    delivery: &EhrDelivery,
    receipt: &crate::domain::EhrReceipt,
    correlation: Option<&str>,
) {
    state.metrics.record_ehr("delivered");
    tracing::info!(delivery_id = %delivery.id, transcription_id = %delivery.transcription_id, found_existing = receipt.found_existing, "EHR note delivered");
    let detail = format!(
        "delivered; EHR note {}{}",
        receipt.note_id,
        if receipt.found_existing {
            " (found after a lost answer)"
        } else {
            ""
        }
    );
    state
        .audit_trail()
        .record(audit_attempt(
            delivery,
            AuditOutcome::Success,
            detail,
            correlation,
        ))
        .await;
}

/// Marks the delivery failed with its reason and dead-letters the job. If that write fails,
/// the job is retried so the next attempt can settle it.
async fn give_up(
    state: &AppState,
    ehr: &EhrServices,
    delivery: &EhrDelivery,
    message: &ReceivedJob,
    reason: String,
) -> Disposition {
    state.metrics.record_ehr("failed");
    tracing::error!(delivery_id = %delivery.id, error.cause_chain = %reason, "EHR push failed");
    if let Err(err) = ehr
        .deliveries
        .mark_failed(&delivery.id, &reason, state.clock.now())
        .await
    {
        let err = JobError::Deliveries(err);
        tracing::error!(delivery_id = %delivery.id, error.cause_chain = %err.reason(), "could not mark the delivery failed");
        return Disposition::Retry {
            delay: state.config.queue.retry_base_delay,
            reason: err.reason(),
        };
    }
    state
        .audit_trail()
        .record(audit_attempt(
            delivery,
            AuditOutcome::Failed,
            format!("failed: {reason}"),
            message.origin.correlation_id.as_deref(),
        ))
        .await;
    Disposition::DeadLetter { reason }
}
