//! The job queue: which one, and its leases, retries and consumers.

use std::time::Duration;

use super::source::{ConfigError, Source};

/// Which queue carries jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueBackend {
    /// The durable SQLite queue in `DATABASE_PATH`.
    Sqlite,
    /// Amazon SQS with its dead-letter queue.
    Sqs {
        transcribe_queue_url: String,
        transcribe_dead_letter_url: String,
        /// Long-polling wait of an idle receive.
        wait: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub backend: QueueBackend,
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
    pub poll_interval: Duration,
    pub retry_base_delay: Duration,
    pub worker_concurrency: usize,
    /// A consumer silent for longer makes `/health/ready` answer not ready.
    pub worker_stale_after: Duration,
    /// `ECS_AGENT_URI`, which ECS injects into tasks: the worker protects its task from
    /// scale-in while it holds a job.
    pub ecs_agent_uri: Option<String>,
}

impl QueueConfig {
    /// How long a `processing` record may go untouched before its claim counts as abandoned:
    /// beyond a visibility timeout (a dead worker's message comes back), twice, plus the
    /// longest backoff (a retried message waits that long).
    pub fn processing_lease(&self) -> Duration {
        self.visibility_timeout * 2 + crate::domain::MAX_BACKOFF
    }
}

impl QueueConfig {
    pub(super) fn parse(src: &Source) -> Result<Self, ConfigError> {
        let backend = match src.raw("JOB_QUEUE").as_deref() {
            None | Some("sqlite") => QueueBackend::Sqlite,
            Some("sqs") => QueueBackend::Sqs {
                transcribe_queue_url: src.raw("SQS_TRANSCRIBE_QUEUE_URL").ok_or(
                    ConfigError::Missing {
                        key: "SQS_TRANSCRIBE_QUEUE_URL",
                        reason: "JOB_QUEUE=sqs".into(),
                    },
                )?,
                transcribe_dead_letter_url: src.raw("SQS_TRANSCRIBE_DLQ_URL").ok_or(
                    ConfigError::Missing {
                        key: "SQS_TRANSCRIBE_DLQ_URL",
                        reason: "JOB_QUEUE=sqs".into(),
                    },
                )?,
                wait: Duration::from_secs(src.parse("SQS_WAIT_SECS", 10u64)?.min(20)),
            },
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "JOB_QUEUE",
                    reason: "expected sqlite or sqs".into(),
                });
            }
        };

        let max_receive_count: u32 = src.parse("MAX_RECEIVE_COUNT", 3)?;
        if max_receive_count == 0 {
            return Err(ConfigError::Invalid {
                key: "MAX_RECEIVE_COUNT",
                reason: "must be at least 1".into(),
            });
        }
        let visibility_secs: f64 = src.parse("QUEUE_VISIBILITY_TIMEOUT_SECS", 300.0)?;
        if !(visibility_secs.is_finite() && visibility_secs >= 0.5) {
            return Err(ConfigError::Invalid {
                key: "QUEUE_VISIBILITY_TIMEOUT_SECS",
                reason: "must be at least 0.5 seconds".into(),
            });
        }
        let worker_concurrency: usize = src.parse("WORKER_CONCURRENCY", 1)?;
        if worker_concurrency == 0 {
            return Err(ConfigError::Invalid {
                key: "WORKER_CONCURRENCY",
                reason: "must be at least 1".into(),
            });
        }

        Ok(Self {
            backend,
            visibility_timeout: Duration::from_secs_f64(visibility_secs),
            max_receive_count,
            poll_interval: Duration::from_millis(src.parse("QUEUE_POLL_INTERVAL_MS", 500u64)?),
            retry_base_delay: Duration::from_millis(src.parse("JOB_RETRY_BASE_DELAY_MS", 2000u64)?),
            worker_concurrency,
            worker_stale_after: Duration::from_secs(
                src.parse("WORKER_STALE_AFTER_SECS", 60u64)?.max(1),
            ),
            ecs_agent_uri: src.raw("ECS_AGENT_URI"),
        })
    }

    pub(super) fn check_for_lambda(&self) -> Result<(), ConfigError> {
        if matches!(self.backend, QueueBackend::Sqlite) {
            return Err(ConfigError::unsafe_setting(
                "JOB_QUEUE",
                "must be sqs in a Lambda function",
            ));
        }
        Ok(())
    }
}
