//! EHR pushes: one job per delivery in the outbox. Safe to run again for the same message: a
//! delivery that is no longer pending is left alone, and every attempt after the first looks
//! for the note an earlier attempt may have written before it posts.

use std::time::Duration;

use rand::Rng;
use tracing::Instrument;

use super::{Disposition, JobKind};
use crate::{
    AppState,
    app::EhrServices,
    audit::{self, AuditAction, AuditEvent, AuditOutcome},
    domain::{EhrDelivery, EhrError, NoteDelivery, Status, delivery_marker, note_text},
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

/// Backoff for the next attempt: exponential with jitter, at least what the EHR asked for.
fn next_delay(state: &AppState, receive_count: u32, asked: Option<Duration>) -> Duration {
    let base = state.config.queue.retry_base_delay;
    let exp = base
        .saturating_mul(2u32.saturating_pow(receive_count.saturating_sub(1)))
        .min(Duration::from_secs(300))
        .mul_f64(rand::rng().random_range(0.75..=1.25));
    exp.max(asked.unwrap_or_default())
}

async fn handle(state: &AppState, message: &ReceivedJob) -> Disposition {
    let Some(ehr) = state.ehr.clone() else {
        return Disposition::DeadLetter {
            reason: "EHR push is not configured on this deployment".into(),
        };
    };
    let retry = |reason: String| Disposition::Retry {
        delay: next_delay(state, message.receive_count, None),
        reason,
    };
    let delivery_id = match Job::from_message(&message.body) {
        Some(Job::EhrPush { delivery_id }) => delivery_id,
        _ => {
            tracing::error!("not an EHR job; dead-lettering");
            return Disposition::DeadLetter {
                reason: "not an EHR job".into(),
            };
        }
    };
    let delivery = match ehr.deliveries.get(&delivery_id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            tracing::info!(%delivery_id, "delivery no longer exists; nothing to do");
            return Disposition::Ack;
        }
        Err(err) => return retry(format!("delivery store: {err}")),
    };
    if delivery.status != crate::domain::DeliveryStatus::Pending {
        tracing::info!(%delivery_id, status = delivery.status.as_str(), "already settled; redelivery ignored");
        return Disposition::Ack;
    }
    let now = state.clock.now();
    let elapsed = (now - delivery.created_at).to_std().unwrap_or_default();
    if elapsed
        > state
            .config
            .ehr
            .as_ref()
            .map_or(Duration::MAX, |c| c.max_total)
    {
        return give_up(
            state,
            &ehr,
            &delivery,
            message,
            "gave up: the delivery window passed".into(),
        )
        .await;
    }
    let transcript = match state.records.get(&delivery.transcription_id).await {
        Ok(Some(record)) if record.status == Status::Completed => record.transcript,
        Ok(_) => None,
        Err(err) => return retry(format!("record store: {err}")),
    };
    let Some(transcript) = transcript else {
        return give_up(
            state,
            &ehr,
            &delivery,
            message,
            "the transcription is no longer available".into(),
        )
        .await;
    };
    // Every attempt after the first may follow a lost answer: look before writing.
    let check_existing = delivery.attempts > 0 || message.receive_count > 1;
    match ehr.deliveries.record_attempt(&delivery.id, now).await {
        Ok(true) => {}
        Ok(false) => return Disposition::Ack,
        Err(err) => return retry(format!("delivery store: {err}")),
    }
    let marker = delivery_marker(&delivery.id.to_string());
    let note = NoteDelivery {
        delivery_id: delivery.id,
        transcription_id: delivery.transcription_id,
        patient_ref: delivery.patient_ref.clone(),
        encounter_ref: delivery.encounter_ref.clone(),
        section: delivery.section,
        text: note_text(&transcript.text, &delivery.transcription_id, &marker),
        marker,
        check_existing,
    };
    let correlation = message.origin.correlation_id.as_deref();
    match ehr.client.deliver(&note).await {
        Ok(receipt) => {
            if let Err(err) = ehr
                .deliveries
                .mark_delivered(&delivery.id, &receipt, state.clock.now())
                .await
            {
                // The note is in the EHR: the retry finds it by its marker.
                return retry(format!("delivery store: {err}"));
            }
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
            audit::record(
                state,
                audit_attempt(&delivery, AuditOutcome::Success, detail, correlation),
            )
            .await;
            Disposition::Ack
        }
        Err(EhrError::Transient {
            reason,
            retry_after,
        }) => {
            audit::record(
                state,
                audit_attempt(
                    &delivery,
                    AuditOutcome::Failed,
                    format!("attempt {}: {reason}", delivery.attempts + 1),
                    correlation,
                ),
            )
            .await;
            let max_attempts = state.config.ehr.as_ref().map_or(1, |c| c.max_attempts);
            if delivery.attempts + 1 >= max_attempts {
                let reason = format!(
                    "{reason} (gave up after {} attempts)",
                    delivery.attempts + 1
                );
                return give_up(state, &ehr, &delivery, message, reason).await;
            }
            state.metrics.record_ehr("retry");
            tracing::warn!(delivery_id = %delivery.id, reason = %reason, "EHR push failed; will retry");
            Disposition::Retry {
                delay: next_delay(state, message.receive_count, retry_after),
                reason,
            }
        }
        Err(EhrError::Permanent(reason)) | Err(EhrError::NeedsLogin(reason)) => {
            give_up(state, &ehr, &delivery, message, reason).await
        }
    }
}

/// Marks the delivery failed with its reason and dead-letters the job.
async fn give_up(
    state: &AppState,
    ehr: &EhrServices,
    delivery: &EhrDelivery,
    message: &ReceivedJob,
    reason: String,
) -> Disposition {
    state.metrics.record_ehr("failed");
    tracing::error!(delivery_id = %delivery.id, reason = %reason, "EHR push failed");
    if let Err(err) = ehr
        .deliveries
        .mark_failed(&delivery.id, &reason, state.clock.now())
        .await
    {
        return Disposition::Retry {
            delay: state.config.queue.retry_base_delay,
            reason: format!("delivery store: {err}"),
        };
    }
    audit::record(
        state,
        audit_attempt(
            delivery,
            AuditOutcome::Failed,
            format!("failed: {reason}"),
            message.origin.correlation_id.as_deref(),
        ),
    )
    .await;
    Disposition::DeadLetter { reason }
}
