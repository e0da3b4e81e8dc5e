//! One contract for every [`AuditLog`]: SQLite, and DynamoDB on the emulator.

use chrono::{Duration, Utc};
use mmt_core::{
    adapters::{Database, SqliteAuditLog, dynamodb_audit::DynamoAuditLog},
    domain::TranscriptionId,
    domain::{AuditAction, AuditEvent, AuditOutcome, AuditQuery, verify_chains},
    ports::AuditLog,
};

use crate::emulator::Emulator;

fn event(action: AuditAction, subject: &str, hours_ago: i64) -> AuditEvent {
    let mut event = AuditEvent::now(action, AuditOutcome::Success, subject);
    event.at -= Duration::hours(hours_ago);
    event
}

async fn meets_the_contract(log: &dyn AuditLog) {
    let record = TranscriptionId::new();
    // Spread over three days, so a query crosses day partitions.
    let events = vec![
        event(AuditAction::Create, "user:ana", 50).on(record),
        event(AuditAction::Read, "user:ana", 30).on(record),
        event(AuditAction::Login, "user:ben", 20),
        event(AuditAction::Read, "guest:x", 3).on(TranscriptionId::new()),
        event(AuditAction::Delete, "user:ana", 1)
            .on(record)
            .detail("audio and record"),
    ];
    // Linked into one writer's hash chain, as the server links what it writes.
    let mut previous = None;
    let events: Vec<AuditEvent> = events
        .into_iter()
        .map(|e| {
            let linked = e.link("writer-1", previous.as_ref());
            previous = linked.chain.clone();
            linked
        })
        .collect();
    for e in &events {
        log.append(e).await.unwrap();
    }
    let query = |since_hours: i64| AuditQuery {
        since: Utc::now() - Duration::hours(since_hours),
        until: Utc::now(),
        subject: None,
        record_id: None,
        action: None,
        limit: 100,
    };
    // Everything in the window, newest first, exactly as written.
    let all = log.query(&query(72)).await.unwrap();
    let mut newest_first = events.clone();
    newest_first.reverse();
    assert_eq!(all, newest_first);
    // The window bounds.
    assert_eq!(log.query(&query(25)).await.unwrap().len(), 3);
    // Filters, alone and together, and the limit.
    let for_record = log
        .query(&AuditQuery {
            record_id: Some(record),
            ..query(72)
        })
        .await
        .unwrap();
    assert_eq!(
        for_record.iter().map(|e| e.action).collect::<Vec<_>>(),
        vec![AuditAction::Delete, AuditAction::Read, AuditAction::Create]
    );
    let reads_by_ana = log
        .query(&AuditQuery {
            subject: Some("user:ana".into()),
            action: Some(AuditAction::Read),
            ..query(72)
        })
        .await
        .unwrap();
    assert_eq!(reads_by_ana, vec![events[1].clone()]);
    let newest_two = log
        .query(&AuditQuery {
            limit: 2,
            ..query(72)
        })
        .await
        .unwrap();
    assert_eq!(newest_two, newest_first[..2].to_vec());
    // The links come back as written: the chain checks out.
    let report = verify_chains(&all);
    assert!(report.intact(), "{report:?}");
    assert_eq!((report.events, report.writers, report.unchained), (5, 1, 0));
}

#[tokio::test]
async fn the_sqlite_log_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_audit(&dir.path().join("audit.db")).unwrap();
    meets_the_contract(&SqliteAuditLog::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_log_meets_the_contract_on_the_emulator() {
    let aws = Emulator::start().await;
    aws.audit_table("mmt-audit").await;
    let log = DynamoAuditLog::new(aws.dynamodb.clone(), "mmt-audit");
    meets_the_contract(&log).await;
    // An event id is never written twice.
    let e = event(AuditAction::Login, "user:ana", 0);
    log.append(&e).await.unwrap();
    assert!(log.append(&e).await.is_err());
}
