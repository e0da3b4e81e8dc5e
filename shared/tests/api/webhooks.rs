//! Signed webhooks: a test receiver checks each signature with its own HMAC computation,
//! answers 500 at first (MMT retries with the same id), and sees ids and status only unless
//! the deployment allows the text.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use mmt_testkit::openemr::FakeOpenEmr;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const SECRET: &str = "whsec-0123456789abcdef0123456789abcdef";

#[derive(Default)]
struct Seen {
    /// (id, body, signature valid)
    deliveries: Vec<(String, Value, bool)>,
    /// How many more requests to answer 500.
    fail_next: usize,
}

#[derive(Clone)]
struct Receiver(Arc<Mutex<Seen>>);

/// The receiver's own check, written from the README's description: HMAC-SHA256 under the
/// secret of "{timestamp}.{body}", hex, after `v1=`; the timestamp within five minutes.
fn signature_is_valid(headers: &HeaderMap, body: &[u8]) -> bool {
    use aws_lc_rs::hmac;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) = (
        header("mmt-webhook-timestamp"),
        header("mmt-webhook-signature"),
    ) else {
        return false;
    };
    let Ok(sent_at) = timestamp.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - sent_at).abs() > 300 {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let expected = hex::encode(hmac::sign(&key, &message).as_ref());
    signature == format!("v1={expected}")
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let valid = signature_is_valid(&headers, &body);
    let id = headers
        .get("mmt-webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut seen = receiver.0.lock().unwrap();
    seen.deliveries.push((
        id,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        valid,
    ));
    if seen.fail_next > 0 {
        seen.fail_next -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

async fn receiver(fail_first: usize) -> (Receiver, String) {
    let receiver = Receiver(Arc::new(Mutex::new(Seen {
        fail_next: fail_first,
        ..Default::default()
    })));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/hooks/mmt", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hooks/mmt", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (receiver, url)
}

async fn transcribed(app: &TestApp) -> String {
    app.openai
        .set_transcript("Subjective: Valentina Ortega has a cough. Plan: rest.");
    let token = app.clinician_token("ana");
    let id = app.upload_wav(&token).await;
    app.drain_jobs().await;
    id
}

#[tokio::test]
async fn a_completed_transcription_is_notified_signed_and_retried_after_a_500() {
    let (receiver, url) = receiver(2).await;
    let app = spawn_app_with(&[("WEBHOOK_URL", url.as_str()), ("WEBHOOK_SECRET", SECRET)]).await;
    let id = transcribed(&app).await;
    let seen = receiver.0.lock().unwrap();
    assert_eq!(seen.deliveries.len(), 3, "two 500s, then accepted");
    assert!(seen.deliveries.iter().all(|(_, _, valid)| *valid));
    let first_id = &seen.deliveries[0].0;
    assert!(
        seen.deliveries.iter().all(|(id, _, _)| id == first_id),
        "every retry carries the same id, so the receiver can drop repeats"
    );
    let body = &seen.deliveries[2].1;
    assert_eq!(body["type"], "transcription.completed");
    assert_eq!(body["id"], first_id.as_str());
    assert_eq!(body["data"]["transcription_id"], id.as_str());
    assert_eq!(body["data"]["status"], "completed");
    // No PHI by default: ids and status only.
    assert!(body["data"].get("text").is_none());
    assert!(!body.to_string().contains("Ortega"));
}

#[tokio::test]
async fn the_text_is_sent_only_where_the_deployment_allows_it() {
    let (receiver, url) = receiver(0).await;
    let app = spawn_app_with(&[
        ("WEBHOOK_URL", url.as_str()),
        ("WEBHOOK_SECRET", SECRET),
        ("WEBHOOK_INCLUDE_TEXT", "true"),
    ])
    .await;
    transcribed(&app).await;
    let seen = receiver.0.lock().unwrap();
    assert_eq!(seen.deliveries.len(), 1);
    assert!(
        seen.deliveries[0].1["data"]["text"]
            .as_str()
            .unwrap()
            .contains("Ortega")
    );
}

#[tokio::test]
async fn a_refusing_receiver_is_not_retried_and_a_short_secret_is_refused() {
    let (receiver, url) = receiver(0).await;
    let refusing = url.replace("/hooks/mmt", "/elsewhere");
    let app = spawn_app_with(&[
        ("WEBHOOK_URL", refusing.as_str()),
        ("WEBHOOK_SECRET", SECRET),
    ])
    .await;
    transcribed(&app).await;
    // 404 from the receiver: a permanent refusal, dead-lettered at once, the record intact.
    assert!(receiver.0.lock().unwrap().deliveries.is_empty());

    let short = mmt_core::config::Config::from_map(
        &[
            ("WEBHOOK_URL", "https://hooks.example.org/mmt"),
            ("WEBHOOK_SECRET", "short"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    assert!(short.unwrap_err().to_string().contains("WEBHOOK_SECRET"));
}

#[tokio::test]
async fn an_ehr_delivery_that_lands_is_notified() {
    let (receiver, url) = receiver(0).await;
    let emr = FakeOpenEmr::start("mmt-client", "refresh-1").await.unwrap();
    let patient = "946da619-c631-431a-a282-487cd6fb7802";
    emr.add_patient(patient, 7, &[("946da61d-6b95-4f8e-abe5-534a25913b71", 42)]);
    let base = emr.base_url();
    let app = spawn_app_with(&[
        ("WEBHOOK_URL", url.as_str()),
        ("WEBHOOK_SECRET", SECRET),
        ("EHR_TARGET", "openemr"),
        ("OPENEMR_BASE_URL", base.as_str()),
        ("OPENEMR_CLIENT_ID", "mmt-client"),
        ("OPENEMR_REFRESH_TOKEN", "refresh-1"),
    ])
    .await;
    let id = transcribed(&app).await;
    let response = app
        .client
        .post(app.url(&format!("/v1/transcriptions/{id}/ehr")))
        .bearer_auth(app.clinician_token("ana"))
        .json(&json!({"patient_id": patient, "encounter_id": "42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let delivery: Value = response.json().await.unwrap();
    while mmt_core::jobs::run_ehr_once(&app.state).await.is_some() {}
    app.drain_jobs().await;
    let seen = receiver.0.lock().unwrap();
    let kinds: Vec<&str> = seen
        .deliveries
        .iter()
        .map(|(_, body, _)| body["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["transcription.completed", "ehr_delivery.delivered"]);
    let landed = &seen.deliveries[1].1["data"];
    assert_eq!(landed["delivery_id"], delivery["id"]);
    assert_eq!(landed["status"], "delivered");
}
