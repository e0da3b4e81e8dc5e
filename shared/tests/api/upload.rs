use serde_json::Value;

use crate::helpers::{sha256_hex, spawn_app, spawn_app_with, tone};

#[tokio::test]
async fn upload_is_accepted_queued_and_transcribed() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let audio = tone();
    let response = app
        .upload(
            &token,
            audio.clone(),
            "visit.wav",
            &[("language", "en"), ("prompt", "metformin, lisinopril")],
        )
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/transcriptions/{id}"));
    assert_eq!(body["status"], "queued");
    assert_eq!(body["engine"], "cloud");
    assert_eq!(body["size_bytes"], audio.len());

    let (status, record) = app.get_json(&token, &location).await;
    assert_eq!(status, 200);
    assert_eq!(record["status"], "queued");
    assert_eq!(record["file_name"], "visit.wav");

    app.drain_jobs().await;

    let (_, record) = app.get_json(&token, &location).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["language"], "en");
    assert_eq!(record["attempts"], 1);
    // The contract server describes what it received: the whole file, byte for byte.
    let text = record["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("Received {} bytes", audio.len())),
        "{text}"
    );
    assert!(text.contains(&sha256_hex(&audio)[..16]), "{text}");
    assert!((record["duration_s"].as_f64().unwrap() - 1.5).abs() < 0.01);
    assert!(!record["segments"].as_array().unwrap().is_empty());

    // What the engine was sent follows the OpenAI contract.
    let sent = &app.openai.requests()[0];
    assert_eq!(sent.model.as_deref(), Some("whisper-1"));
    assert_eq!(sent.response_format.as_deref(), Some("verbose_json"));
    assert_eq!(sent.timestamp_granularities, vec!["segment".to_owned()]);
    assert_eq!(sent.language.as_deref(), Some("en"));
    assert_eq!(sent.prompt.as_deref(), Some("metformin, lisinopril"));
    assert_eq!(
        sent.file_name.as_deref(),
        Some(format!("{id}.wav").as_str())
    );
    assert_eq!(sent.file_content_type.as_deref(), Some("audio/wav"));
}

#[tokio::test]
async fn gpt4o_models_are_asked_for_plain_json() {
    let app = spawn_app_with(&[("CLOUD_TRANSCRIPTION_MODEL", "gpt-4o-mini-transcribe")]).await;
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    app.drain_jobs().await;
    let (_, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    let sent = &app.openai.requests()[0];
    assert_eq!(sent.model.as_deref(), Some("gpt-4o-mini-transcribe"));
    assert_eq!(sent.response_format.as_deref(), Some("json"));
    assert!(sent.timestamp_granularities.is_empty());
}

#[tokio::test]
async fn a_translation_goes_to_the_translations_endpoint_without_a_language() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let response = app
        .upload(
            &token,
            tone(),
            "visita.wav",
            &[
                ("task", "translate"),
                ("language", "es"),
                ("prompt", "paracetamol"),
            ],
        )
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_jobs().await;
    let (_, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["task"], "translate");
    // The speaker's language as asked, not the translation's ("english").
    assert_eq!(record["language"], "es");
    let sent = app.openai.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].endpoint, "translations");
    assert_eq!(sent[0].model.as_deref(), Some("whisper-1"));
    assert_eq!(sent[0].response_format.as_deref(), Some("verbose_json"));
    assert_eq!(sent[0].prompt.as_deref(), Some("paracetamol"));
    assert_eq!(
        sent[0].language, None,
        "the translation form has no language"
    );
    assert!(sent[0].timestamp_granularities.is_empty());

    // A transcription still goes where it did.
    app.upload_wav(&token).await;
    app.drain_jobs().await;
    assert_eq!(app.openai.requests()[1].endpoint, "transcriptions");
}

#[tokio::test]
async fn a_cloud_model_that_cannot_translate_is_refused_at_upload() {
    let app = spawn_app_with(&[("CLOUD_TRANSCRIPTION_MODEL", "gpt-4o-mini-transcribe")]).await;
    let token = app.guest_token().await;
    let response = app
        .upload(&token, tone(), "a.wav", &[("task", "translate")])
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "translation_unavailable", "{body}");
    assert!(app.audio_files().is_empty());
    assert!(app.openai.requests().is_empty());
}

