//! What to do with a message whose work failed: one policy for every job.

use super::Disposition;
use crate::{app::JobError, domain::Backoff};

pub enum Decision {
    Retry(Disposition),
    /// The reason to keep on the record (or delivery) and the dead letter.
    GiveUp(String),
}

/// Transient failures are retried after the backoff (or the `Retry-After` asked for) until
/// the last attempt (`attempt` of `max_attempts`, counted from 1; a transcription's limit is
/// the queue's receive count); then, and for permanent failures at once, the work gives up.
pub fn decide(backoff: Backoff, attempt: u32, max_attempts: u32, err: &JobError) -> Decision {
    if !err.is_transient() {
        return Decision::GiveUp(err.reason());
    }
    if attempt >= max_attempts {
        return Decision::GiveUp(format!(
            "{} (gave up after {attempt} attempts)",
            err.reason()
        ));
    }
    let delay = backoff.delay(attempt, err.retry_after());
    Decision::Retry(Disposition::Retry {
        delay,
        reason: err.reason(),
    })
}

/// A message no handler can use: kept in the dead letters with the reason.
pub fn dead_letter(err: JobError) -> Disposition {
    dead_letter_with(err.reason())
}

pub fn dead_letter_with(reason: String) -> Disposition {
    tracing::error!(error.cause_chain = %reason, "dead-lettering the message");
    Disposition::DeadLetter { reason }
}
