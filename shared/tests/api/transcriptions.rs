use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn transcripts_download_in_every_format_with_the_right_type() {
    let app = spawn_app().await;
    app.openai
        .set_transcript("Patient reports mild headache. Advised rest and fluids.");
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;

    // Not ready yet.
    let response = app
        .get(
            &token,
            &format!("/v1/transcriptions/{id}/transcript?format=txt"),
        )
        .await;
    assert_eq!(response.status(), 409);

    app.drain_jobs().await;
    let cases = [
        ("txt", "text/plain; charset=utf-8", "Patient reports mild headache. Advised rest and fluids.\n".to_owned()),
        (
            "srt",
            "application/x-subrip; charset=utf-8",
            "1\n00:00:00,000 --> 00:00:00,750\nPatient reports mild headache.\n\n2\n00:00:00,750 --> 00:00:01,500\nAdvised rest and fluids.\n\n".to_owned(),
        ),
        (
            "vtt",
            "text/vtt; charset=utf-8",
            "WEBVTT\n\n00:00:00.000 --> 00:00:00.750\nPatient reports mild headache.\n\n00:00:00.750 --> 00:00:01.500\nAdvised rest and fluids.\n\n".to_owned(),
        ),
    ];
    for (format, content_type, expected) in cases {
        let response = app
            .get(
                &token,
                &format!("/v1/transcriptions/{id}/transcript?format={format}"),
            )
            .await;
        assert_eq!(response.status(), 200, "{format}");
        assert_eq!(response.headers()["content-type"], content_type);
        assert_eq!(
            response.headers()["content-disposition"],
            format!("attachment; filename=\"{id}.{format}\"").as_str()
        );
        assert_eq!(response.text().await.unwrap(), expected, "{format}");
    }
    let response = app
        .get(&token, &format!("/v1/transcriptions/{id}/transcript"))
        .await;
    assert_eq!(response.headers()["content-type"], "application/json");
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["segments"].as_array().unwrap().len(), 2);
    assert_eq!(json["language"], "en");

    let response = app
        .get(
            &token,
            &format!("/v1/transcriptions/{id}/transcript?format=docx"),
        )
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn listing_is_newest_first_with_cursor_pages() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.upload_wav(&token).await);
    }
    ids.reverse();

    let mut seen = Vec::new();
    let mut path = "/v1/transcriptions?limit=2".to_owned();
    loop {
        let (status, page) = app.get_json(&token, &path).await;
        assert_eq!(status, 200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        assert!(
            items.iter().all(|i| i.get("text").is_none()),
            "listings carry no transcript text"
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/transcriptions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    assert_eq!(
        app.get(&token, "/v1/transcriptions?cursor=bogus")
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get(&token, "/v1/transcriptions?limit=0").await.status(),
        400
    );
    assert_eq!(
        app.get(&token, "/v1/transcriptions?limit=101")
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn delete_removes_audio_and_record() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    assert_eq!(app.audio_files().len(), 1);

    let response = app
        .delete(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(response.status(), 204);
    assert!(app.audio_files().is_empty());
    assert_eq!(
        app.get(&token, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.delete(&token, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        404
    );

    // Its queued job finds nothing to do and goes away quietly.
    let done = app.drain_jobs().await;
    assert_eq!(done, vec![mmt_core::jobs::Disposition::Ack]);
    assert!(app.openai.requests().is_empty());
}

#[tokio::test]
async fn malformed_ids_are_plain_404s() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    for path in [
        "/v1/transcriptions/not-a-uuid",
        "/v1/transcriptions/..%2F..%2Fetc",
    ] {
        let (status, body) = app.get_json(&token, path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn a_client_that_leaves_the_synchronous_endpoint_still_leaves_a_final_record() {
    use reqwest::multipart::{Form, Part};
    use std::time::{Duration, Instant};
    let app = spawn_app().await;
    let token = app.guest_token().await;
    app.openai.set_latency(Duration::from_secs(3));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let form = Form::new()
        .part(
            "file",
            Part::bytes(crate::helpers::tone()).file_name("visit.wav"),
        )
        .text("model", "whisper-1");
    let gone = impatient
        .post(app.url("/v1/audio/transcriptions"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await;
    assert!(
        gone.is_err_and(|e| e.is_timeout()),
        "the client gave up first"
    );

    // The work goes on without the client and ends the record one way or the other.
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        let (_, list) = app.get_json(&token, "/v1/transcriptions").await;
        let record = list["items"][0].clone();
        if matches!(record["status"].as_str(), Some("completed" | "failed")) {
            break record;
        }
        assert!(Instant::now() < deadline, "never settled: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(record["status"], "completed", "{record}");
}

#[tokio::test]
async fn the_openai_route_refuses_options_it_cannot_honour_and_no_audio_is_kept() {
    use reqwest::multipart::{Form, Part};
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let post = |fields: &'static [(&'static str, &'static str)]| {
        let mut form = Form::new()
            .part(
                "file",
                Part::bytes(crate::helpers::tone()).file_name("visit.wav"),
            )
            .text("model", "whisper-1");
        for (name, value) in fields {
            form = form.text(*name, *value);
        }
        app.client
            .post(app.url("/v1/audio/transcriptions"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
    };
    for (fields, says) in [
        (
            &[("include[]", "logprobs"), ("response_format", "text")][..],
            "logprobs requires response_format=json",
        ),
        (
            &[("include[]", "everything")][..],
            "include accepts only logprobs",
        ),
        (
            &[("timestamp_granularities[]", "word")][..],
            "timestamp_granularities requires response_format=verbose_json",
        ),
        (
            &[
                ("timestamp_granularities[]", "syllable"),
                ("response_format", "verbose_json"),
            ][..],
            "timestamp_granularities are word or segment",
        ),
    ] {
        let response = post(fields).await.unwrap();
        assert_eq!(response.status(), 400, "{fields:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["message"], says, "{fields:?}");
    }
    let (_, list) = app.get_json(&token, "/v1/transcriptions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");

    // The cloud engine reports no token scores: the list is there, and empty.
    let response = post(&[("include[]", "logprobs")]).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["logprobs"], serde_json::json!([]), "{body}");
}

#[tokio::test]
async fn the_openai_translation_route_follows_its_contract() {
    use reqwest::multipart::{Form, Part};
    let app = spawn_app().await;
    let token = app.guest_token().await;
    app.openai
        .set_transcript("The patient has had a fever for three days.");
    let post = |fields: &'static [(&'static str, &'static str)]| {
        let mut form = Form::new()
            .part(
                "file",
                Part::bytes(crate::helpers::tone()).file_name("visita.wav"),
            )
            .text("model", "whisper-1");
        for (name, value) in fields {
            form = form.text(*name, *value);
        }
        app.client
            .post(app.url("/v1/audio/translations"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
    };
    let response = post(&[("response_format", "verbose_json")]).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["task"], "translate");
    assert_eq!(body["language"], "english", "the output's language");
    assert_eq!(body["text"], "The patient has had a fever for three days.");
    assert!(!body["segments"].as_array().unwrap().is_empty(), "{body}");
    let sent = app.openai.requests();
    assert_eq!(sent[0].endpoint, "translations");
    assert_eq!(sent[0].language, None);

    // The translation form has no language, word timestamps or logprobs.
    for field in ["language", "timestamp_granularities[]", "include[]"] {
        let fields: &'static [(&'static str, &'static str)] = match field {
            "language" => &[("language", "es")],
            "include[]" => &[("include[]", "logprobs")],
            _ => &[("timestamp_granularities[]", "word")],
        };
        let response = post(fields).await.unwrap();
        assert_eq!(response.status(), 400, "{field}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown form field"),
            "{field}: {body}"
        );
    }
    let (_, list) = app.get_json(&token, "/v1/transcriptions").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only the good request left a record");
    assert_eq!(items[0]["task"], "translate");
}
