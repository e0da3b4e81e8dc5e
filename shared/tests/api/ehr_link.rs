//! Pushing as the clinician (issue 19, part 2): each clinician links their own OpenEMR
//! account (authorization code with PKCE against the fake OpenEMR's authorize and token
//! endpoints), each note is written with that clinician's own token, and a revoked link asks
//! only its owner to link again.

use mmt_testkit::openemr::FakeOpenEmr;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const PATIENT: &str = "946da619-c631-431a-a282-487cd6fb7802";
const REDIRECT: &str = "http://127.0.0.1:9/mmt/";

async fn stack() -> (FakeOpenEmr, TestApp) {
    let emr = FakeOpenEmr::start("mmt-client", "unused-service-token")
        .await
        .unwrap();
    emr.add_patient(PATIENT, 7, &[("946da61d-6b95-4f8e-abe5-534a25913b71", 42)]);
    let base = emr.base_url();
    let app = spawn_app_with(&[
        ("EHR_TARGET", "openemr"),
        ("EHR_LOGIN", "per-clinician"),
        ("OPENEMR_BASE_URL", base.as_str()),
        ("OPENEMR_CLIENT_ID", "mmt-client"),
        ("OPENEMR_REDIRECT_URI", REDIRECT),
    ])
    .await;
    app.openai
        .set_transcript("Patient reports a dry cough for three weeks.");
    (emr, app)
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    app.send_json(reqwest::Method::POST, token, path, &body)
        .await
}

/// What the clinician's browser does: follow the authorization URL to OpenEMR (signed in
/// there as whoever `sign_in_as` named) and come back with `code` and `state`.
async fn through_openemr(authorization_url: &str) -> (String, String) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = browser.get(authorization_url).send().await.unwrap();
    assert_eq!(answer.status(), 302, "OpenEMR sends the browser back");
    let back = reqwest::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    (param("code"), param("state"))
}

async fn link(app: &TestApp, emr: &FakeOpenEmr, token: &str, openemr_user: &str) {
    emr.sign_in_as(openemr_user);
    let (status, start) = post(app, token, "/v1/ehr/link", json!({})).await;
    assert_eq!(status, 200, "{start}");
    let url = start["authorization_url"].as_str().unwrap().to_owned();
    let query: Vec<(String, String)> = reqwest::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let has = |k: &str, v: &str| query.iter().any(|(a, b)| a == k && b == v);
    assert!(has("code_challenge_method", "S256") && has("redirect_uri", REDIRECT));
    assert!(
        !query.iter().any(|(k, _)| k == "code_verifier"),
        "the verifier never leaves MMT"
    );
    let (code, state) = through_openemr(&url).await;
    let (status, done) = post(
        app,
        token,
        "/v1/ehr/link/complete",
        json!({"code": code, "state": state}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
}

async fn push(app: &TestApp, token: &str) -> Value {
    let id = app.upload_wav(token).await;
    app.drain_jobs().await;
    let (status, delivery) = post(
        app,
        token,
        &format!("/v1/transcriptions/{id}/ehr"),
        json!({"patient_id": PATIENT, "encounter_id": "42"}),
    )
    .await;
    assert_eq!(status, 202, "{delivery}");
    while mmt_core::jobs::run_ehr_once(&app.state).await.is_some() {}
    let (_, list) = app
        .get_json(token, &format!("/v1/transcriptions/{id}/ehr"))
        .await;
    list["deliveries"][0].clone()
}

#[tokio::test]
async fn each_clinician_pushes_with_their_own_ehr_login() {
    let (emr, app) = stack().await;
    let (ana, bo) = (app.clinician_token("ana"), app.clinician_token("bo"));
    let (_, before) = app.get_json(&ana, "/v1/ehr/link").await;
    assert_eq!(
        (before["mode"].as_str(), before["linked"].as_bool()),
        (Some("per-clinician"), Some(false))
    );
    // Without a link, a push says what to do.
    let unlinked = push(&app, &ana).await;
    assert_eq!(unlinked["status"], "failed");
    assert!(
        unlinked["error"]
            .as_str()
            .unwrap()
            .contains("link your OpenEMR account"),
        "{unlinked}"
    );

    link(&app, &emr, &ana, "dr-ana").await;
    link(&app, &emr, &bo, "dr-bo").await;
    assert_eq!(app.get_json(&ana, "/v1/ehr/link").await.1["linked"], true);
    assert_eq!(push(&app, &ana).await["status"], "delivered");
    assert_eq!(push(&app, &bo).await["status"], "delivered");
    let notes = emr.notes();
    let authors: Vec<&str> = notes.iter().map(|n| n.author.as_str()).collect();
    assert_eq!(
        authors,
        ["dr-ana", "dr-bo"],
        "each note under its clinician's name"
    );
    assert_ne!(notes[0].written_with, notes[1].written_with);

    // OpenEMR revokes dr-ana's grant: only ana is asked to link again.
    emr.revoke_user("dr-ana");
    let refused = push(&app, &ana).await;
    assert_eq!(refused["status"], "failed");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("link your OpenEMR account again"),
        "{refused}"
    );
    let (_, state) = app.get_json(&ana, "/v1/ehr/link").await;
    assert_eq!(state["state"]["state"], "needs_login", "{state}");
    assert_eq!(push(&app, &bo).await["status"], "delivered");
    assert_eq!(
        app.get_json(&bo, "/v1/ehr/link").await.1["state"]["state"],
        "connected"
    );
    // Linking again mends it.
    link(&app, &emr, &ana, "dr-ana").await;
    assert_eq!(push(&app, &ana).await["status"], "delivered");
    assert_eq!(emr.notes().last().unwrap().author, "dr-ana");
}

#[tokio::test]
async fn a_link_answer_is_only_good_for_the_clinician_who_started_it_once() {
    let (emr, app) = stack().await;
    let (ana, bo) = (app.clinician_token("ana"), app.clinician_token("bo"));
    emr.sign_in_as("dr-bo");
    let (_, start) = post(&app, &bo, "/v1/ehr/link", json!({})).await;
    let (code, state) = through_openemr(start["authorization_url"].as_str().unwrap()).await;
    // Ana cannot finish bo's link (she started none) and a made-up state is refused.
    let stolen = json!({"code": code, "state": state});
    assert_eq!(
        post(&app, &ana, "/v1/ehr/link/complete", stolen.clone())
            .await
            .0,
        400
    );
    let wrong = json!({"code": code, "state": "not-the-state"});
    assert_eq!(post(&app, &bo, "/v1/ehr/link/complete", wrong).await.0, 400);
    // The wrong state used up bo's pending link: the right one is refused now too.
    assert_eq!(
        post(&app, &bo, "/v1/ehr/link/complete", stolen).await.0,
        400
    );
    assert_eq!(app.get_json(&bo, "/v1/ehr/link").await.1["linked"], false);
    // Unlinking is the clinician's own.
    link(&app, &emr, &bo, "dr-bo").await;
    let response = app
        .client
        .delete(app.url("/v1/ehr/link"))
        .bearer_auth(&bo)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.get_json(&bo, "/v1/ehr/link").await.1["linked"], false);
}
