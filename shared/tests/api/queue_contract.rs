//! One contract for every [`JobQueue`]: the SQLite queue always, SQS against a real AWS
//! emulator (moto_server), including its redrive to the dead-letter queue.

use std::time::Duration;

use mmt_core::{
    adapters::{Database, SqliteJobQueue, sqs::SqsJobQueue},
    domain::TranscriptionId,
    ports::{Job, JobQueue},
};
use mmt_testkit::MotoServer;

const VISIBILITY: Duration = Duration::from_secs(2);

fn job() -> Job {
    Job::Transcribe {
        transcription_id: TranscriptionId::new(),
    }
}

async fn meets_the_contract(queue: &dyn JobQueue) {
    let first = job();
    queue
        .enqueue(&first, Some("corr-42"), Some(&first.dedupe_key()))
        .await
        .unwrap();

    // A receive leases the message, with its body, correlation id and receive count.
    let received = queue.receive(10).await.unwrap();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(serde_json::from_str::<Job>(&message.body).unwrap(), first);
    assert_eq!(message.correlation_id.as_deref(), Some("corr-42"));
    assert_eq!(message.receive_count, 1);
    assert!(
        queue.receive(10).await.unwrap().is_empty(),
        "leased messages are hidden"
    );

    // A heartbeat keeps it hidden past the original lease.
    tokio::time::sleep(VISIBILITY / 2).await;
    queue.extend_lease(message, VISIBILITY * 2).await.unwrap();
    tokio::time::sleep(VISIBILITY).await;
    assert!(
        queue.receive(10).await.unwrap().is_empty(),
        "the heartbeat kept the lease"
    );

    // Retry later: it comes back, counted as a second receive.
    queue.retry_later(message, Duration::ZERO).await.unwrap();
    let again = queue.receive(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);

    // Ack: gone for good.
    queue.ack(&again[0]).await.unwrap();
    tokio::time::sleep(VISIBILITY + Duration::from_millis(500)).await;
    assert!(
        queue.receive(10).await.unwrap().is_empty(),
        "acked messages never return"
    );

    // Dead letter: kept aside, not redelivered.
    let doomed = job();
    queue.enqueue(&doomed, None, None).await.unwrap();
    let received = queue.receive(1).await.unwrap();
    queue.dead_letter(&received[0], "unreadable").await.unwrap();
    tokio::time::sleep(VISIBILITY + Duration::from_millis(500)).await;
    assert!(queue.receive(10).await.unwrap().is_empty());
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_lettered),
        (0, 0, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn the_sqlite_queue_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("q.db")).unwrap();
    meets_the_contract(&SqliteJobQueue::new(db, "transcribe", VISIBILITY, 5)).await;
}

async fn sqs_client(moto: &MotoServer) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .endpoint_url(moto.endpoint())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A queue with a dead-letter queue and the redrive policy Terraform gives it.
async fn queue_pair(
    client: &aws_sdk_sqs::Client,
    name: &str,
    max_receives: u32,
) -> (String, String) {
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap();
    let dlq_url = dlq.queue_url().unwrap().to_owned();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let queue = client
        .create_queue()
        .queue_name(name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#),
        )
        .send()
        .await
        .unwrap();
    (queue.queue_url().unwrap().to_owned(), dlq_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_queue_meets_the_contract_on_the_emulator() {
    let moto = MotoServer::start()
        .await
        .expect("moto_server (make setup installs it)");
    let client = sqs_client(&moto).await;
    let (url, dlq) = queue_pair(&client, "mmt-transcribe", 5).await;
    meets_the_contract(&SqsJobQueue::new(
        client,
        url,
        dlq,
        VISIBILITY,
        Duration::ZERO,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_never_acked_is_redriven_to_the_dlq_after_max_receive_count() {
    let moto = MotoServer::start()
        .await
        .expect("moto_server (make setup installs it)");
    let client = sqs_client(&moto).await;
    let (url, dlq) = queue_pair(&client, "mmt-poison", 2).await;
    let queue = SqsJobQueue::new(client, url, dlq, Duration::from_secs(1), Duration::ZERO);
    let poison = job();
    queue.enqueue(&poison, None, None).await.unwrap();
    let healthy = job();
    queue.enqueue(&healthy, None, None).await.unwrap();

    // Each round, the healthy message is acked and the poisoned one is left to time out.
    let mut healthy_done = false;
    for _ in 0..4 {
        for message in queue.receive(10).await.unwrap() {
            if serde_json::from_str::<Job>(&message.body).unwrap() == healthy {
                queue.ack(&message).await.unwrap();
                healthy_done = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    assert!(healthy_done);
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_lettered),
        (0, 0, 1),
        "{stats:?}"
    );
}
