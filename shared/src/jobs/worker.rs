//! In-process consumers for the one-process server.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Disposition, JobKind as Consumer};
use crate::{
    app::{AppState, heartbeats::BEAT_WHILE_WORKING},
    ports::{JobQueue, ReceivedJob},
};

/// Runs the job consumers of this process until `shutdown` is cancelled:
/// `WORKER_CONCURRENCY` on the transcribe queue, and one on the EHR queue when EHR push is
/// configured.
///
/// On shutdown a consumer stops receiving, gives its current job up to `SHUTDOWN_GRACE_SECS`
/// to finish, and otherwise releases the lease so the job is delivered again at once on the
/// next start (a crash is covered by the lease simply running out).
pub async fn run_job_consumers(state: AppState, shutdown: CancellationToken) {
    let mut workers: Vec<_> = (0..state.config.queue.worker_concurrency)
        .map(|n| {
            tokio::spawn(consume(
                state.clone(),
                state.transcribe_queue.clone(),
                Consumer::Transcribe,
                shutdown.clone(),
                n,
            ))
        })
        .collect();
    if let Some(ehr) = &state.ehr {
        workers.push(tokio::spawn(consume(
            state.clone(),
            ehr.queue.clone(),
            Consumer::EhrPush,
            shutdown.clone(),
            0,
        )));
    }
    for worker in workers {
        let _ = worker.await;
    }
}

async fn consume(
    state: AppState,
    queue: Arc<dyn JobQueue>,
    consumer: Consumer,
    shutdown: CancellationToken,
    worker: usize,
) {
    let kind = consumer.name();
    let name = format!("{kind}-{worker}");
    let heartbeats = state.worker_heartbeats.clone();
    tracing::info!(worker, queue = kind, "worker started");
    while !shutdown.is_cancelled() {
        heartbeats.beat(&name);
        let received = match queue.receive(1).await {
            Ok(received) => received,
            Err(err) => {
                tracing::error!(worker, queue = kind, error.cause_chain = %crate::telemetry::error_chain(&err), "could not poll the job queue");
                Vec::new()
            }
        };
        if received.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(state.config.queue.poll_interval) => continue,
            }
        }
        for message in received {
            process(&state, &queue, consumer, message, &shutdown, &name).await;
        }
    }
    heartbeats.stopped(&name);
    tracing::info!(worker, queue = kind, "worker stopped");
}

async fn process(
    state: &AppState,
    queue: &Arc<dyn JobQueue>,
    consumer: Consumer,
    message: ReceivedJob,
    shutdown: &CancellationToken,
    worker: &str,
) {
    if let Some(protection) = &state.scale_in_protection {
        protection.job_started().await;
    }
    settle(state, queue, consumer, &message, shutdown, worker).await;
    if let Some(protection) = &state.scale_in_protection {
        protection.job_ended().await;
    }
}

/// Runs one job under its lease and heartbeat, then acks, retries or dead-letters it.
async fn settle(
    state: &AppState,
    queue: &Arc<dyn JobQueue>,
    consumer: Consumer,
    message: &ReceivedJob,
    shutdown: &CancellationToken,
    worker: &str,
) {
    let visibility = state.config.queue.visibility_timeout;
    let lease = {
        let (queue, message) = (queue.clone(), message.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(visibility / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(err) = queue.extend_lease(&message, visibility).await {
                    tracing::warn!(error.cause_chain = %crate::telemetry::error_chain(&err), "could not extend the job lease");
                }
            }
        })
    };
    let alive = {
        let (heartbeats, worker) = (state.worker_heartbeats.clone(), worker.to_owned());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BEAT_WHILE_WORKING);
            loop {
                tick.tick().await;
                heartbeats.beat(&worker);
            }
        })
    };
    // A spawned task is a panic boundary: a bug in one job cannot take the worker down.
    let mut task = {
        let (state, message) = (state.clone(), message.clone());
        tokio::spawn(async move { consumer.handle(&state, &message).await })
    };
    let outcome = tokio::select! {
        joined = &mut task => Some(joined),
        _ = shutdown.cancelled() => {
            match tokio::time::timeout(state.config.http.shutdown_grace, &mut task).await {
                Ok(joined) => Some(joined),
                Err(_) => {
                    task.abort();
                    None
                }
            }
        }
    };
    lease.abort();
    alive.abort();

    let applied = match outcome {
        None => {
            tracing::warn!(message_id = %message.message_id, "shutting down mid-job; releasing the lease");
            queue.release(message).await
        }
        Some(Err(join_error)) => {
            tracing::error!(message_id = %message.message_id, panicked = join_error.is_panic(), "job task failed");
            queue
                .retry_later(message, state.config.queue.retry_base_delay)
                .await
        }
        Some(Ok(disposition)) => apply(queue.as_ref(), message, disposition).await,
    };
    if let Err(err) = applied {
        tracing::error!(message_id = %message.message_id, error.cause_chain = %crate::telemetry::error_chain(&err), "could not settle the job; the lease will expire and it will be redelivered");
    }
}

async fn apply(
    queue: &dyn JobQueue,
    message: &ReceivedJob,
    disposition: Disposition,
) -> Result<(), crate::ports::QueueError> {
    match disposition {
        Disposition::Ack => queue.ack(message).await,
        Disposition::Retry { delay, .. } => queue.retry_later(message, delay).await,
        Disposition::DeadLetter { reason } => queue.dead_letter(message, &reason).await,
    }
}

/// Receives and handles at most one EHR job (tests drive the outbox step by step).
pub async fn run_ehr_once(state: &AppState) -> Option<Disposition> {
    let queue = state.ehr.as_ref()?.queue.clone();
    let message = queue.receive(1).await.ok()?.into_iter().next()?;
    let disposition = Consumer::EhrPush.handle(state, &message).await;
    if let Err(err) = apply(queue.as_ref(), &message, disposition.clone()).await {
        tracing::error!(error.cause_chain = %crate::telemetry::error_chain(&err), "could not settle the job");
    }
    Some(disposition)
}

/// Receives and handles at most one transcription job, returning what was done with it.
/// For tests and tools that want to drive the pipeline step by step.
pub async fn run_once(state: &AppState) -> Option<Disposition> {
    let queue = state.transcribe_queue.clone();
    let message = queue.receive(1).await.ok()?.into_iter().next()?;
    let disposition = Consumer::Transcribe.handle(state, &message).await;
    if let Err(err) = apply(queue.as_ref(), &message, disposition.clone()).await {
        tracing::error!(error.cause_chain = %crate::telemetry::error_chain(&err), "could not settle the job");
    }
    Some(disposition)
}

/// Runs the retention sweep now and then every `RETENTION_SWEEP_INTERVAL_SECS` (with
/// `RETENTION_DAYS=0` it deletes nothing, but still fails abandoned records).
pub async fn run_retention_timer(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(state.config.retention.sweep_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if let Err(err) = state.retention().sweep().await {
                    tracing::error!(error.cause_chain = %crate::telemetry::error_chain(&err), "retention sweep failed; will retry at the next interval");
                }
            }
        }
    }
}
