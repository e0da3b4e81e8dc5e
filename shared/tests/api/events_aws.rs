//! Notifications on AWS: EventBridge events on `EVENT_BUS_NAME`, against the emulator, routed
//! by a rule to an SQS queue as a deployment's integration would route them.

use aws_sdk_eventbridge::types::Target;
use mmt_core::{
    adapters::eventbridge::{EVENT_SOURCE, EventBridgeNotifier},
    domain::{EventKind, Notification, TranscriptionId},
    ports::Notifier,
};
use serde_json::Value;

use crate::{emulator::Emulator, helpers::spawn_app_on_aws};

const BUS: &str = "mmt-events";

/// A bus, and a rule sending every MMT event on it to a queue; the queue's URL.
async fn bus_to_queue(aws: &Emulator) -> String {
    let events = aws_sdk_eventbridge::Client::new(&aws.sdk);
    events.create_event_bus().name(BUS).send().await.unwrap();
    let queue = aws
        .sqs
        .create_queue()
        .queue_name("mmt-integration")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = aws.queue_arn(&queue).await;
    events
        .put_rule()
        .name("mmt-to-integration")
        .event_bus_name(BUS)
        .event_pattern(format!(r#"{{"source": ["{EVENT_SOURCE}"]}}"#))
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("mmt-to-integration")
        .event_bus_name(BUS)
        .targets(Target::builder().id("queue").arn(arn).build().unwrap())
        .send()
        .await
        .unwrap();
    queue
}

fn events_in(messages: &[aws_sdk_sqs::types::Message]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_notification_is_an_eventbridge_event_a_rule_can_route() {
    let aws = Emulator::start().await;
    let queue = bus_to_queue(&aws).await;
    let notifier = EventBridgeNotifier::new(aws_sdk_eventbridge::Client::new(&aws.sdk), BUS.into());
    let id = TranscriptionId::new();
    let notification = Notification::new(EventKind::TranscriptionCompleted, id, chrono::Utc::now());
    let body = notification.body(None).to_string();
    notifier
        .send(&notification.id.to_string(), body.as_bytes())
        .await
        .unwrap();
    let events = events_in(&aws.receive(&queue).await);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["source"], EVENT_SOURCE);
    assert_eq!(events[0]["detail-type"], "transcription.completed");
    assert_eq!(
        events[0]["detail"]["data"]["transcription_id"],
        id.to_string()
    );
    assert_eq!(events[0]["detail"]["id"], notification.id.to_string());
}

#[tokio::test]
async fn a_completed_transcription_reaches_the_bus_without_its_text() {
    let aws = Emulator::start().await;
    let queue = bus_to_queue(&aws).await;
    let app = spawn_app_on_aws(&[("EVENT_BUS_NAME", BUS)], aws.sdk.clone()).await;
    app.openai
        .set_transcript("Valentina Ortega reports a cough for three weeks.");
    let token = app.clinician_token("ana");
    let id = app.upload_wav(&token).await;
    app.drain_jobs().await;
    let events = events_in(&aws.receive(&queue).await);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail-type"], "transcription.completed");
    assert_eq!(events[0]["detail"]["data"]["transcription_id"], id.as_str());
    assert!(
        !events[0].to_string().contains("Ortega"),
        "no PHI on the bus"
    );
    // Both destinations at once is refused: one place to listen.
    let both = mmt_core::config::Config::from_map(
        &[
            ("EVENT_BUS_NAME", BUS),
            ("WEBHOOK_URL", "https://hooks.example.org/mmt"),
            ("WEBHOOK_SECRET", "whsec-0123456789abcdef0123456789abcdef"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    assert!(both.unwrap_err().to_string().contains("not both"));
}
