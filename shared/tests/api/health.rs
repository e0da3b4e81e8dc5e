use std::{sync::Arc, time::Duration};

use mmt_core::{
    domain::JobId,
    ports::{Job, JobOrigin, JobQueue, QueueError, QueueStats, ReceivedJob},
};
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn live_answers_live() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "live"}));
}

#[tokio::test]
async fn ready_reports_each_dependency() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    for check in ["store", "blob_store", "queue", "engine"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
        assert!(body["checks"][check]["latency_ms"].as_f64().is_some());
    }
    assert_eq!(body["checks"]["engine"]["detail"], "cloud: whisper-1");
}

#[tokio::test]
async fn ready_is_503_and_names_the_failing_dependency() {
    let app = spawn_app_with(&[("ENABLE_CLOUD_TRANSCRIPTION", "false")]).await;
    let response = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["failing"], serde_json::json!(["engine"]));

    // A blob store that cannot be written is not ready either.
    let app = spawn_app().await;
    let audio = app.dir.path().join("audio");
    std::fs::remove_dir_all(&audio).unwrap();
    std::fs::write(&audio, b"not a directory").unwrap();
    let body: Value = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["failing"], serde_json::json!(["blob_store"]));
}

#[tokio::test]
async fn demo_status_uses_real_booleans() {
    let app = spawn_app_with(&[("DEMO_MODE", "true")]).await;
    let body: Value = app
        .client
        .get(app.url("/demo/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["demo_mode"], true);
    assert_eq!(body["environment"], "test");
    assert_eq!(body["cloud_enabled"], true);
    assert_eq!(body["local_enabled"], false);
    assert_eq!(body["guest_auth"], true);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json_with_a_correlation_id() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let header = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "route_not_found");
    assert_eq!(body["correlation_id"], header.as_str());

    let response = app
        .client
        .put(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn correlation_ids_are_echoed_when_sane_and_replaced_when_not() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("X-Correlation-ID", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-correlation-id"], "abc-123");

    let response = app
        .client
        .get(app.url("/health/live"))
        .header("X-Correlation-ID", "has spaces and <html>")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-correlation-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    for response in [
        app.client
            .get(app.url("/health/live"))
            .send()
            .await
            .unwrap(),
        app.client.get(app.url("/nope")).send().await.unwrap(),
        app.client
            .get(app.url("/v1/transcriptions"))
            .send()
            .await
            .unwrap(),
        app.get(&token, &format!("/v1/transcriptions/{id}")).await,
    ] {
        let h = response.headers();
        let url = response.url().path().to_owned();
        assert_eq!(h["x-content-type-options"], "nosniff", "{url}");
        assert_eq!(h["x-frame-options"], "DENY", "{url}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{url}");
        assert_eq!(h["cache-control"], "no-store", "{url}");
        assert!(
            h["strict-transport-security"]
                .to_str()
                .unwrap()
                .starts_with("max-age="),
            "{url}"
        );
        assert_eq!(
            h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
            "{url}"
        );
    }
    // The docs page keeps its own, page-shaped policy: its inline code, nothing remote.
    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    let csp = docs.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'unsafe-inline'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(docs.headers()["x-frame-options"], "DENY");
}

async fn ready(app: &crate::helpers::TestApp) -> (u16, Value) {
    let response = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_reports_the_workers_heartbeats_and_a_stopped_worker_is_not_ready() {
    let app = spawn_app().await;
    let (_, body) = ready(&app).await;
    assert!(
        body["checks"].get("workers").is_none(),
        "no consumers in this process, no check: {body}"
    );

    let shutdown = tokio_util::sync::CancellationToken::new();
    let workers = tokio::spawn(mmt_core::jobs::run_job_consumers(
        app.state.clone(),
        shutdown.clone(),
    ));
    let (status, body) = ready_once_workers_beat(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["workers"]["ok"], true);

    shutdown.cancel();
    workers.await.unwrap();
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503);
    assert_eq!(body["failing"], serde_json::json!(["workers"]));
    assert!(
        body["checks"]["workers"]["detail"]
            .as_str()
            .unwrap()
            .contains("transcribe-0"),
        "{body}"
    );
}

/// A queue whose receive never answers: a consumer stuck on it stops beating.
struct HangingQueue(Arc<dyn JobQueue>);

#[async_trait::async_trait]
impl JobQueue for HangingQueue {
    async fn enqueue(&self, job: &Job, origin: &JobOrigin) -> Result<JobId, QueueError> {
        self.0.enqueue(job, origin).await
    }
    async fn receive(&self, _max: usize) -> Result<Vec<ReceivedJob>, QueueError> {
        std::future::pending().await
    }
    async fn extend_lease(
        &self,
        job: &ReceivedJob,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.0.extend_lease(job, visibility).await
    }
    async fn ack(&self, job: &ReceivedJob) -> Result<(), QueueError> {
        self.0.ack(job).await
    }
    async fn retry_later(&self, job: &ReceivedJob, delay: Duration) -> Result<(), QueueError> {
        self.0.retry_later(job, delay).await
    }
    async fn release(&self, job: &ReceivedJob) -> Result<(), QueueError> {
        self.0.release(job).await
    }
    async fn dead_letter(&self, job: &ReceivedJob, reason: &str) -> Result<(), QueueError> {
        self.0.dead_letter(job, reason).await
    }
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.0.stats().await
    }
}

/// Readiness once the consumers, started on tasks of their own, have beaten once.
async fn ready_once_workers_beat(app: &crate::helpers::TestApp) -> (u16, Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = ready(app).await;
        if body["checks"].get("workers").is_some() {
            return (status, body);
        }
        assert!(std::time::Instant::now() < deadline, "no beat: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stuck_on_its_queue_makes_the_process_not_ready() {
    let clock = Arc::new(mmt_core::ports::ManualClock::new(chrono::Utc::now()));
    let app = crate::helpers::spawn_app_on_clock(
        &[("WORKER_STALE_AFTER_SECS", "1")],
        clock.clone(),
        |state| {
            state.transcribe_queue = Arc::new(HangingQueue(state.transcribe_queue.clone()));
        },
    )
    .await;
    let workers = tokio::spawn(mmt_core::jobs::run_job_consumers(
        app.state.clone(),
        tokio_util::sync::CancellationToken::new(),
    ));
    let (status, body) = ready_once_workers_beat(&app).await;
    assert_eq!(
        (status, &body["checks"]["workers"]["ok"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    clock.advance(chrono::Duration::milliseconds(1001));
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failing"], serde_json::json!(["workers"]));
    workers.abort();
}

#[tokio::test]
async fn readiness_details_go_to_admins_only_when_health_details_is_off() {
    const ADMIN_KEY: &str = "health-admin-key-health-admin-key-0123456789";
    let app = spawn_app_with(&[("HEALTH_DETAILS", "false"), ("ADMIN_API_KEY", ADMIN_KEY)]).await;
    let ready = |token: Option<String>| {
        let mut request = app.client.get(app.url("/health/ready"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    // Anyone (and a token that does not verify) learns ready or not, and which check failed.
    for token in [
        None,
        Some("not-a-token".to_owned()),
        Some(app.guest_token().await),
    ] {
        let body = ready(token).await;
        assert_eq!(body["status"], "ready");
        let wire = body.to_string();
        assert!(
            !wire.contains("whisper-1") && !wire.contains("waiting"),
            "{wire}"
        );
        assert!(body["checks"]["queue"]["detail"].is_null(), "{body}");
    }
    // An admin sees the queue depth and the model.
    let admin: Value = app
        .client
        .post(app.url("/auth/admin"))
        .json(&serde_json::json!({"api_key": ADMIN_KEY}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = ready(Some(admin["access_token"].as_str().unwrap().to_owned())).await;
    assert_eq!(body["checks"]["engine"]["detail"], "cloud: whisper-1");
    assert!(
        body["checks"]["queue"]["detail"]
            .as_str()
            .unwrap()
            .contains("waiting")
    );
}

#[test]
fn production_keeps_readiness_details_for_admins_by_default() {
    let env: std::collections::HashMap<String, String> = [
        ("ENV", "prod"),
        (
            "INTERNAL_JWT_SECRET",
            "pppppppppppppppppppppppppppppppppppppppp",
        ),
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        (
            "ENCRYPTION_KEYS",
            "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert!(
        !mmt_core::Config::from_map(&env)
            .unwrap()
            .http
            .health_details
    );
}
