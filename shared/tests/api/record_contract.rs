//! One contract for every [`RecordStore`]: SQLite always, DynamoDB against a real AWS emulator
//! (moto_server) with the table, index and TTL the adapter documents.

use crate::emulator::Emulator;
use chrono::{Duration, Utc};
use mmt_core::{
    adapters::{
        Database, SqliteAccessLedger, SqliteRecordStore, SqliteVocabularyStore,
        dynamodb::DynamoRecordStore, dynamodb_access::DynamoAccessLedger,
        dynamodb_vocabulary::DynamoVocabularyStore,
    },
    domain::{
        AudioFormat, EngineKind, OwnerId, Segment, Status, Task, Transcript, TranscriptionId,
        TranscriptionRecord, TranscriptionRequest, Vocabulary,
    },
    ports::{AccessLedger, Claim, PageRequest, RecordStore, VocabularyStore},
};

fn record(owner: &OwnerId, minutes_ago: i64) -> TranscriptionRecord {
    TranscriptionRecord::new_queued(
        TranscriptionId::new(),
        owner.clone(),
        TranscriptionRequest {
            engine: EngineKind::Local,
            task: Task::Transcribe,
            language: None,
            prompt: Some("metformin".into()),
        },
        Some("visit.wav".into()),
        AudioFormat::Wav,
        1234,
        Utc::now() - Duration::minutes(minutes_ago),
    )
}

fn transcript(text: &str) -> Transcript {
    Transcript {
        text: text.into(),
        segments: vec![Segment::new(0.0, 1.0, text)],
        language: Some("en".into()),
        language_probability: Some(0.97),
        duration_s: Some(1.0),
        ..Default::default()
    }
}

