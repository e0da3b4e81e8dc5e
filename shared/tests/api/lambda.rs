//! The `events/` fixtures, fed to the same handlers the Lambda functions run.

use lambda_runtime::{Context, LambdaEvent};
use mmt_core::{
    adapters::{Database, SqliteJobQueue},
    entrypoints::lambda::{handle_queue_batch, handle_scheduled_sweep},
    http::{RouteGroup, router},
};
use mmt_testkit::Failure;
use serde_json::Value;
use tower::ServiceExt;

use crate::helpers::{TestApp, spawn_app_with};

pub const FIXTURE_ID: &str = "0193a5f0-0000-7000-8000-000000000001";

pub fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub async fn invoke(
    app: &TestApp,
    group: RouteGroup,
    event: &str,
) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway v2 event");
    let response = router(&[group], app.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

pub fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn every_http_fixture_gets_the_expected_answer_from_its_function() {
    let hash = mmt_core::auth::hash_password("fixture-password-123").unwrap();
    let users = format!("clinician:{hash}");
    let app = spawn_app_with(&[("ALLOW_LOCAL_LOGIN", "true"), ("LOCAL_LOGIN_USERS", &users)]).await;

    for (group, name, want) in [
        (RouteGroup::Health, "apigw-health-live.json", 200),
        (RouteGroup::Health, "apigw-health-ready.json", 200),
        (RouteGroup::DemoStatus, "apigw-demo-status.json", 200),
        (RouteGroup::Docs, "apigw-openapi.json", 200),
        (RouteGroup::Docs, "apigw-docs.json", 200),
        (RouteGroup::Auth, "apigw-auth-login.json", 200),
    ] {
        let (status, headers, body) = invoke(&app, group, &fixture(name)).await;
        assert_eq!(status, want, "{name}: {}", String::from_utf8_lossy(&body));
        assert!(
            headers["x-correlation-id"]
                .to_str()
                .unwrap()
                .starts_with("fixture-"),
            "{name}"
        );
    }

    // A function serves only its own routes.
    let (status, _, _) = invoke(&app, RouteGroup::Health, &fixture("apigw-demo-status.json")).await;
    assert_eq!(status, 404);

    let (status, _, body) = invoke(&app, RouteGroup::Auth, &fixture("apigw-auth-guest.json")).await;
    assert_eq!(status, 201);
    let token = json(&body)["access_token"].as_str().unwrap().to_owned();
    let with_token = |name: &str| fixture(name).replace("__TOKEN__", &token);

    let (status, headers, body) =
        invoke(&app, RouteGroup::Upload, &with_token("apigw-upload.json")).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let id = json(&body)["id"].as_str().unwrap().to_owned();
    assert_eq!(
        headers["location"],
        format!("/v1/transcriptions/{id}").as_str()
    );
    let with_id = |name: &str| with_token(name).replace("__ID__", &id);

    let (status, _, body) = invoke(
        &app,
        RouteGroup::Transcriptions,
        &with_token("apigw-list.json"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["items"][0]["id"], id.as_str());
    let (status, _, body) =
        invoke(&app, RouteGroup::Transcriptions, &with_id("apigw-get.json")).await;
    assert_eq!(
        (status, json(&body)["status"].as_str()),
        (200, Some("queued"))
    );

    // The transcribe function consumes the SQS fixture: one good message, one unreadable.
    let sqs: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&fixture("sqs-transcribe.json").replace(FIXTURE_ID, &id)).unwrap();
    let response = handle_queue_batch(
        &app.state,
        mmt_core::jobs::JobKind::Transcribe,
        LambdaEvent::new(sqs, Context::default()),
    )
    .await
    .unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "the unreadable message is dead-lettered, not retried"
    );
    let (_, _, body) = invoke(&app, RouteGroup::Transcriptions, &with_id("apigw-get.json")).await;
    assert_eq!(json(&body)["status"], "completed");
    let db = Database::open(&app.dir.path().join("mmt.db")).unwrap();
    let dead = SqliteJobQueue::new(db, "transcribe", std::time::Duration::from_secs(30), 3)
        .dead_letters()
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "6f1d7c7e-9a56-4c3b-8a70-0c5c0e6c1a02");

    let (status, headers, body) = invoke(
        &app,
        RouteGroup::Transcriptions,
        &with_id("apigw-transcript.json"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/x-subrip; charset=utf-8"
    );
    assert!(
        String::from_utf8(body)
            .unwrap()
            .starts_with("1\n00:00:00,000 --> ")
    );

    let (status, _, _) = invoke(
        &app,
        RouteGroup::Transcriptions,
        &with_id("apigw-delete.json"),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, _) = invoke(&app, RouteGroup::Transcriptions, &with_id("apigw-get.json")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_failing_message_is_reported_alone_in_batch_item_failures() {
    let app = spawn_app_with(&[("OPENAI_MAX_RETRIES", "0")]).await;
    app.openai.always(Some(Failure::ServerError(502)));
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    let sqs: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&fixture("sqs-transcribe.json").replace(FIXTURE_ID, &id)).unwrap();
    let response = handle_queue_batch(
        &app.state,
        mmt_core::jobs::JobKind::Transcribe,
        LambdaEvent::new(sqs, Context::default()),
    )
    .await
    .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["6f1d7c7e-9a56-4c3b-8a70-0c5c0e6c1a01"]);
    let (_, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(
        record["status"], "processing",
        "one attempt of three used; SQS redelivers it"
    );
}

#[tokio::test]
async fn the_sweep_function_accepts_rule_and_scheduler_payloads() {
    let app = spawn_app_with(&[("RETENTION_DAYS", "7")]).await;
    for name in ["eventbridge-retention.json", "scheduler-retention.json"] {
        let payload: Value = serde_json::from_str(&fixture(name)).unwrap();
        let report =
            handle_scheduled_sweep(&app.state, LambdaEvent::new(payload, Context::default()))
                .await
                .unwrap();
        assert_eq!(report.retention_days, 7, "{name}");
        assert_eq!(report.deleted_records, 0);
    }
}

#[tokio::test]
async fn behind_api_gateway_anonymous_calls_are_limited_per_source_ip() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "2")]).await;
    let guest = fixture("apigw-auth-guest.json");
    let statuses: Vec<u16> =
        futures::future::join_all((0..3).map(|_| invoke(&app, RouteGroup::Auth, &guest)))
            .await
            .into_iter()
            .map(|(status, _, _)| status)
            .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        1,
        "{statuses:?}"
    );
    // Another client address has its own window.
    let elsewhere = guest.replace("203.0.113.10", "198.51.100.7");
    assert_eq!(invoke(&app, RouteGroup::Auth, &elsewhere).await.0, 201);
}
