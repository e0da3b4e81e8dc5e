//! The durable job queue in the SQLite file, with SQS semantics (leases, receive counts, dead
//! letters), telling time by the `Clock` port.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::{Database, to_micros};
use crate::{
    domain::JobId,
    ports::{
        BoxError, Clock, Job, JobOrigin, JobQueue, QueueError, QueueStats, ReceivedJob, SystemClock,
    },
};

/// A durable queue with SQS semantics in a SQLite table.
///
/// A receive leases messages for the visibility timeout and bumps their receive count; a
/// crashed consumer's lease simply runs out and the message is delivered again. A message
/// received `max_receive_count` times and still not acked moves to `dead_letter_jobs`.
#[derive(Clone)]
pub struct SqliteJobQueue {
    db: Database,
    queue: &'static str,
    visibility_timeout: Duration,
    max_receive_count: u32,
    /// Leases and delays are measured on it: tests move time instead of sleeping.
    clock: Arc<dyn Clock>,
}

impl SqliteJobQueue {
    pub fn new(
        db: Database,
        queue: &'static str,
        visibility_timeout: Duration,
        max_receive_count: u32,
    ) -> Self {
        Self {
            db,
            queue,
            visibility_timeout,
            max_receive_count,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same queue, telling time by `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    fn now_micros(&self) -> i64 {
        to_micros(self.clock.now())
    }

    /// Runs `change` on the message only while `job`'s receipt still holds its lease: a consumer
    /// whose lease ran out (and whose message went to someone else) cannot ack or move it.
    async fn with_lease<F>(&self, job: &ReceivedJob, change: F) -> Result<(), QueueError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>, &str) -> Result<(), BoxError> + Send + 'static,
    {
        let (id, token) = split_receipt(&job.receipt)?;
        let held = self
            .db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let held = tx
                    .query_row(
                        "SELECT 1 FROM jobs WHERE id = ?1 AND lease_token = ?2",
                        params![id, token],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                if held {
                    change(&tx, &id)?;
                }
                tx.commit()?;
                Ok(held)
            })
            .await
            .map_err(QueueError::Unavailable)?;
        if held {
            Ok(())
        } else {
            Err(QueueError::StaleReceipt)
        }
    }

    /// The dead letters, newest first: `(message id, body, receive count, reason)`.
    pub async fn dead_letters(&self) -> Result<Vec<(String, String, u32, String)>, QueueError> {
        let queue = self.queue;
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT id, body, receive_count, reason FROM dead_letter_jobs
                     WHERE queue = ?1 ORDER BY dead_lettered_at DESC",
                )?;
                let rows = stmt.query_map([queue], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .map_err(QueueError::Unavailable)
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A receipt is `<message id>:<lease token>`; a new lease makes older receipts stale.
fn split_receipt(receipt: &str) -> Result<(String, String), QueueError> {
    receipt
        .split_once(':')
        .map(|(id, token)| (id.to_owned(), token.to_owned()))
        .ok_or(QueueError::StaleReceipt)
}

const MOVE_TO_DEAD_LETTERS: &str = "INSERT OR REPLACE INTO dead_letter_jobs
        (id, queue, body, correlation_id, traceparent, receive_count, enqueued_at, dead_lettered_at, reason)
     SELECT id, queue, body, correlation_id, traceparent, receive_count, enqueued_at, ?1, ?2 FROM jobs WHERE id = ?3";

#[async_trait]
impl JobQueue for SqliteJobQueue {
    async fn enqueue(&self, job: &Job, origin: &JobOrigin) -> Result<JobId, QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError::Unavailable(e.into()))?;
        let queue = self.queue;
        let JobOrigin {
            correlation_id,
            traceparent,
        } = origin.clone();
        let now = self.now_micros();
        self.db
            .call(move |conn| {
                let id = JobId::new();
                conn.execute(
                    "INSERT INTO jobs (id, queue, body, correlation_id, traceparent, enqueued_at, visible_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![id.as_str(), queue, body, correlation_id, traceparent, now],
                )?;
                Ok(id)
            })
            .await
            .map_err(QueueError::Unavailable)
    }

    async fn receive(&self, max: usize) -> Result<Vec<ReceivedJob>, QueueError> {
        let (queue, visibility, max_receives) =
            (self.queue, self.visibility_timeout, self.max_receive_count);
        let now = self.now_micros();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut leased = Vec::new();
                {
                    let mut ready = tx.prepare_cached(
                        "SELECT id, body, correlation_id, traceparent, receive_count FROM jobs
                         WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, enqueued_at LIMIT ?3",
                    )?;
                    let rows = ready
                        .query_map(params![queue, now, max.max(1) * 4], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                JobOrigin {
                                    correlation_id: r.get(2)?,
                                    traceparent: r.get(3)?,
                                },
                                r.get::<_, u32>(4)?,
                            ))
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    for (id, body, origin, receive_count) in rows {
                        if leased.len() >= max {
                            break;
                        }
                        if receive_count >= max_receives {
                            // Its last lease ran out without an ack: the consumer died mid-attempt.
                            tx.execute(
                                MOVE_TO_DEAD_LETTERS,
                                params![now, "maximum receive count reached without acknowledgement", id],
                            )?;
                            tx.execute("DELETE FROM jobs WHERE id = ?1", [&id])?;
                            continue;
                        }
                        let token = Uuid::new_v4().simple().to_string();
                        tx.execute(
                            "UPDATE jobs SET receive_count = receive_count + 1, visible_at = ?1, lease_token = ?2 WHERE id = ?3",
                            params![now + micros(visibility), token, id],
                        )?;
                        leased.push(ReceivedJob {
                            receipt: format!("{id}:{token}"),
                            message_id: JobId::from_raw(id),
                            receive_count: receive_count + 1,
                            body,
                            origin,
                        });
                    }
                }
                tx.commit()?;
                Ok(leased)
            })
            .await
            .map_err(QueueError::Unavailable)
    }

    async fn extend_lease(
        &self,
        job: &ReceivedJob,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let now = self.now_micros();
        self.with_lease(job, move |tx, id| {
            tx.execute(
                "UPDATE jobs SET visible_at = ?1 WHERE id = ?2",
                params![now + micros(visibility), id],
            )?;
            Ok(())
        })
        .await
    }

    async fn ack(&self, job: &ReceivedJob) -> Result<(), QueueError> {
        self.with_lease(job, |tx, id| {
            tx.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    async fn retry_later(&self, job: &ReceivedJob, delay: Duration) -> Result<(), QueueError> {
        let (max_receives, now) = (self.max_receive_count, self.now_micros());
        self.with_lease(job, move |tx, id| {
            let count: u32 =
                tx.query_row("SELECT receive_count FROM jobs WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
            if count >= max_receives {
                // No receive is left: dead-letter now rather than after another timeout.
                tx.execute(
                    MOVE_TO_DEAD_LETTERS,
                    params![now, "maximum receive count reached", id],
                )?;
                tx.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
            } else {
                tx.execute(
                    "UPDATE jobs SET visible_at = ?1, lease_token = NULL WHERE id = ?2",
                    params![now + micros(delay), id],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn release(&self, job: &ReceivedJob) -> Result<(), QueueError> {
        let now = self.now_micros();
        self.with_lease(job, move |tx, id| {
            tx.execute(
                "UPDATE jobs SET visible_at = ?1, lease_token = NULL, receive_count = max(receive_count - 1, 0)
                 WHERE id = ?2",
                params![now, id],
            )?;
            Ok(())
        })
        .await
    }

    async fn dead_letter(&self, job: &ReceivedJob, reason: &str) -> Result<(), QueueError> {
        let queue = self.queue;
        let job = job.clone();
        let reason = reason.to_owned();
        let now = self.now_micros();
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let id = job.message_id.as_str().to_owned();
                let moved = tx.execute(MOVE_TO_DEAD_LETTERS, params![now, reason, id])?;
                if moved == 0 {
                    // The message came from elsewhere (e.g. an SQS event): keep what we were given.
                    tx.execute(
                        "INSERT OR REPLACE INTO dead_letter_jobs
                            (id, queue, body, correlation_id, traceparent, receive_count, enqueued_at, dead_lettered_at, reason)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                        params![id, queue, job.body, job.origin.correlation_id, job.origin.traceparent, job.receive_count, now, reason],
                    )?;
                }
                tx.execute("DELETE FROM jobs WHERE id = ?1", [&id])?;
                tx.commit()?;
                Ok(())
            })
            .await
            .map_err(QueueError::Unavailable)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let queue = self.queue;
        let now = self.now_micros();
        self.db
            .call(move |conn| {
                let (visible, in_flight, oldest): (u64, u64, Option<i64>) = conn.query_row(
                    "SELECT coalesce(sum(visible_at <= ?2), 0), coalesce(sum(visible_at > ?2), 0), min(enqueued_at)
                     FROM jobs WHERE queue = ?1",
                    params![queue, now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                let dead_lettered: u64 =
                    conn.query_row("SELECT count(*) FROM dead_letter_jobs WHERE queue = ?1", [queue], |r| r.get(0))?;
                Ok(QueueStats {
                    visible,
                    in_flight,
                    dead_lettered,
                    oldest_age_s: oldest.map(|t| (now - t) as f64 / 1e6),
                })
            })
            .await
            .map_err(|e: BoxError| QueueError::Unavailable(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{domain::TranscriptionId, ports::ManualClock};

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// A queue on a manual clock: time moves only when a test says so.
    fn queue(
        visibility_ms: u64,
        max_receives: u32,
    ) -> (tempfile::TempDir, SqliteJobQueue, Arc<ManualClock>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("q.db")).unwrap();
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let queue = SqliteJobQueue::new(
            db,
            "test",
            Duration::from_millis(visibility_ms),
            max_receives,
        )
        .with_clock(clock.clone());
        (dir, queue, clock)
    }

    fn ms(n: i64) -> chrono::Duration {
        chrono::Duration::milliseconds(n)
    }

    fn job() -> Job {
        Job::Transcribe {
            transcription_id: TranscriptionId::new(),
        }
    }

    #[tokio::test]
    async fn a_lease_hides_the_message_until_it_runs_out() {
        let (_dir, q, clock) = queue(1000, 5);
        q.enqueue(
            &job(),
            &JobOrigin {
                correlation_id: Some("corr-1".into()),
                traceparent: Some(TRACEPARENT.into()),
            },
        )
        .await
        .unwrap();
        let first = q.receive(10).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        assert_eq!(first[0].origin.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(first[0].origin.traceparent.as_deref(), Some(TRACEPARENT));
        clock.advance(ms(999));
        assert!(
            q.receive(10).await.unwrap().is_empty(),
            "leased messages are invisible until the lease ends"
        );

        clock.advance(ms(1));
        let second = q.receive(10).await.unwrap();
        assert_eq!(
            second.len(),
            1,
            "an expired lease makes the message visible again"
        );
        assert_eq!(second[0].receive_count, 2);
        assert!(
            matches!(q.ack(&first[0]).await, Err(QueueError::StaleReceipt)),
            "the old receipt is stale"
        );
        q.ack(&second[0]).await.unwrap();
        clock.advance(ms(5000));
        assert!(
            q.receive(10).await.unwrap().is_empty(),
            "acked messages are gone"
        );
    }

    #[tokio::test]
    async fn heartbeats_keep_the_lease() {
        let (_dir, q, clock) = queue(1000, 5);
        q.enqueue(&job(), &JobOrigin::default()).await.unwrap();
        let leased = q.receive(1).await.unwrap().remove(0);
        for _ in 0..4 {
            clock.advance(ms(400));
            q.extend_lease(&leased, Duration::from_millis(1000))
                .await
                .unwrap();
        }
        clock.advance(ms(999));
        assert!(q.receive(1).await.unwrap().is_empty());
        clock.advance(ms(1));
        assert_eq!(
            q.receive(1).await.unwrap().len(),
            1,
            "back once the last heartbeat's lease ran out"
        );
    }

    #[tokio::test]
    async fn an_unacked_message_goes_to_the_dead_letters_after_max_receives() {
        let (_dir, q, clock) = queue(50, 2);
        q.enqueue(&job(), &JobOrigin::default()).await.unwrap();
        for _ in 0..2 {
            assert_eq!(q.receive(1).await.unwrap().len(), 1);
            clock.advance(ms(50));
        }
        assert!(q.receive(1).await.unwrap().is_empty());
        let dead = q.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].2, 2);
        let stats = q.stats().await.unwrap();
        assert_eq!(
            (stats.visible, stats.in_flight, stats.dead_lettered),
            (0, 0, 1)
        );
    }

    #[tokio::test]
    async fn retry_later_delays_and_release_does_not_count() {
        let (_dir, q, clock) = queue(10_000, 3);
        q.enqueue(&job(), &JobOrigin::default()).await.unwrap();
        let leased = q.receive(1).await.unwrap().remove(0);
        q.retry_later(&leased, Duration::from_millis(100))
            .await
            .unwrap();
        clock.advance(ms(99));
        assert!(
            q.receive(1).await.unwrap().is_empty(),
            "not before the delay"
        );
        clock.advance(ms(1));
        let again = q.receive(1).await.unwrap().remove(0);
        assert_eq!(again.receive_count, 2);
        q.release(&again).await.unwrap();
        let after_release = q.receive(1).await.unwrap().remove(0);
        assert_eq!(
            after_release.receive_count, 2,
            "a released receive is not counted"
        );
    }
}
