use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn users_cannot_touch_each_others_records() {
    let app = spawn_app().await;
    let alice = app.guest_token().await;
    let bob = app.guest_token().await;
    let id = app.upload_wav(&alice).await;
    app.drain_jobs().await;
    let missing = uuid::Uuid::now_v7();

    // Bob gets exactly what a missing id gets.
    let (missing_status, missing_body) = app
        .get_json(&bob, &format!("/v1/transcriptions/{missing}"))
        .await;
    for path in [
        format!("/v1/transcriptions/{id}"),
        format!("/v1/transcriptions/{id}/transcript?format=txt"),
    ] {
        let (status, body) = app.get_json(&bob, &path).await;
        assert_eq!(status, missing_status, "{path}");
        assert_eq!(status, 404);
        assert_eq!(body["error"], missing_body["error"], "{path}");
    }
    let (_, list) = app.get_json(&bob, "/v1/transcriptions").await;
    assert_eq!(list["items"], Value::Array(vec![]));
    assert_eq!(
        app.delete(&bob, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        404
    );

    // Alice's record and audio are untouched.
    let (status, record) = app
        .get_json(&alice, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(record["status"], "completed");
    assert_eq!(app.audio_files().len(), 1);
    let (_, list) = app.get_json(&alice, "/v1/transcriptions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}
