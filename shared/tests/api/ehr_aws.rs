//! EHR push on the serverless stack, on the emulator: the outbox and the connection in their
//! DynamoDB table, jobs on their SQS queue, the `ehr-push` function's SQS handler doing the
//! deliveries, the fake OpenEMR losing an answer.

use std::time::Duration;

use lambda_runtime::{Context, LambdaEvent};
use mmt_core::{
    adapters::dynamodb_ehr::DynamoEhrStore,
    domain::{EhrDelivery, EhrReceipt, NoteSection, OwnerId, TranscriptionId},
    entrypoints::lambda::handle_queue_batch,
    ports::{ConnectionState, DeliveryStore, EhrConnectionStore, Resealable},
};
use mmt_testkit::openemr::{EmrFault, FakeOpenEmr};
use serde_json::{Value, json};

use crate::{
    emulator::{Emulator, sqs_event},
    helpers::{spawn_app_on_aws, tone},
};

const PATIENT: &str = "946da619-c631-431a-a282-487cd6fb7802";
const ENCOUNTER: &str = "946da61d-6b95-4f8e-abe5-534a25913b71";
const K1: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_runs_through_the_ehr_queue_and_lands_once_after_a_lost_answer() {
    let aws = Emulator::start().await;
    let deployment = aws.deployment(3, 30).await;
    aws.ehr_table("mmt-ehr").await;
    let (ehr_queue, ehr_dlq) = aws.queue_pair("mmt-ehr", 3, 1).await;
    let emr = FakeOpenEmr::start("mmt-client", "first-refresh")
        .await
        .unwrap();
    emr.add_patient(PATIENT, 7, &[(ENCOUNTER, 42)]);
    let base = emr.base_url();
    let mut env: Vec<(&str, String)> = deployment.env();
    env.extend([
        ("EHR_TARGET", "openemr".to_owned()),
        ("OPENEMR_BASE_URL", base),
        ("OPENEMR_CLIENT_ID", "mmt-client".into()),
        ("OPENEMR_REFRESH_TOKEN", "first-refresh".into()),
        ("EHR_TABLE", "mmt-ehr".into()),
        ("SQS_EHR_QUEUE_URL", ehr_queue.clone()),
        ("SQS_EHR_DLQ_URL", ehr_dlq),
        ("EHR_TIMEOUT_SECS", "1".into()),
        ("EHR_MAX_ATTEMPTS", "3".into()),
        ("ENABLE_FIELD_ENCRYPTION", "1".into()),
        ("ENCRYPTION_KEYS", K1.into()),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1".into()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_on_aws(&env, aws.sdk.clone()).await;
    app.openai
        .set_transcript("Patient reports knee pain after a fall");
    let token = app.clinician_token("ana");
    let response = app.upload(&token, tone(), "knee.wav", &[]).await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_jobs().await;

    emr.fail_next_posts([EmrFault::CommitThenStall(Duration::from_secs(3))]);
    let response = app
        .client
        .post(app.url(&format!("/v1/transcriptions/{id}/ehr")))
        .bearer_auth(&token)
        .json(&json!({"patient_id": PATIENT, "encounter_id": ENCOUNTER}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    // What the event source mapping does: receive, invoke, delete what did not fail.
    let mut invocations = 0;
    loop {
        let messages = aws.receive(&ehr_queue).await;
        if messages.is_empty() {
            let (_, list) = app
                .get_json(&token, &format!("/v1/transcriptions/{id}/ehr"))
                .await;
            if list["deliveries"][0]["status"] != "pending" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        invocations += 1;
        assert!(invocations < 10, "the delivery did not settle");
        let answer = handle_queue_batch(
            &app.state,
            mmt_core::jobs::JobKind::EhrPush,
            LambdaEvent::new(sqs_event(&messages), Context::default()),
        )
        .await
        .unwrap();
        for m in &messages {
            let failed = answer
                .batch_item_failures
                .iter()
                .any(|f| Some(f.item_identifier.as_str()) == m.message_id());
            if !failed {
                let _ = aws
                    .sqs
                    .delete_message()
                    .queue_url(&ehr_queue)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await;
            }
        }
    }
    assert_eq!(
        invocations, 2,
        "the lost answer, then the retry that found the note"
    );
    assert_eq!(emr.notes().len(), 1);
    let (_, list) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}/ehr"))
        .await;
    let delivery = &list["deliveries"][0];
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["ehr"]["found_existing"], true);
    assert_eq!(delivery["patient_id"], PATIENT);

    // At rest in DynamoDB: the EHR ids and the refresh token are sealed.
    let items = aws
        .dynamodb
        .scan()
        .table_name("mmt-ehr")
        .send()
        .await
        .unwrap();
    let dump = format!("{:?}", items.items());
    assert!(
        !dump.contains(PATIENT) && !dump.contains(ENCOUNTER),
        "{dump}"
    );
    assert!(!dump.contains(&emr.current_refresh_token().unwrap()));
    assert!(dump.contains("mmt:v1:k1:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_outbox_moves_only_pending_deliveries_and_rotates_by_compare_and_swap() {
    let aws = Emulator::start().await;
    aws.ehr_table("mmt-ehr").await;
    let store = DynamoEhrStore::new(aws.dynamodb.clone(), "mmt-ehr", None);
    let transcription = TranscriptionId::new();
    let first = EhrDelivery::new_pending(
        transcription,
        OwnerId::for_user("ana").unwrap(),
        "openemr",
        PATIENT.into(),
        ENCOUNTER.into(),
        NoteSection::Plan,
        chrono::Utc::now(),
    );
    store.insert(&first).await.unwrap();
    assert!(store.insert(&first).await.is_err(), "ids are unique");
    assert_eq!(store.get(&first.id).await.unwrap(), Some(first.clone()));
    let now = chrono::Utc::now();
    assert!(store.record_attempt(&first.id, now).await.unwrap());
    let receipt = EhrReceipt {
        note_id: "17".into(),
        form_id: Some("18".into()),
        found_existing: false,
    };
    assert!(
        store
            .mark_delivered(&first.id, &receipt, now)
            .await
            .unwrap()
    );
    assert!(
        !store.mark_failed(&first.id, "late", now).await.unwrap(),
        "final stays final"
    );
    assert!(!store.record_attempt(&first.id, now).await.unwrap());
    let stored = store.get(&first.id).await.unwrap().unwrap();
    assert_eq!((stored.attempts, stored.receipt), (1, Some(receipt)));

    let second = EhrDelivery::new_pending(
        transcription,
        OwnerId::for_user("ana").unwrap(),
        "openemr",
        PATIENT.into(),
        "43".into(),
        NoteSection::Subjective,
        chrono::Utc::now(),
    );
    store.insert(&second).await.unwrap();
    assert!(store.mark_failed(&second.id, "refused", now).await.unwrap());
    let both = store.for_transcription(&transcription).await.unwrap();
    assert_eq!(
        both.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![first.id, second.id]
    );
    store
        .delete_for_transcription(&transcription)
        .await
        .unwrap();
    assert!(
        store
            .for_transcription(&transcription)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(store.load("openemr").await.unwrap(), None);
    assert!(store.rotate("openemr", None, "r1").await.unwrap());
    assert!(!store.rotate("openemr", None, "r-other").await.unwrap());
    assert!(
        !store
            .rotate("openemr", Some("stale"), "r-other")
            .await
            .unwrap()
    );
    assert!(store.rotate("openemr", Some("r1"), "r2").await.unwrap());
    let needs = ConnectionState::NeedsLogin {
        reason: "invalid_grant".into(),
    };
    store.set_state("openemr", &needs).await.unwrap();
    assert_eq!(
        store.load("openemr").await.unwrap(),
        Some(("r2".into(), needs))
    );
}

/// Key rotation on DynamoDB (security review, item 11): the outbox's patient and encounter ids
/// and the login's refresh token sealed under an old key are sealed again under the primary,
/// and then read without the old key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_reseals_the_dynamodb_outbox_and_login() {
    const K2: &str = "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let ring = |keys: &str, primary: &str| {
        Some(std::sync::Arc::new(
            mmt_core::crypto::KeyRing::parse(keys, primary).unwrap(),
        ))
    };
    let aws = Emulator::start().await;
    aws.ehr_table("mmt-ehr").await;
    let old = DynamoEhrStore::new(aws.dynamodb.clone(), "mmt-ehr", ring(K1, "k1"));
    let delivery = EhrDelivery::new_pending(
        TranscriptionId::new(),
        OwnerId::for_user("ana").unwrap(),
        "openemr",
        PATIENT.into(),
        ENCOUNTER.into(),
        NoteSection::Plan,
        chrono::Utc::now(),
    );
    old.insert(&delivery).await.unwrap();
    assert!(old.rotate("openemr", None, "refresh-1").await.unwrap());

    let rotating = DynamoEhrStore::new(
        aws.dynamodb.clone(),
        "mmt-ehr",
        ring(&format!("{K1},{K2}"), "k2"),
    );
    assert_eq!(rotating.reseal_all().await.unwrap(), 2);
    assert_eq!(
        rotating.reseal_all().await.unwrap(),
        0,
        "nothing left under k1"
    );

    let new = DynamoEhrStore::new(aws.dynamodb.clone(), "mmt-ehr", ring(K2, "k2"));
    assert_eq!(new.get(&delivery.id).await.unwrap(), Some(delivery));
    assert_eq!(
        new.load("openemr").await.unwrap(),
        Some(("refresh-1".into(), ConnectionState::Connected))
    );
}
