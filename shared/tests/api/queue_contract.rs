//! One contract for every [`JobQueue`]: the SQLite queue always, SQS against a real AWS
//! emulator (moto_server), including its redrive to the dead-letter queue.

use std::time::Duration;

use std::sync::Arc;

use mmt_core::{
    adapters::{Database, SqliteJobQueue, sqs::SqsJobQueue},
    domain::TranscriptionId,
    ports::{Job, JobOrigin, JobQueue, ManualClock},
};

use crate::emulator::Emulator;

/// How a contract run moves time: the SQLite queue's clock, or the emulator's SQS clock.
/// Nothing sleeps.
enum Time<'a> {
    Manual(Arc<ManualClock>),
    Emulator(&'a Emulator),
}

impl Time<'_> {
    fn pass(&self, by: Duration) {
        match self {
            Time::Manual(clock) => clock.advance(chrono::Duration::from_std(by).unwrap()),
            Time::Emulator(aws) => aws.advance_sqs_clock(by),
        }
    }
}

const VISIBILITY: Duration = Duration::from_secs(2);

fn job() -> Job {
    Job::Transcribe {
        transcription_id: TranscriptionId::new(),
    }
}

async fn meets_the_contract(queue: &dyn JobQueue, time: Time<'_>) {
    let first = job();
    let origin = JobOrigin {
        correlation_id: Some("corr-42".into()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    };
    queue.enqueue(&first, &origin).await.unwrap();

    // A receive leases the message, with its body, origin and receive count.
    let received = queue.receive(10).await.unwrap();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(serde_json::from_str::<Job>(&message.body).unwrap(), first);
    assert_eq!(message.origin, origin);
    assert_eq!(message.receive_count, 1);
    assert!(
        queue.receive(10).await.unwrap().is_empty(),
        "leased messages are hidden"
    );

    // A heartbeat keeps it hidden past the original lease.
    time.pass(VISIBILITY / 2);
    queue.extend_lease(message, VISIBILITY * 2).await.unwrap();
    time.pass(VISIBILITY);
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
    time.pass(VISIBILITY * 3);
    assert!(
        queue.receive(10).await.unwrap().is_empty(),
        "acked messages never return"
    );

    // Dead letter: kept aside, not redelivered.
    let doomed = job();
    queue.enqueue(&doomed, &JobOrigin::default()).await.unwrap();
    let received = queue.receive(1).await.unwrap();
    queue.dead_letter(&received[0], "unreadable").await.unwrap();
    time.pass(VISIBILITY * 3);
    assert!(queue.receive(10).await.unwrap().is_empty());
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_lettered),
        (0, 0, 1),
        "{stats:?}"
    );

    // Duplicates: two enqueues of the same job are two messages, on every backend. The queue
    // is at least once; the record's claim refuses the duplicate work (`pipeline` tests).
    let twice = job();
    let ids = [
        queue.enqueue(&twice, &JobOrigin::default()).await.unwrap(),
        queue.enqueue(&twice, &JobOrigin::default()).await.unwrap(),
    ];
    assert_ne!(ids[0], ids[1]);
    let mut both = Vec::new();
    for _ in 0..20 {
        both.extend(queue.receive(10).await.unwrap());
        if both.len() >= 2 {
            break;
        }
    }
    assert_eq!(both.len(), 2, "both delivered");
    for message in &both {
        assert_eq!(serde_json::from_str::<Job>(&message.body).unwrap(), twice);
        queue.ack(message).await.unwrap();
    }
}

#[tokio::test]
async fn the_sqlite_queue_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("q.db")).unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let queue = SqliteJobQueue::new(db, "transcribe", VISIBILITY, 5).with_clock(clock.clone());
    meets_the_contract(&queue, Time::Manual(clock)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_queue_meets_the_contract_on_the_emulator() {
    let aws = Emulator::start().await;
    let (url, dlq) = aws.queue_pair("mmt-transcribe", 5, 30).await;
    let queue = SqsJobQueue::new(aws.sqs.clone(), url, dlq, VISIBILITY, Duration::ZERO);
    meets_the_contract(&queue, Time::Emulator(&aws)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_never_acked_is_redriven_to_the_dlq_after_max_receive_count() {
    let aws = Emulator::start().await;
    let (url, dlq) = aws.queue_pair("mmt-poison", 2, 30).await;
    let queue = SqsJobQueue::new(
        aws.sqs.clone(),
        url,
        dlq,
        Duration::from_secs(1),
        Duration::ZERO,
    );
    let poison = job();
    queue.enqueue(&poison, &JobOrigin::default()).await.unwrap();
    let healthy = job();
    queue
        .enqueue(&healthy, &JobOrigin::default())
        .await
        .unwrap();

    // Each round, the healthy message is acked and the poisoned one is left to time out.
    let mut healthy_done = false;
    for _ in 0..4 {
        for message in queue.receive(10).await.unwrap() {
            if serde_json::from_str::<Job>(&message.body).unwrap() == healthy {
                queue.ack(&message).await.unwrap();
                healthy_done = true;
            }
        }
        aws.advance_sqs_clock(Duration::from_millis(1300));
    }
    assert!(healthy_done);
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_lettered),
        (0, 0, 1),
        "{stats:?}"
    );
}
