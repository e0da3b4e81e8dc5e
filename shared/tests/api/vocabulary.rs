//! Each user's medical vocabulary: kept per owner, checked, audited without its terms, and
//! given to the engine after the deployment's, with the upload's prompt last.

use chrono::{Duration, Utc};
use mmt_core::domain::{AuditAction, AuditQuery};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

async fn put(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .put(app.url("/v1/vocabulary"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn each_user_keeps_their_own_vocabulary_and_the_engine_gets_it_after_the_deployments() {
    let app = spawn_app_with(&[("VOCABULARY", "Lisinopril, Metformin")]).await;
    let (alice, bob) = (app.guest_token().await, app.guest_token().await);

    let (status, empty) = app.get_json(&alice, "/v1/vocabulary").await;
    assert_eq!(status, 200);
    assert_eq!(empty["terms"], json!([]));
    assert_eq!(
        empty["deployment_terms"],
        json!(["Lisinopril", "Metformin"])
    );
    assert_eq!(empty["prompt_token_budget"], 223);

    let (status, saved) = put(
        &app,
        &alice,
        json!({"terms": [" Dr.  Okafor ", "Ashby clinic", "dr. okafor", ""]}),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        saved["terms"],
        json!(["Dr. Okafor", "Ashby clinic"]),
        "tidied"
    );
    assert!(saved["estimated_prompt_tokens"].as_u64().unwrap() > 0);
    let (_, read) = app.get_json(&alice, "/v1/vocabulary").await;
    assert_eq!(read["terms"], saved["terms"]);
    let (_, bobs) = app.get_json(&bob, "/v1/vocabulary").await;
    assert_eq!(
        bobs["terms"],
        json!([]),
        "one user's terms are not another's"
    );

    // The engine's prompt: the deployment's terms, the owner's, then the upload's prompt.
    app.upload(
        &alice,
        crate::helpers::tone(),
        "a.wav",
        &[("prompt", "Follow-up visit.")],
    )
    .await;
    app.upload(&bob, crate::helpers::tone(), "b.wav", &[]).await;
    app.drain_jobs().await;
    let mut prompts: Vec<Option<String>> = app
        .openai
        .requests()
        .into_iter()
        .map(|r| r.prompt)
        .collect();
    prompts.sort();
    assert_eq!(
        prompts,
        [
            Some("Lisinopril, Metformin, Dr. Okafor, Ashby clinic. Follow-up visit.".to_owned()),
            Some("Lisinopril, Metformin.".to_owned()),
        ]
    );

    // Cleared with an empty list.
    let (status, cleared) = put(&app, &alice, json!({"terms": []})).await;
    assert_eq!((status, &cleared["terms"]), (200, &json!([])));
    let (_, read) = app.get_json(&alice, "/v1/vocabulary").await;
    assert_eq!(read["terms"], json!([]));

    // Audited, counting terms, never naming them.
    let events = app
        .state
        .audit
        .query(&AuditQuery {
            since: Utc::now() - Duration::minutes(5),
            until: Utc::now() + Duration::minutes(1),
            subject: None,
            record_id: None,
            action: Some(AuditAction::VocabularyChange),
            limit: 10,
        })
        .await
        .unwrap();
    let details: Vec<_> = events.iter().map(|e| e.detail.clone().unwrap()).collect();
    assert_eq!(details, ["0 terms", "2 terms"], "newest first");
    assert!(!format!("{events:?}").contains("Okafor"));
}

#[tokio::test]
async fn a_bad_vocabulary_is_refused_and_the_old_one_kept() {
    let app = spawn_app_with(&[]).await;
    let token = app.guest_token().await;
    assert_eq!(
        put(&app, &token, json!({"terms": ["Ozempic"]})).await.0,
        200
    );
    let too_many: Vec<String> = (0..201).map(|i| format!("term{i}")).collect();
    for (body, says) in [
        (json!({"terms": too_many}), "at most 200 terms"),
        (
            json!({"terms": ["ok", "x".repeat(65)]}),
            "term 2 is longer than 64",
        ),
        (json!({"terms": ["Smith, John"]}), "term 1 contains a comma"),
        (json!({"terms": ["nul\u{0}"]}), "control character"),
    ] {
        let (status, error) = put(&app, &token, body).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["code"], "invalid_vocabulary");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(says),
            "{error}"
        );
    }
    let (status, _) = put(&app, &token, json!({"words": ["Ozempic"]})).await;
    assert_eq!(status, 400, "unknown fields are refused");
    let (_, read) = app.get_json(&token, "/v1/vocabulary").await;
    assert_eq!(read["terms"], json!(["Ozempic"]));

    let anonymous = app
        .client
        .get(app.url("/v1/vocabulary"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_vocabulary_over_the_budget_loses_its_earliest_terms_not_the_upload_prompt() {
    let app = spawn_app_with(&[]).await;
    let token = app.guest_token().await;
    // 200 terms of 12 bytes make about 1,400 estimated tokens: most must be left out.
    let terms: Vec<String> = (0..200).map(|i| format!("Drugname{i:04}")).collect();
    assert_eq!(put(&app, &token, json!({ "terms": terms })).await.0, 200);
    app.upload(
        &token,
        crate::helpers::tone(),
        "a.wav",
        &[("prompt", "Cardiology.")],
    )
    .await;
    app.drain_jobs().await;
    let prompt = app.openai.requests()[0].prompt.clone().unwrap();
    assert!(prompt.ends_with("Drugname0199. Cardiology."), "{prompt}");
    assert!(
        !prompt.contains("Drugname0000"),
        "the earliest terms go first"
    );
    assert!(
        mmt_core::domain::estimated_tokens(&prompt) <= 223,
        "{} bytes",
        prompt.len()
    );
}

#[test]
fn whisper_initial_prompt_is_refused_in_favour_of_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = std::collections::HashMap::new();
    env.insert("DATA_DIR".to_owned(), dir.path().display().to_string());
    env.insert("WHISPER_INITIAL_PROMPT".to_owned(), "metformin".to_owned());
    let err = mmt_core::Config::from_map(&env).unwrap_err().to_string();
    assert!(err.contains("VOCABULARY"), "{err}");
    env.remove("WHISPER_INITIAL_PROMPT");
    env.insert("VOCABULARY".to_owned(), format!("{},ok", "x".repeat(65)));
    let err = mmt_core::Config::from_map(&env).unwrap_err().to_string();
    assert!(err.contains("VOCABULARY") && err.contains("64"), "{err}");
}
