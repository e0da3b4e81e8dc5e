//! Hostile input: every request below gets a 4xx (never a 5xx, never a hang), and the server
//! keeps serving afterwards.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_and_mislabelled_bodies_get_4xx() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        app.client
            .post(app.url(path))
            .bearer_auth(&token)
            .header("content-type", content_type.to_owned())
            .body(body)
    };
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge_json = format!(r#"{{"filename":"{}"}}"#, "a".repeat(2_000_000));
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("multipart without boundary", post("/v1/transcriptions", "multipart/form-data", b"--x\r\n".to_vec())),
        ("truncated multipart", post("/v1/transcriptions", "multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF".to_vec())),
        ("JSON sent as multipart", post("/v1/transcriptions", "application/json", br#"{"file":"x"}"#.to_vec())),
        ("text as audio", post("/v1/transcriptions", "multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nhello, not audio at all\r\n--b--\r\n".to_vec())),
        ("invalid UTF-8 form field", post("/v1/transcriptions", "multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\n\xff\xfe\r\n--b--\r\n".to_vec())),
        ("deeply nested JSON", post("/v1/uploads", "application/json", deep_json.into_bytes())),
        ("huge JSON", post("/v1/uploads", "application/json", huge_json.into_bytes())),
        ("invalid UTF-8 JSON", post("/v1/uploads", "application/json", b"{\"filename\":\"\xff\"}".to_vec())),
        ("JSON with the wrong type", post("/v1/uploads", "application/json", br#"{"filename":1,"content_type":[],"size":"big"}"#.to_vec())),
        ("login with form encoding", post("/auth/login", "application/x-www-form-urlencoded", b"username=a&password=b".to_vec())),
    ];
    for (name, request) in cases {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!((400..500).contains(&status), "{name}: {status}");
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(body["error"]["code"].is_string(), "{name}: {body}");
    }
    app.assert_live().await;
}

#[tokio::test]
async fn path_traversal_and_junk_ids_are_404_before_any_storage() {
    let app = spawn_app().await;
    let token = app.guest_token().await;
    for id in [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "..",
        "audio%2F..%2F..%2Fmmt.db",
        "0193a5f0-0000-7000-8000-00000000000%00",
        "' OR 1=1 --",
        &"9".repeat(5000),
    ] {
        for path in [
            format!("/v1/transcriptions/{id}"),
            format!("/v1/transcriptions/{id}/transcript"),
        ] {
            let response = app.get(&token, &path).await;
            let status = response.status().as_u16();
            assert!(
                status == 404 || status == 400 || status == 414 || status == 431,
                "{path}: {status}"
            );
        }
        let response = app
            .delete(&token, &format!("/v1/transcriptions/{id}"))
            .await;
        assert!(response.status().is_client_error(), "DELETE {id}");
    }
    assert!(
        app.dir.path().join("mmt.db").exists(),
        "nothing was deleted"
    );
    app.assert_live().await;
}

#[tokio::test]
async fn huge_headers_and_bad_tokens_get_4xx() {
    let app = spawn_app().await;
    let huge = "x".repeat(200_000);
    let response = app
        .client
        .get(app.url("/v1/transcriptions"))
        .header("x-padding", huge.as_str())
        .send()
        .await;
    if let Ok(response) = response {
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    // With a valid token too: the size alone is refused, with the API's error body.
    let token = app.guest_token().await;
    let response = app
        .client
        .get(app.url("/v1/transcriptions"))
        .bearer_auth(&token)
        .header("x-padding", "x".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    assert_eq!(
        response.headers()["x-content-type-options"],
        "nosniff",
        "refusals carry the security headers"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large");
    for token in [
        "",
        "a.b.c",
        &huge[..9000],
        "Bearer",
        "eyJhbGciOiJub25lIn0.e30.",
    ] {
        let response = app
            .client
            .get(app.url("/v1/transcriptions"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{token:.20}");
    }
    app.assert_live().await;
}

/// A client that opens an upload and then stops sending (slowloris) is answered 408 once the
/// body has been idle for BODY_IDLE_TIMEOUT_SECS, nothing it sent is kept, and everyone else
/// is served meanwhile.
#[tokio::test]
async fn a_stalled_upload_times_out_without_blocking_others() {
    let app = spawn_app_with(&[("BODY_IDLE_TIMEOUT_SECS", "1")]).await;
    let token = app.guest_token().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/transcriptions HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n\
         --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&mmt_testkit::tone_wav(0.5, 16_000)[..4000])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // While it stalls, everyone else is served.
    for _ in 0..3 {
        app.assert_live().await;
        assert_eq!(app.get(&token, "/v1/transcriptions").await.status(), 200);
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes a stalled upload")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(
        app.audio_files().is_empty(),
        "the partial upload was removed"
    );
    let (_, list) = app.get_json(&token, "/v1/transcriptions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    app.assert_live().await;
}
