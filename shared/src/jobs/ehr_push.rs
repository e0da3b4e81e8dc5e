//! The EHR queue's messages: each names a delivery for [`crate::app::deliveries`].

use tracing::Instrument;

use super::{Disposition, JobKind, settle};
use crate::{
    app::{AppState, JobError, deliveries::Attempt},
    domain::Backoff,
    ports::{Job, ReceivedJob},
    telemetry,
};

pub async fn handle_ehr_message(state: &AppState, message: &ReceivedJob) -> Disposition {
    let span = telemetry::job_span(JobKind::EhrPush.name(), message);
    handle(state, message).instrument(span).await
}

async fn handle(state: &AppState, message: &ReceivedJob) -> Disposition {
    let Some(deliveries) = state.deliveries() else {
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
        Some(Job::Notify { .. }) => {
            return settle::dead_letter(JobError::WrongQueue {
                found: "notification",
                queue: "EHR",
            });
        }
        None => return settle::dead_letter(JobError::Unreadable),
    };
    let mut attempt = Attempt {
        number: message.receive_count,
        delivery: None,
    };
    let Err(err) = deliveries.push(delivery_id, message, &mut attempt).await else {
        return Disposition::Ack;
    };
    let backoff = Backoff::new(state.config.queue.retry_base_delay);
    match settle::decide(backoff, attempt.number, deliveries.max_attempts(), &err) {
        settle::Decision::Retry(disposition) => {
            state.metrics.record_ehr("retry");
            tracing::warn!(%delivery_id, error.cause_chain = %err.reason(), "EHR push failed; will retry");
            disposition
        }
        // The delivery could not even be read: the message keeps the reason.
        settle::Decision::GiveUp(reason) => match attempt.delivery {
            None => settle::dead_letter_with(reason),
            Some(delivery) => match deliveries.give_up(&delivery, message, &reason).await {
                Ok(()) => Disposition::DeadLetter { reason },
                // Not settled: the next attempt settles it.
                Err(not_failed) => {
                    tracing::error!(%delivery_id, error.cause_chain = %not_failed.reason(), "could not mark the delivery failed");
                    Disposition::Retry {
                        delay: state.config.queue.retry_base_delay,
                        reason: not_failed.reason(),
                    }
                }
            },
        },
    }
}
