//! [`JobQueue`] on Amazon SQS, with its dead-letter queue.
//!
//! Receives lease messages for the queue's visibility timeout (or the configured one) and SQS
//! counts receives (`ApproximateReceiveCount`); the queue's redrive policy moves a message to
//! the DLQ after `maxReceiveCount` — keep `MAX_RECEIVE_COUNT` equal to it. An explicit dead
//! letter (a job that can never succeed) is sent to the DLQ and deleted from the queue.
//! The HTTP request's correlation id and W3C trace context travel as the `correlation_id` and
//! `traceparent` message attributes.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::{
    Client,
    types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName},
};

use crate::{
    domain::JobId,
    ports::{
        CORRELATION_ATTRIBUTE, Job, JobOrigin, JobQueue, QueueError, QueueStats, ReceivedJob,
        TRACEPARENT_ATTRIBUTE,
    },
    telemetry::trace::{origin_attributes, origin_from_attributes},
};

/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

#[derive(Debug, Clone)]
pub struct SqsJobQueue {
    client: Client,
    queue_url: String,
    dead_letter_url: String,
    visibility_timeout: Duration,
    /// Long polling: an idle receive waits this long for a message instead of returning empty.
    wait: Duration,
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> QueueError {
    QueueError::Unavailable(Box::new(err))
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(unavailable)
}

fn seconds(d: Duration) -> i32 {
    d.min(MAX_VISIBILITY)
        .as_secs()
        .try_into()
        .unwrap_or(i32::MAX)
}

impl SqsJobQueue {
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        dead_letter_url: impl Into<String>,
        visibility_timeout: Duration,
        wait: Duration,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_url: dead_letter_url.into(),
            visibility_timeout,
            wait: wait.min(Duration::from_secs(20)),
        }
    }

    async fn change_visibility(
        &self,
        job: &ReceivedJob,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&job.receipt)
            .visibility_timeout(seconds(timeout))
            .send()
            .await
            .map_err(|e| {
                let service = e.into_service_error();
                if service.is_receipt_handle_is_invalid() || service.is_message_not_inflight() {
                    QueueError::StaleReceipt
                } else {
                    unavailable(service)
                }
            })?;
        Ok(())
    }

    async fn count(&self, url: &str) -> Result<(u64, u64), QueueError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(unavailable)?;
        let get = |name: QueueAttributeName| {
            attributes
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Ok((
            get(QueueAttributeName::ApproximateNumberOfMessages).unwrap_or(0),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible).unwrap_or(0),
        ))
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, job: &Job, origin: &JobOrigin) -> Result<JobId, QueueError> {
        // Standard queues deliver at least once: the record's claim refuses duplicate work.
        let body = serde_json::to_string(job).map_err(|e| QueueError::Unavailable(e.into()))?;
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body);
        for (name, value) in origin_attributes(origin) {
            send = send.message_attributes(name, string_attribute(value)?);
        }
        let sent = send.send().await.map_err(unavailable)?;
        Ok(JobId::from_raw(sent.message_id().unwrap_or_default()))
    }

    async fn receive(&self, max: usize) -> Result<Vec<ReceivedJob>, QueueError> {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(seconds(self.visibility_timeout))
            .wait_time_seconds(seconds(self.wait))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names(CORRELATION_ATTRIBUTE)
            .message_attribute_names(TRACEPARENT_ATTRIBUTE)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(received
            .messages()
            .iter()
            .map(|m| ReceivedJob {
                message_id: JobId::from_raw(m.message_id().unwrap_or_default()),
                receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                body: m.body().unwrap_or_default().to_owned(),
                origin: origin_from_attributes(|name| {
                    m.message_attributes()
                        .and_then(|a| a.get(name))
                        .and_then(|v| v.string_value())
                }),
            })
            .collect())
    }

    async fn extend_lease(
        &self,
        job: &ReceivedJob,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.change_visibility(job, visibility).await
    }

    async fn ack(&self, job: &ReceivedJob) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&job.receipt)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn retry_later(&self, job: &ReceivedJob, delay: Duration) -> Result<(), QueueError> {
        self.change_visibility(job, delay).await
    }

    /// Visible again now. SQS cannot un-count the receive: a release still uses an attempt.
    async fn release(&self, job: &ReceivedJob) -> Result<(), QueueError> {
        self.change_visibility(job, Duration::ZERO).await
    }

    async fn dead_letter(&self, job: &ReceivedJob, reason: &str) -> Result<(), QueueError> {
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(&job.body)
            .message_attributes("dead_letter_reason", string_attribute(reason)?);
        for (name, value) in origin_attributes(&job.origin) {
            send = send.message_attributes(name, string_attribute(value)?);
        }
        send.send().await.map_err(unavailable)?;
        // Kept in the DLQ first, then removed here: a crash between the two leaves a duplicate
        // dead letter, never a lost one.
        if !job.receipt.is_empty() {
            self.ack(job).await?;
        }
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let (visible, in_flight) = self.count(&self.queue_url).await?;
        let (dead_visible, dead_in_flight) = self.count(&self.dead_letter_url).await?;
        Ok(QueueStats {
            visible,
            in_flight,
            dead_lettered: dead_visible + dead_in_flight,
            oldest_age_s: None,
        })
    }
}