#[tokio::test]
async fn content_decides_what_is_audio_not_the_file_name() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    let response = app.upload(&token, pdf, "recording.wav", &[]).await;
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    // Real audio under a misleading name is fine.
    let response = app.upload(&token, tone(), "notes.txt", &[]).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        app.audio_files().len(),
        1,
        "only the accepted upload is stored"
    );
}

#[tokio::test]
async fn a_form_without_a_file_is_a_400() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let form = reqwest::multipart::Form::new().text("language", "en");
    let response = app
        .client
        .post(app.url("/v1/transcriptions"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_file");

    let response = app
        .client
        .post(app.url("/v1/transcriptions"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"file": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn bad_fields_are_refused_and_leave_nothing_behind() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    for fields in [
        vec![("language", "english!")],
        vec![("engine", "quantum")],
        vec![("engine", "local")],
        vec![("colour", "blue")],
        vec![("task", "summarise")],
        vec![("prompt", "metformin\u{0}")],
    ] {
        let response = app.upload(&token, tone(), "a.wav", &fields).await;
        assert_eq!(response.status(), 400, "{fields:?}");
    }
    let response = app
        .upload(&token, tone(), "a.wav", &[("engine", "local")])
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "engine_unavailable");
    assert!(app.audio_files().is_empty(), "{:?}", app.audio_files());
    let (_, list) = app.get_json(&token, "/v1/transcriptions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn uploads_over_the_limit_are_413_and_store_nothing() {
    let app = spawn_app_with(&[("MAX_UPLOAD_BYTES", "100000")]).await;
    let token = app.guest_token().await;
    let big = mmt_testkit::tone_wav(10.0, 16_000); // 320 KB
    let response = app.upload(&token, big, "long.wav", &[]).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(app.audio_files().is_empty(), "{:?}", app.audio_files());

    // Streamed without a Content-Length (chunked), the limit still holds mid-stream.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = mmt_testkit::tone_wav(10.0, 16_000)
        .chunks(16 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let part =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .file_name("long.wav");
    let response = app
        .client
        .post(app.url("/v1/transcriptions"))
        .bearer_auth(&token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(app.audio_files().is_empty(), "{:?}", app.audio_files());

    // Under the limit still works.
    let response = app
        .upload(&token, mmt_testkit::tone_wav(1.0, 16_000), "short.wav", &[])
        .await;
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn guests_may_be_kept_off_the_paid_cloud_engine() {
    let app = spawn_app_with(&[("GUEST_CLOUD_ENGINE", "false")]).await;
    let guest = app.guest_token().await;
    for response in [
        app.upload(&guest, tone(), "a.wav", &[]).await,
        app.client
            .post(app.url("/v1/audio/transcriptions"))
            .bearer_auth(&guest)
            .multipart(
                reqwest::multipart::Form::new()
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(tone()).file_name("a.wav"),
                    )
                    .text("model", "whisper-1"),
            )
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "engine_forbidden", "{body}");
    }
    assert!(app.audio_files().is_empty(), "nothing kept");
    assert!(app.openai.requests().is_empty(), "nothing sent");
    // A signed-in user still may.
    let clinician = app.clinician_token("dr-okafor");
    assert_eq!(
        app.upload(&clinician, tone(), "a.wav", &[]).await.status(),
        202
    );
}

/// Guests try the product, they do not get a free transcription service (security review,
/// item 7): uploads per guest per day, and per address for all guests together; a signed-in
/// user is not counted.
#[tokio::test]
async fn guests_have_daily_upload_quotas_per_guest_and_per_address() {
    let app = crate::helpers::spawn_app_with(&[
        ("GUEST_UPLOADS_PER_DAY", "2"),
        ("GUEST_UPLOADS_PER_ADDRESS_PER_DAY", "3"),
    ])
    .await;
    let upload = |token: String| {
        let app = &app;
        async move {
            app.upload(&token, crate::helpers::tone(), "visit.wav", &[])
                .await
        }
    };
    let first = app.guest_token().await;
    for _ in 0..2 {
        assert_eq!(upload(first.clone()).await.status(), 202);
    }
    let refused = upload(first.clone()).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 86_000, "{retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "guest_quota_exceeded");
    // A new guest from the same address: one left for the address (three in all).
    let second = app.guest_token().await;
    assert_eq!(upload(second.clone()).await.status(), 202);
    assert_eq!(upload(second).await.status(), 429);
    // Reading is not counted.
    assert_eq!(app.get(&first, "/v1/transcriptions").await.status(), 200);
}
