//! `POST /v1/transcriptions/{id}/ehr` end to end: the outbox, the EHR queue, the worker, and a
//! fake OpenEMR that loses answers, fails and throttles.

use std::time::{Duration, Instant};

use mmt_core::{
    auth::Scope,
    domain::OwnerId,
    jobs::{Disposition, run_ehr_once},
};
use mmt_testkit::openemr::{EmrFault, FakeOpenEmr};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with, tone};

const CLIENT_ID: &str = "mmt-client";
const FIRST_REFRESH: &str = "refresh-from-the-one-time-login";
const PATIENT: &str = "946da619-c631-431a-a282-487cd6fb7802";
const ENCOUNTER: &str = "946da61d-6b95-4f8e-abe5-534a25913b71";
const PHRASE: &str = "Patient reports a dry cough for three weeks";

struct Stack {
    app: TestApp,
    emr: FakeOpenEmr,
}

async fn stack(extra: &[(&str, &str)]) -> Stack {
    let emr = FakeOpenEmr::start(CLIENT_ID, FIRST_REFRESH).await.unwrap();
    emr.add_patient(PATIENT, 7, &[(ENCOUNTER, 42)]);
    let base = emr.base_url();
    let mut env = vec![
        ("EHR_TARGET", "openemr"),
        ("OPENEMR_BASE_URL", base.as_str()),
        ("OPENEMR_CLIENT_ID", CLIENT_ID),
        ("OPENEMR_REFRESH_TOKEN", FIRST_REFRESH),
        ("EHR_TIMEOUT_SECS", "1"),
        ("EHR_MAX_ATTEMPTS", "6"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(&env).await;
    app.openai.set_transcript(PHRASE);
    Stack { app, emr }
}

async fn transcribed(app: &TestApp, token: &str) -> String {
    let id = app.upload_wav(token).await;
    app.drain_jobs().await;
    id
}

async fn push(app: &TestApp, token: &str, id: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(&format!("/v1/transcriptions/{id}/ehr")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Runs EHR jobs as they become visible until none is left (retries wait their delay).
async fn drain_ehr(app: &TestApp, within: Duration) -> Vec<Disposition> {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        match run_ehr_once(&app.state).await {
            Some(d) => seen.push(d),
            None => {
                let ehr = app.state.ehr.as_ref().unwrap();
                if ehr
                    .queue
                    .stats()
                    .await
                    .map(|d| d.visible + d.in_flight)
                    .unwrap_or(0)
                    == 0
                {
                    return seen;
                }
                assert!(
                    started.elapsed() < within,
                    "EHR jobs did not settle: {seen:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn body() -> Value {
    json!({"patient_id": PATIENT, "encounter_id": ENCOUNTER})
}

#[tokio::test]
async fn a_push_lands_once_and_asking_again_returns_the_same_delivery() {
    let s = stack(&[]).await;
    let token = s.app.clinician_token("ana");
    let id = transcribed(&s.app, &token).await;

    let (status, delivery) = push(&s.app, &token, &id, body()).await;
    assert_eq!(status, 202, "{delivery}");
    assert_eq!(delivery["status"], "pending");
    assert_eq!(delivery["note_section"], "subjective");
    let (status, again) = push(&s.app, &token, &id, body()).await;
    assert_eq!(
        (status, &again["id"]),
        (200, &delivery["id"]),
        "the same delivery"
    );

    let done = drain_ehr(&s.app, Duration::from_secs(10)).await;
    assert_eq!(done, vec![Disposition::Ack]);
    let (status, list) = s
        .app
        .get_json(&token, &format!("/v1/transcriptions/{id}/ehr"))
        .await;
    assert_eq!(status, 200);
    let deliveries = list["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["status"], "delivered");
    let notes = s.emr.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(deliveries[0]["ehr"]["note_id"], notes[0].id.to_string());
    let text = &notes[0].fields["subjective"];
    assert!(text.starts_with(PHRASE), "{text}");
    assert!(
        text.contains(delivery["id"].as_str().unwrap()),
        "the marker names the delivery"
    );

    // Delivered: asking again still returns it, and writes nothing.
    let (status, again) = push(&s.app, &token, &id, body()).await;
    assert_eq!((status, again["status"].as_str()), (200, Some("delivered")));
    assert!(drain_ehr(&s.app, Duration::from_secs(2)).await.is_empty());
    assert_eq!(s.emr.notes().len(), 1);
}

#[tokio::test]
async fn exactly_one_note_after_a_lost_answer_a_500_a_429_and_a_reset() {
    let s = stack(&[]).await;
    let token = s.app.clinician_token("ana");
    let id = transcribed(&s.app, &token).await;
    s.emr.fail_next_posts([
        EmrFault::ServerError,
        EmrFault::RateLimited { retry_after_s: 1 },
        EmrFault::ConnectionReset,
        EmrFault::CommitThenStall(Duration::from_secs(3)),
    ]);
    let (status, _) = push(&s.app, &token, &id, body()).await;
    assert_eq!(status, 202);
    let outcomes = drain_ehr(&s.app, Duration::from_secs(30)).await;
    assert!(
        matches!(outcomes.last(), Some(Disposition::Ack)),
        "{outcomes:?}"
    );
    assert_eq!(
        s.emr.notes().len(),
        1,
        "exactly one note, whatever happened"
    );
    let (_, list) = s
        .app
        .get_json(&token, &format!("/v1/transcriptions/{id}/ehr"))
        .await;
    let delivery = &list["deliveries"][0];
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(
        delivery["ehr"]["found_existing"], true,
        "the lost answer's note was found"
    );
    assert_eq!(
        delivery["attempts"], 5,
        "500, 429, reset, the lost answer, then the check that found it"
    );

    // Each attempt is on the audit trail, without the note text.
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let events = s
        .app
        .state
        .audit
        .query(&mmt_core::domain::AuditQuery {
            since: chrono::DateTime::parse_from_rfc3339(&since).unwrap().into(),
            until: chrono::Utc::now() + chrono::Duration::seconds(1),
            subject: None,
            record_id: Some(id.parse().unwrap()),
            action: Some(mmt_core::domain::AuditAction::EhrPush),
            limit: 100,
        })
        .await
        .unwrap();
    assert!(
        events.len() >= 6,
        "the request and five attempts: {events:?}"
    );
    let text = format!("{events:?}");
    assert!(
        !text.contains("dry cough") && !text.contains(PATIENT),
        "{text}"
    );
}

#[tokio::test]
async fn throttling_waits_as_asked_and_gives_up_after_the_last_attempt() {
    let s = stack(&[("EHR_MAX_ATTEMPTS", "2")]).await;
    let token = s.app.clinician_token("ana");
    let id = transcribed(&s.app, &token).await;
    s.emr.fail_next_posts([
        EmrFault::ServerError,
        EmrFault::ServerError,
        EmrFault::ServerError,
    ]);
    push(&s.app, &token, &id, body()).await;
    let outcomes = drain_ehr(&s.app, Duration::from_secs(10)).await;
    assert!(
        matches!(outcomes.last(), Some(Disposition::DeadLetter { reason }) if reason.contains("gave up after 2 attempts")),
        "{outcomes:?}"
    );
    let (_, list) = s
        .app
        .get_json(&token, &format!("/v1/transcriptions/{id}/ehr"))
        .await;
    assert_eq!(list["deliveries"][0]["status"], "failed");
    assert!(
        list["deliveries"][0]["error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    assert!(s.emr.notes().is_empty());
    // A failed delivery does not block a new request.
    let (status, retry) = push(&s.app, &token, &id, body()).await;
    assert_eq!((status, retry["status"].as_str()), (202, Some("pending")));
}

#[tokio::test]
async fn a_revoked_login_fails_the_delivery_with_a_clear_reason() {
    let s = stack(&[]).await;
    s.emr.revoke_refresh_token();
    let token = s.app.clinician_token("ana");
    let id = transcribed(&s.app, &token).await;
    push(&s.app, &token, &id, body()).await;
    drain_ehr(&s.app, Duration::from_secs(10)).await;
    let (_, list) = s
        .app
        .get_json(&token, &format!("/v1/transcriptions/{id}/ehr"))
        .await;
    let delivery = &list["deliveries"][0];
    assert_eq!(delivery["status"], "failed");
    assert!(
        delivery["error"]
            .as_str()
            .unwrap()
            .contains("sign in to OpenEMR again"),
        "{delivery}"
    );
}

#[tokio::test]
async fn pushes_are_checked_before_anything_is_queued() {
    let s = stack(&[]).await;
    let ana = s.app.clinician_token("ana");
    let ben = s.app.clinician_token("ben");
    let id = transcribed(&s.app, &ana).await;

    // Someone else's transcription: 404, like a missing one.
    let (status, _) = push(&s.app, &ben, &id, body()).await;
    assert_eq!(status, 404);
    // Guests may not push.
    let guest = s.app.guest_token().await;
    let guest_id = transcribed(&s.app, &guest).await;
    let (status, err) = push(&s.app, &guest, &guest_id, body()).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    // Bad input.
    for bad in [
        json!({"patient_id": "../../etc", "encounter_id": "1"}),
        json!({"patient_id": PATIENT}),
        json!({"patient_id": PATIENT, "encounter_id": ENCOUNTER, "note_section": "summary"}),
        json!({"patient_id": PATIENT, "encounter_id": ENCOUNTER, "target": "epic"}),
        json!({"patient_id": PATIENT, "encounter_id": ENCOUNTER, "extra": 1}),
    ] {
        let (status, _) = push(&s.app, &ana, &id, bad.clone()).await;
        assert!(
            (400..500).contains(&status) && status != 404,
            "{bad}: {status}"
        );
    }
    // Not completed yet.
    let response = s.app.upload(&ana, tone(), "later.wav", &[]).await;
    let queued = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = push(&s.app, &ana, &queued, body()).await;
    assert_eq!(status, 409);
    assert!(
        drain_ehr(&s.app, Duration::from_secs(2)).await.is_empty(),
        "nothing was queued"
    );

    // A numeric patient id is accepted as input and fails with the reason.
    let (status, _) = push(
        &s.app,
        &ana,
        &id,
        json!({"patient_id": "7", "encounter_id": "42"}),
    )
    .await;
    assert_eq!(status, 202);
    drain_ehr(&s.app, Duration::from_secs(5)).await;
    let (_, list) = s
        .app
        .get_json(&ana, &format!("/v1/transcriptions/{id}/ehr"))
        .await;
    assert!(
        list["deliveries"][0]["error"]
            .as_str()
            .unwrap()
            .contains("uuid")
    );
    assert!(s.emr.notes().is_empty());

    // Deleting the transcription removes its deliveries (they hold EHR ids).
    assert_eq!(
        s.app
            .delete(&ana, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        204
    );
    let ehr = s.app.state.ehr.as_ref().unwrap();
    assert!(
        ehr.deliveries
            .for_transcription(&id.parse().unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn without_ehr_target_the_routes_say_so() {
    let app = spawn_app_with(&[]).await;
    let token = app.clinician_token("ana");
    let id = transcribed(&app, &token).await;
    let (status, err) = push(&app, &token, &id, body()).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (501, Some("ehr_not_configured"))
    );
}

#[tokio::test]
async fn with_field_encryption_the_ehr_ids_and_refresh_token_are_sealed_at_rest() {
    let s = stack(&[
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        (
            "ENCRYPTION_KEYS",
            "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
    ])
    .await;
    let token = s.app.clinician_token("ana");
    let id = transcribed(&s.app, &token).await;
    push(&s.app, &token, &id, body()).await;
    drain_ehr(&s.app, Duration::from_secs(10)).await;
    let (_, list) = s
        .app
        .get_json(&token, &format!("/v1/transcriptions/{id}/ehr"))
        .await;
    assert_eq!(list["deliveries"][0]["status"], "delivered");
    assert_eq!(
        list["deliveries"][0]["patient_id"], PATIENT,
        "the owner reads it back"
    );
    let raw: Vec<u8> = ["mmt.db", "mmt.db-wal"]
        .iter()
        .flat_map(|n| std::fs::read(s.app.dir.path().join(n)).unwrap_or_default())
        .collect();
    let holds = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!holds(PATIENT) && !holds(ENCOUNTER), "EHR ids are sealed");
    let refresh = s.emr.current_refresh_token().unwrap();
    assert!(!holds(&refresh), "the refresh token is sealed");
}

#[tokio::test]
async fn an_admin_sees_when_the_openemr_login_needs_renewing() {
    let s = stack(&[]).await;
    let admin = s
        .app
        .state
        .tokens
        .issue(&OwnerId::parse("admin").unwrap(), &[Scope::Admin])
        .unwrap()
        .access_token;
    let (status, view) = s.app.get_json(&admin, "/v1/admin/ehr").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["target"], "openemr");
    assert!(view["connection"].is_null(), "no login used yet");

    let token = s.app.clinician_token("ana");
    let id = transcribed(&s.app, &token).await;
    push(&s.app, &token, &id, body()).await;
    drain_ehr(&s.app, Duration::from_secs(10)).await;
    let (_, view) = s.app.get_json(&admin, "/v1/admin/ehr").await;
    assert_eq!(view["connection"]["state"], "connected");
    let stored = s.emr.current_refresh_token().unwrap();
    assert!(
        !view.to_string().contains(&stored),
        "no secret in the answer"
    );

    s.emr.revoke_refresh_token();
    s.emr.expire_access_tokens();
    let other = transcribed(&s.app, &token).await;
    push(&s.app, &token, &other, body()).await;
    drain_ehr(&s.app, Duration::from_secs(10)).await;
    let (_, view) = s.app.get_json(&admin, "/v1/admin/ehr").await;
    assert_eq!(view["connection"]["state"], "needs_login", "{view}");
    assert!(
        view["connection"]["reason"]
            .as_str()
            .unwrap()
            .contains("revoked or expired")
    );
    // Clinicians do not see it.
    assert_eq!(s.app.get(&token, "/v1/admin/ehr").await.status(), 403);
}

/// PHI masking (security review, item 10) is for display only: with `MASK_PHI` on, the API
/// and downloads show `[NAME]`, `[DATE]`, `[ID]`…, `mask=none` shows the transcript as spoken,
/// the store keeps it as spoken, and the EHR receives it unmasked.
#[tokio::test]
async fn masked_for_display_but_stored_and_pushed_as_spoken() {
    const SPOKEN: &str =
        "Mrs. Valentina Ortega, MRN 448812, born on March 3rd, 1956, call (555) 201-7788.";
    let s = stack(&[("MASK_PHI", "true")]).await;
    s.app.openai.set_transcript(SPOKEN);
    let token = s.app.clinician_token("ana");
    let id = transcribed(&s.app, &token).await;

    let (_, shown) = s
        .app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(
        shown["text"],
        "Mrs. [NAME], MRN [ID], born on [DATE], call [PHONE]."
    );
    assert!(shown["file_name"].is_null(), "{shown}");
    for segment in shown["segments"].as_array().unwrap() {
        assert!(
            !segment["text"].as_str().unwrap().contains("Ortega"),
            "{segment}"
        );
    }
    let download = s
        .app
        .get(
            &token,
            &format!("/v1/transcriptions/{id}/transcript?format=srt"),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        download.contains("[NAME]") && !download.contains("448812"),
        "{download}"
    );
    let (_, listed) = s.app.get_json(&token, "/v1/transcriptions").await;
    assert!(listed["items"][0]["file_name"].is_null(), "{listed}");

    let (_, unmasked) = s
        .app
        .get_json(&token, &format!("/v1/transcriptions/{id}?mask=none"))
        .await;
    assert_eq!(unmasked["text"], SPOKEN);
    let stored = s
        .app
        .state
        .records
        .get(&id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.transcript.unwrap().text, SPOKEN);
    let (status, _) = s
        .app
        .get_json(&token, &format!("/v1/transcriptions/{id}?mask=everything"))
        .await;
    assert_eq!(status, 400);

    let (status, delivery) = push(&s.app, &token, &id, body()).await;
    assert_eq!(status, 202, "{delivery}");
    drain_ehr(&s.app, Duration::from_secs(10)).await;
    let notes = s.emr.notes();
    assert!(
        notes[0].fields["subjective"].starts_with(SPOKEN),
        "the EHR gets it as spoken"
    );
}

/// Key rotation reseals the EHR outbox and the connection's refresh token too (security
/// review, item 11): once it has run, the old key can leave the ring and the deliveries still
/// read, and the next push still signs in with the rotated refresh token.
#[tokio::test]
async fn key_rotation_reseals_the_ehr_outbox_and_the_login() {
    const K1: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const K2: &str = "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let s = stack(&[
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        ("ENCRYPTION_KEYS", K1),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
    ])
    .await;
    let token = s.app.clinician_token("ana");
    let id = transcribed(&s.app, &token).await;
    push(&s.app, &token, &id, body()).await;
    drain_ehr(&s.app, Duration::from_secs(10)).await;

    // The same data directory with k2 added and primary: rotate.
    let dir = s.app.dir.path().display().to_string();
    let base = s.emr.base_url();
    let ehr = [
        ("EHR_TARGET", "openemr"),
        ("OPENEMR_BASE_URL", base.as_str()),
        ("OPENEMR_CLIENT_ID", CLIENT_ID),
        ("OPENEMR_REFRESH_TOKEN", FIRST_REFRESH),
        ("DATA_DIR", dir.as_str()),
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k2"),
    ];
    let both = format!("{K1},{K2}");
    let mut rotating = ehr.to_vec();
    rotating.push(("ENCRYPTION_KEYS", both.as_str()));
    let rotating = spawn_app_with(&rotating).await;
    let report = rotating
        .state
        .key_rotation
        .as_ref()
        .unwrap()
        .run(100, |_| {})
        .await
        .unwrap();
    assert_eq!(
        report.ehr_resealed, 2,
        "the delivery and the login: {report:?}"
    );

    // Without k1, everything still reads: the delivery, and the login for a new push.
    let mut only_k2 = ehr.to_vec();
    only_k2.push(("ENCRYPTION_KEYS", K2));
    let after = spawn_app_with(&only_k2).await;
    after.openai.set_transcript(PHRASE);
    let token = after.clinician_token("ana");
    let (status, list) = after
        .get_json(&token, &format!("/v1/transcriptions/{id}/ehr"))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["deliveries"][0]["patient_id"], PATIENT);
    let second = transcribed(&after, &token).await;
    let (status, delivery) = push(&after, &token, &second, body()).await;
    assert_eq!(status, 202, "{delivery}");
    assert_eq!(
        drain_ehr(&after, Duration::from_secs(10)).await,
        vec![Disposition::Ack],
        "signed in with the resealed refresh token"
    );
}