async fn meets_the_contract(store: &dyn RecordStore) {
    store.ping().await.unwrap();
    let alice = OwnerId::new_guest();
    let bob = OwnerId::new_guest();

    // Insert and read back exactly.
    let first = record(&alice, 30);
    store.insert(&first).await.unwrap();
    assert_eq!(store.get(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.get(&TranscriptionId::new()).await.unwrap(), None);

    // Listing: newest first, paginated, owner only.
    let mut mine = vec![first.clone()];
    for minutes in [20, 10, 5, 1] {
        let r = record(&alice, minutes);
        store.insert(&r).await.unwrap();
        mine.push(r);
    }
    let bobs = record(&bob, 2);
    store.insert(&bobs).await.unwrap();
    mine.reverse();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_by_owner(
                &alice,
                &PageRequest {
                    limit: 2,
                    after: after.clone(),
                },
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|r| r.id));
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen, mine.iter().map(|r| r.id).collect::<Vec<_>>());
    assert_eq!(
        store
            .list_by_owner(
                &bob,
                &PageRequest {
                    limit: 10,
                    after: None
                }
            )
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Transitions are conditional: nothing moves a final record.
    let now = Utc::now();
    assert!(
        store
            .claim(&first.id, &claim("message-1", now))
            .await
            .unwrap()
    );
    store.set_progress(&first.id, 40, now).await.unwrap();
    assert_eq!(store.get(&first.id).await.unwrap().unwrap().progress, 40);
    assert!(
        store
            .complete(&first.id, &transcript("first result"), now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete(&first.id, &transcript("late duplicate"), now)
            .await
            .unwrap()
    );
    assert!(!store.fail(&first.id, "stale failure", now).await.unwrap());
    assert!(
        !store
            .claim(&first.id, &claim("message-1", now))
            .await
            .unwrap()
    );
    store.set_progress(&first.id, 10, now).await.unwrap();
    let done = store.get(&first.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.transcript.unwrap().text, "first result");
    assert_eq!((done.attempts, done.progress, done.error), (1, 100, None));
    assert_eq!(done.language.as_deref(), Some("en"));

    let second = &mine[0];
    assert!(store.fail(&second.id, "bad audio", now).await.unwrap());
    assert!(
        !store
            .complete(&second.id, &transcript("too late"), now)
            .await
            .unwrap()
    );
    let failed = store.get(&second.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (Status::Failed, Some("bad audio"))
    );
    assert!(
        !store
            .claim(&TranscriptionId::new(), &claim("message-1", now))
            .await
            .unwrap(),
        "missing records do not appear"
    );

    // A direct upload: awaiting until confirmed once, with the sniffed format and real size;
    // a worker cannot start it early, and a confirmation never moves a later status back.
    let direct = TranscriptionRecord::new_awaiting_upload(
        TranscriptionId::new(),
        alice.clone(),
        TranscriptionRequest {
            engine: EngineKind::Cloud,
            task: Task::Translate,
            language: Some("es".into()),
            prompt: None,
        },
        None,
        AudioFormat::Mp3,
        5000,
        Utc::now(),
    );
    store.insert(&direct).await.unwrap();
    assert_eq!(
        store.get(&direct.id).await.unwrap().as_ref(),
        Some(&direct),
        "a translation request reads back with its task and language"
    );
    assert!(
        !store
            .claim(&direct.id, &claim("message-2", now))
            .await
            .unwrap()
    );
    assert!(
        store
            .confirm_upload(&direct.id, AudioFormat::Wav, 4321, now)
            .await
            .unwrap()
    );
    let confirmed = store.get(&direct.id).await.unwrap().unwrap();
    assert_eq!(
        (
            confirmed.status,
            confirmed.audio_format,
            confirmed.size_bytes
        ),
        (Status::Queued, AudioFormat::Wav, 4321)
    );
    assert!(
        store
            .claim(&direct.id, &claim("message-2", now))
            .await
            .unwrap()
    );
    assert!(
        !store
            .confirm_upload(&direct.id, AudioFormat::Mp3, 1, now)
            .await
            .unwrap(),
        "a redelivered upload notice does not reset a running job"
    );
    assert_eq!(
        store.get(&direct.id).await.unwrap().unwrap().status,
        Status::Processing
    );
    store.delete(&direct.id).await.unwrap();

    // A claim is held: a duplicate message is refused while the holder is alive, the
    // holder's own redelivery may claim again, and anyone may once the claim is stale.
    let claimed = record(&alice, 0);
    store.insert(&claimed).await.unwrap();
    assert!(
        store
            .claim(&claimed.id, &claim("holder", now))
            .await
            .unwrap()
    );
    let later = now + Duration::seconds(5);
    assert!(
        !store
            .claim(&claimed.id, &claim("duplicate", later))
            .await
            .unwrap(),
        "a duplicate message is refused while the claim is live"
    );
    assert!(
        store
            .claim(&claimed.id, &claim("holder", later))
            .await
            .unwrap(),
        "the holder's redelivery claims again"
    );
    let much_later = later + Duration::minutes(30);
    assert!(
        store
            .claim(&claimed.id, &claim("rescuer", much_later))
            .await
            .unwrap(),
        "a stale claim can be taken over"
    );
    assert_eq!(
        store.get(&claimed.id).await.unwrap().unwrap().attempts,
        3,
        "every successful claim counts an attempt"
    );

    // The reconciler's step: `processing` records untouched since the cut-off fail; a record
    // whose worker renewed its claim (progress) is left alone.
    let renewed = record(&alice, 0);
    store.insert(&renewed).await.unwrap();
    assert!(
        store
            .claim(&renewed.id, &claim("worker", much_later))
            .await
            .unwrap()
    );
    let cutoff = much_later + Duration::minutes(1);
    store
        .set_progress(&renewed.id, 50, cutoff + Duration::seconds(1))
        .await
        .unwrap();
    let failed = store
        .fail_stale(cutoff, "abandoned", cutoff + Duration::minutes(1), 10)
        .await
        .unwrap();
    assert_eq!(failed, vec![claimed.id], "only the abandoned one");
    let abandoned = store.get(&claimed.id).await.unwrap().unwrap();
    assert_eq!(
        (abandoned.status, abandoned.error.as_deref()),
        (Status::Failed, Some("abandoned"))
    );
    assert_eq!(
        store.get(&renewed.id).await.unwrap().unwrap().status,
        Status::Processing
    );
    store.delete(&claimed.id).await.unwrap();
    store.delete(&renewed.id).await.unwrap();

    // Retention reads oldest first; delete reports whether something went.
    let old = store
        .created_before(Utc::now() - Duration::minutes(15), 10)
        .await
        .unwrap();
    assert_eq!(
        old.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![first.id, mine[3].id]
    );
    assert_eq!(old[0].1, first.audio_key);
    assert!(store.delete(&first.id).await.unwrap());
    assert!(!store.delete(&first.id).await.unwrap());
    assert_eq!(store.get(&first.id).await.unwrap(), None);

    // Scanning pages through every record once, whoever owns it.
    let mut scanned = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan(after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        scanned.extend(page.iter().map(|r| r.id));
        match page.last() {
            Some(last) if page.len() == 2 => after = Some(last.id),
            _ => break,
        }
    }
    let mut expected = Vec::new();
    for candidate in mine.iter().chain([&bobs, &direct]) {
        if store.get(&candidate.id).await.unwrap().is_some() {
            expected.push(candidate.id);
        }
    }
    assert!(expected.len() >= 4, "{expected:?}");
    scanned.sort();
    expected.sort();
    assert_eq!(scanned, expected);

    // Rewriting PHI fields: applied to an unchanged record, refused once it has moved on.
    let mut fresh = store.get(&mine[1].id).await.unwrap().unwrap();
    fresh.prompt = Some("rewritten prompt".into());
    fresh.file_name = None;
    assert!(store.rewrite_phi(&fresh).await.unwrap());
    let stored = store.get(&fresh.id).await.unwrap().unwrap();
    assert_eq!(stored.prompt.as_deref(), Some("rewritten prompt"));
    assert_eq!(stored.file_name, None);
    assert_eq!(stored.status, fresh.status, "nothing else changes");
    let stale = fresh.clone();
    assert!(
        store
            .claim(&fresh.id, &claim("message-3", Utc::now()))
            .await
            .unwrap()
    );
    let mut late = stale;
    late.prompt = Some("stale write".into());
    assert!(
        !store.rewrite_phi(&late).await.unwrap(),
        "changed since it was read"
    );
    assert_eq!(
        store
            .get(&fresh.id)
            .await
            .unwrap()
            .unwrap()
            .prompt
            .as_deref(),
        Some("rewritten prompt")
    );
    let mut gone = record(&alice, 0);
    gone.prompt = Some("never stored".into());
    assert!(
        !store.rewrite_phi(&gone).await.unwrap(),
        "a missing record is not created"
    );
    assert_eq!(store.get(&gone.id).await.unwrap(), None);
    edits_are_compare_and_swap(store, &alice).await;
    store.purge_residue().await.unwrap();
}

/// `revise`: a completed record's transcript changes only if nothing changed it since it was
/// read, and the record's `updated_at` moves on, so the loser of two edits is told.
async fn edits_are_compare_and_swap(store: &dyn RecordStore, owner: &OwnerId) {
    let r = record(owner, 0);
    store.insert(&r).await.unwrap();
    let mut queued = r.clone();
    queued.updated_at = r.updated_at + Duration::seconds(1);
    assert!(
        !store.revise(&queued, r.updated_at).await.unwrap(),
        "only a completed record is edited"
    );
    assert!(
        store
            .claim(&r.id, &claim("m-edit", Utc::now()))
            .await
            .unwrap()
    );
    assert!(
        store
            .complete(&r.id, &transcript("as spoken"), Utc::now())
            .await
            .unwrap()
    );
    let read = store.get(&r.id).await.unwrap().unwrap();
    let mut first = read.clone();
    first.transcript = Some(transcript("as corrected"));
    first.updated_at = read.updated_at + Duration::seconds(1);
    let mut second = read.clone();
    second.transcript = Some(transcript("a rival correction"));
    second.updated_at = read.updated_at + Duration::seconds(2);
    assert!(store.revise(&first, read.updated_at).await.unwrap());
    assert!(
        !store.revise(&second, read.updated_at).await.unwrap(),
        "an edit of a version already replaced loses"
    );
    let stored = store.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.transcript.unwrap().text, "as corrected");
    assert_eq!(stored.updated_at, first.updated_at);
    assert_eq!(stored.owner, *owner, "nothing else changes");
}

