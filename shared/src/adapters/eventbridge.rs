//! [`Notifier`] on Amazon EventBridge: each notification is one `PutEvents` entry on
//! `EVENT_BUS_NAME`, `Source` `mmt`, `DetailType` the event type (`transcription.completed`,
//! ...), `Detail` the same JSON body a webhook gets. Rules on the bus route them (to SQS, an
//! API destination with its own signing, a Lambda function). An entry EventBridge fails with a
//! throttling or internal error is retried by the job queue; others fail the notification.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eventbridge::{Client, types::PutEventsRequestEntry};

use crate::ports::{Notifier, NotifyError};

/// The `source` of every MMT event (what a rule's pattern matches).
pub const EVENT_SOURCE: &str = "mmt";

pub struct EventBridgeNotifier {
    client: Client,
    bus: String,
}

impl EventBridgeNotifier {
    pub fn new(client: Client, bus: String) -> Self {
        Self { client, bus }
    }
}

#[async_trait]
impl Notifier for EventBridgeNotifier {
    async fn send(&self, _id: &str, body: &[u8]) -> Result<(), NotifyError> {
        let detail = std::str::from_utf8(body)
            .map_err(|_| NotifyError::Permanent("a notification body is not UTF-8".into()))?;
        let kind = serde_json::from_str::<serde_json::Value>(detail)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .ok_or_else(|| NotifyError::Permanent("a notification without a type".into()))?;
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(EVENT_SOURCE)
            .detail_type(kind)
            .detail(detail)
            .build();
        let answer = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| NotifyError::Transient {
                reason: format!(
                    "EventBridge did not take the event: {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                ),
                retry_after: None,
            })?;
        if answer.failed_entry_count() == 0 {
            return Ok(());
        }
        let code = answer
            .entries()
            .first()
            .and_then(|e| e.error_code())
            .unwrap_or("unknown")
            .to_owned();
        let reason = format!("EventBridge refused the event ({code})");
        // PutEvents' documented entry errors: throttling and internal failures are worth
        // another try; the others (a missing bus, a malformed entry, access) are not.
        if code.contains("Throttl")
            || code.contains("InternalFailure")
            || code.contains("InternalException")
        {
            Err(NotifyError::Transient {
                reason,
                retry_after: Some(Duration::from_secs(1)),
            })
        } else {
            Err(NotifyError::Permanent(reason))
        }
    }
}
