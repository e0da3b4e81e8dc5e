//! `GET /metrics`: valid Prometheus text (by the official client's parser) whose counters move
//! as requests and jobs happen, and which holds no id, name or token.

use std::collections::BTreeMap;

use crate::helpers::{TestApp, spawn_app_with, tone, tool_python};

/// The samples of one scrape, parsed by prometheus_client.
async fn scrape(app: &TestApp, token: Option<&str>) -> (String, BTreeMap<String, f64>) {
    let mut request = app.client.get(app.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/parse-prometheus.py");
    let mut child = std::process::Command::new(tool_python("validators"))
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: BTreeMap<String, f64> = serde_json::from_slice(&out.stdout).unwrap();
    (text, samples)
}

fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_and_move_with_requests_and_jobs_and_hold_no_identifiers() {
    let app = spawn_app_with(&[]).await;
    app.openai
        .set_transcript("Imelda Marchetti has a sprained ankle");
    let (_, before) = scrape(&app, None).await;
    let token = app.guest_token().await;
    let id = app.upload_wav_as(&token, "marchetti-ankle.wav").await;
    app.drain_jobs().await;
    assert_eq!(
        app.get(&token, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        200
    );
    let (text, after) = scrape(&app, None).await;

    let uploads = "mmt_http_requests_total{method=POST,route=/v1/transcriptions,status=202}";
    assert_eq!(
        sample(&after, uploads) - sample(&before, uploads),
        1.0,
        "{text}"
    );
    let reads = "mmt_http_requests_total{method=GET,route=/v1/transcriptions/{id},status=200}";
    assert!(sample(&after, reads) >= 1.0, "{text}");
    assert_eq!(
        sample(&after, "mmt_upload_bytes_total{}") - sample(&before, "mmt_upload_bytes_total{}"),
        tone().len() as f64
    );
    let acks = "mmt_jobs_total{outcome=ack,queue=transcribe}";
    assert_eq!(sample(&after, acks) - sample(&before, acks), 1.0, "{text}");
    assert!(
        sample(
            &after,
            "mmt_transcribed_audio_seconds_total{engine=cloud,model=whisper-1}"
        ) > 0.0,
        "{text}"
    );
    assert!(
        sample(
            &after,
            "mmt_transcription_real_time_factor_count{engine=cloud,model=whisper-1}"
        ) >= 1.0
    );
    let latency = "mmt_http_request_duration_seconds_count{route=/v1/transcriptions}";
    assert!(sample(&after, latency) >= 1.0, "{text}");
    assert!(after.contains_key("mmt_queue_messages{queue=transcribe,state=visible}"));

    // Route templates only: no id, no file name, no transcript, no token.
    for secret in [
        id.as_str(),
        "Marchetti",
        "marchetti",
        "ankle",
        token.as_str(),
    ] {
        assert!(!text.contains(secret), "/metrics holds {secret:?}");
    }
}

#[tokio::test]
async fn a_metrics_token_protects_the_endpoint() {
    let app = spawn_app_with(&[("METRICS_TOKEN", "metrics-token-metrics-token-0001")]).await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let (_, samples) = scrape(&app, Some("metrics-token-metrics-token-0001")).await;
    assert!(samples.contains_key("mmt_upload_bytes_total{}"));
}

#[tokio::test]
async fn production_serves_metrics_only_behind_a_token() {
    let production = [
        ("ENV", "prod"),
        ("ALLOW_DEMO_AUTH_IN_PRODUCTION", "true"),
        ("GUEST_UPLOADS_PER_DAY", "20"),
        ("GUEST_UPLOADS_PER_ADDRESS_PER_DAY", "50"),
        ("RATE_LIMIT_PER_MINUTE", "6000"),
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        (
            "ENCRYPTION_KEYS",
            "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
    ];
    let app = spawn_app_with(&production).await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 404, "no token, no metrics");

    let mut with_token = production.to_vec();
    with_token.push(("METRICS_TOKEN", "metrics-token-metrics-token-0002"));
    let app = spawn_app_with(&with_token).await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let (_, samples) = scrape(&app, Some("metrics-token-metrics-token-0002")).await;
    assert!(samples.contains_key("mmt_upload_bytes_total{}"));
}