#[tokio::test]
async fn the_sqlite_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    meets_the_contract(&SqliteRecordStore::new(
        Database::open(&dir.path().join("r.db")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn the_encrypting_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let keys =
        mmt_core::crypto::KeyRing::parse("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "k1")
            .unwrap();
    meets_the_contract(
        &mmt_core::adapters::encrypted_records::EncryptedRecordStore::new(
            std::sync::Arc::new(SqliteRecordStore::new(
                Database::open(&dir.path().join("r.db")).unwrap(),
            )),
            std::sync::Arc::new(keys),
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_store_meets_the_contract_on_the_emulator() {
    let aws = Emulator::start().await;
    aws.records_table("mmt-records").await;
    let client = aws.dynamodb.clone();

    let store = DynamoRecordStore::new(client.clone(), "mmt-records", Some(Duration::days(30)));
    meets_the_contract(&store).await;

    // The TTL attribute is set from the retention period.
    let r = record(&OwnerId::new_guest(), 0);
    store.insert(&r).await.unwrap();
    let item = client
        .get_item()
        .table_name("mmt-records")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{}", r.id)),
        )
        .send()
        .await
        .unwrap();
    let expires: i64 = item.item().unwrap()["expires_at"]
        .as_n()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(expires, (r.created_at + Duration::days(30)).timestamp());

    // A missing table is not ready.
    let nowhere = DynamoRecordStore::new(client, "no-such-table", None);
    assert!(nowhere.ping().await.is_err());
}

/// A claim by `by` at `now`, treating claims untouched for ten minutes as abandoned.
fn claim(by: &str, now: chrono::DateTime<Utc>) -> Claim {
    Claim {
        by: by.to_owned(),
        now,
        stale_before: now - Duration::minutes(10),
    }
}

/// One contract for every [`VocabularyStore`]: per owner, replaced whole, cleared by an empty
/// list, sealed at rest with keys, and resealed under a new primary key.
async fn vocabulary_meets_the_contract(
    store: &dyn VocabularyStore,
    rotated: &dyn VocabularyStore,
    raw: &(dyn Fn() -> futures::future::BoxFuture<'static, String> + Sync),
) {
    let (alice, bob) = (OwnerId::new_guest(), OwnerId::new_guest());
    assert_eq!(store.get(&alice).await.unwrap(), None);
    let first = Vocabulary::new(["Metformin", "Dr. Vexworth"]).unwrap();
    store.put(&alice, &first, Utc::now()).await.unwrap();
    assert_eq!(store.get(&alice).await.unwrap(), Some(first));
    assert_eq!(store.get(&bob).await.unwrap(), None, "per owner");
    let second = Vocabulary::new(["Ozempic"]).unwrap();
    store.put(&alice, &second, Utc::now()).await.unwrap();
    assert_eq!(store.get(&alice).await.unwrap(), Some(second.clone()));
    assert!(!raw().await.contains("Vexworth"), "sealed at rest");

    // A new primary key: resealed once, then readable without the old key's help.
    store.put(&bob, &second, Utc::now()).await.unwrap();
    assert_eq!(rotated.reseal_all().await.unwrap(), 2);
    assert_eq!(rotated.reseal_all().await.unwrap(), 0, "nothing left");
    assert_eq!(rotated.get(&alice).await.unwrap(), Some(second));

    store
        .put(&alice, &Vocabulary::default(), Utc::now())
        .await
        .unwrap();
    assert_eq!(store.get(&alice).await.unwrap(), None, "cleared");
}

const K1: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const K2: &str = "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn ring(keys: &str, primary: &str) -> Option<std::sync::Arc<mmt_core::crypto::KeyRing>> {
    Some(std::sync::Arc::new(
        mmt_core::crypto::KeyRing::parse(keys, primary).unwrap(),
    ))
}

#[tokio::test]
async fn the_sqlite_vocabulary_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("r.db")).unwrap();
    let store = SqliteVocabularyStore::new(db.clone(), ring(K1, "k1"));
    let rotated = SqliteVocabularyStore::new(db, ring(&format!("{K1},{K2}"), "k2"));
    let path = dir.path().to_owned();
    let raw = move || -> futures::future::BoxFuture<'static, String> {
        let path = path.clone();
        Box::pin(async move {
            ["r.db", "r.db-wal"]
                .iter()
                .filter_map(|f| std::fs::read(path.join(f)).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect()
        })
    };
    vocabulary_meets_the_contract(&store, &rotated, &raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_vocabulary_store_shares_the_records_table_unseen_by_record_reads() {
    let aws = Emulator::start().await;
    aws.records_table("mmt-records").await;
    let client = aws.dynamodb.clone();
    let store = DynamoVocabularyStore::new(client.clone(), "mmt-records", ring(K1, "k1"));
    let rotated = DynamoVocabularyStore::new(
        client.clone(),
        "mmt-records",
        ring(&format!("{K1},{K2}"), "k2"),
    );
    let scan_client = client.clone();
    let raw = move || -> futures::future::BoxFuture<'static, String> {
        let client = scan_client.clone();
        Box::pin(async move {
            let items = client
                .scan()
                .table_name("mmt-records")
                .send()
                .await
                .unwrap();
            format!("{:?}", items.items())
        })
    };
    vocabulary_meets_the_contract(&store, &rotated, &raw).await;

    // Beside records: listings, scans and sweeps see records only.
    let records = DynamoRecordStore::new(client, "mmt-records", None);
    let owner = OwnerId::new_guest();
    store
        .put(&owner, &Vocabulary::new(["Ozempic"]).unwrap(), Utc::now())
        .await
        .unwrap();
    let r = record(&owner, 0);
    records.insert(&r).await.unwrap();
    let page = records
        .list_by_owner(
            &owner,
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let scanned = records.scan(None, 100).await.unwrap();
    assert_eq!(scanned.len(), 1, "the scan reads records only");
    assert_eq!(scanned[0].id, r.id);
    let old = records
        .created_before(Utc::now() + Duration::minutes(1), 100)
        .await
        .unwrap();
    assert_eq!(old.len(), 1);
}

/// Revocations and counters, the same on every backend (security review, items 4 and 5).
async fn access_ledger_meets_the_contract(ledger: &dyn AccessLedger) {
    let (alice, bob) = (OwnerId::new_guest(), OwnerId::new_guest());
    let now = Utc::now();
    assert!(!ledger.is_revoked("t1", &alice, now).await.unwrap());
    ledger
        .revoke_token("t1", now + Duration::hours(1))
        .await
        .unwrap();
    assert!(ledger.is_revoked("t1", &alice, now).await.unwrap());
    assert!(!ledger.is_revoked("t2", &alice, now).await.unwrap());
    // Signed out everywhere: earlier tokens are refused, later ones and others' are not.
    ledger.revoke_owner(&alice, now).await.unwrap();
    let earlier = now - Duration::seconds(1);
    assert!(ledger.is_revoked("t2", &alice, earlier).await.unwrap());
    let later = now + Duration::seconds(1);
    assert!(!ledger.is_revoked("t3", &alice, later).await.unwrap());
    assert!(!ledger.is_revoked("t2", &bob, earlier).await.unwrap());
    // An older sign-out arriving late does not undo a newer one.
    ledger
        .revoke_owner(&alice, now - Duration::hours(1))
        .await
        .unwrap();
    assert!(ledger.is_revoked("t2", &alice, earlier).await.unwrap());

    // Counters: a window from the first event; counted in it, then started again.
    let minute = std::time::Duration::from_secs(60);
    let first = ledger.increment("k", now, minute).await.unwrap();
    assert_eq!(first.count, 1);
    let window_ends = first.window_ends;
    assert!(
        (window_ends - (now + Duration::minutes(1)))
            .num_milliseconds()
            .abs()
            < 2
    );
    for expected in 2..=3 {
        let counted = ledger
            .increment("k", now + Duration::seconds(10), minute)
            .await
            .unwrap();
        assert_eq!(
            (counted.count, counted.window_ends),
            (expected, window_ends)
        );
    }
    assert_eq!(ledger.count("k", now).await.unwrap().unwrap().count, 3);
    assert_eq!(ledger.count("other", now).await.unwrap(), None);
    let after = window_ends + Duration::seconds(1);
    assert_eq!(
        ledger.count("k", after).await.unwrap(),
        None,
        "its window is over"
    );
    let again = ledger.increment("k", after, minute).await.unwrap();
    assert_eq!(again.count, 1, "a new window starts at one");
    assert!(again.window_ends > window_ends);
    // Counted at once from many tasks: no event is lost.
    let counted =
        futures::future::join_all((0..20).map(|_| ledger.increment("burst", now, minute))).await;
    let mut values: Vec<u64> = counted.into_iter().map(|c| c.unwrap().count).collect();
    values.sort_unstable();
    assert_eq!(values, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_sqlite_access_ledger_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_access(&dir.path().join("access.db")).unwrap();
    access_ledger_meets_the_contract(&SqliteAccessLedger::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_access_ledger_meets_the_contract_unseen_by_record_reads() {
    let aws = Emulator::start().await;
    aws.records_table("mmt-records").await;
    let ledger = DynamoAccessLedger::new(aws.dynamodb.clone(), "mmt-records");
    access_ledger_meets_the_contract(&ledger).await;
    let records = DynamoRecordStore::new(aws.dynamodb.clone(), "mmt-records", None);
    let owner = OwnerId::new_guest();
    ledger.revoke_owner(&owner, Utc::now()).await.unwrap();
    let page = records
        .list_by_owner(
            &owner,
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert!(page.items.is_empty(), "ledger items are not records");
}
