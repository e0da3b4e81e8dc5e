//! Correcting and structuring a transcript over the API: versions with author and time, a
//! concurrent edit refused, spoken headings split into sections, and the EHR push sending the
//! latest version with each section in its own SOAP field.

use mmt_testkit::openemr::FakeOpenEmr;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const DICTATION: &str = "Subjective: headache for two days, worse in the morning. \
    Objective. Blood pressure 120 over 80, neck supple. \
    Assessment, tension headache. Plan: ibuprofin 400 milligrams and review in a week.";

async fn patch(app: &TestApp, token: &str, id: &str, body: Value) -> (u16, Value) {
    let path = format!("/v1/transcriptions/{id}");
    app.send_json(reqwest::Method::PATCH, token, &path, &body)
        .await
}

fn section<'a>(view: &'a Value, key: &str) -> &'a str {
    view["note"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .and_then(|s| s["text"].as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_edit_is_a_new_version_and_the_original_is_kept() {
    let app = spawn_app_with(&[]).await;
    app.openai.set_transcript(DICTATION);
    let ana = app.clinician_token("ana");
    let id = app.upload_wav(&ana).await;
    app.drain_jobs().await;

    // Spoken headings arrive as sections, in version 1.
    let (_, view) = app
        .get_json(&ana, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(view["version"], 1, "{view}");
    assert_eq!(view["note"]["template"], "soap");
    assert_eq!(
        section(&view, "objective"),
        "Blood pressure 120 over 80, neck supple."
    );
    assert_eq!(
        section(&view, "plan"),
        "ibuprofin 400 milligrams and review in a week."
    );

    // One word corrected: version 2, by ana; the sections follow the text.
    let corrected = view["text"]
        .as_str()
        .unwrap()
        .replace("ibuprofin", "ibuprofen");
    let (status, saved) = patch(&app, &ana, &id, json!({"version": 1, "text": corrected})).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["version"], 2);
    assert_eq!(saved["edited_by"], "user:ana");
    assert!(saved["edited_at"].is_string());
    assert_eq!(
        section(&saved, "plan"),
        "ibuprofen 400 milligrams and review in a week."
    );
    assert!(
        !saved["segments"].as_array().unwrap().is_empty(),
        "the segments keep their times"
    );

    // An editor still on version 1 is refused, not allowed to overwrite version 2.
    let (status, stale) = patch(
        &app,
        &ana,
        &id,
        json!({"version": 1, "text": "Something else."}),
    )
    .await;
    assert_eq!(status, 409, "{stale}");

    // Sections edited directly.
    let (status, sectioned) = patch(
        &app,
        &ana,
        &id,
        json!({"version": 2, "note": {"template": "soap", "sections": [
            {"key": "subjective", "text": "Headache for two days."},
            {"key": "plan", "text": "Ibuprofen 400 mg; review in one week."}
        ]}}),
    )
    .await;
    assert_eq!(status, 200, "{sectioned}");
    assert_eq!(sectioned["version"], 3);
    assert_eq!(sectioned["note"]["sections"].as_array().unwrap().len(), 2);

    // Every version, with who and when; the engine's first, as it was.
    let (_, list) = app
        .get_json(&ana, &format!("/v1/transcriptions/{id}/versions?mask=none"))
        .await;
    let versions = list["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3, "{list}");
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["author"], Value::Null);
    assert!(versions[0]["text"].as_str().unwrap().contains("ibuprofin"));
    assert_eq!(versions[1]["author"], "user:ana");
    assert!(versions[1]["text"].as_str().unwrap().contains("ibuprofen"));
    assert_eq!(versions[2]["version"], 3);

    // Nobody else edits or reads them.
    let bo = app.clinician_token("bo");
    assert_eq!(
        patch(&app, &bo, &id, json!({"text": "hijacked"})).await.0,
        404
    );
    assert_eq!(
        app.get(&bo, &format!("/v1/transcriptions/{id}/versions"))
            .await
            .status(),
        404
    );
    // Bad sections are refused with a reason.
    let (status, bad) = patch(
        &app,
        &ana,
        &id,
        json!({"note": {"template": "soap", "sections": [{"key": "hpi", "text": "x"}]}}),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().contains("hpi"));
    // Segments whose times are not times, and text past the limit: refused, nothing saved.
    let (status, _) = patch(
        &app,
        &ana,
        &id,
        json!({"text": "x y", "segments": [{"start": 5.0, "end": 1.0, "text": "x y"}]}),
    )
    .await;
    assert_eq!(status, 400);
    let huge = "a".repeat(600 * 1024);
    assert_eq!(patch(&app, &ana, &id, json!({"text": huge})).await.0, 400);
    let (_, after) = app
        .get_json(&ana, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(after["version"], 3, "the refused edits saved nothing");
}

#[tokio::test]
async fn structuring_uses_the_templates_headings_or_says_none_was_spoken() {
    let app = spawn_app_with(&[]).await;
    app.openai.set_transcript(
        "Chief complaint: fall at home. History of present illness: tripped on a rug. \
         Allergies: none known. Exam: bruised left hip. Impression: contusion. Plan: rest.",
    );
    let ana = app.clinician_token("ana");
    let id = app.upload_wav(&ana).await;
    app.drain_jobs().await;
    let response = app
        .client
        .post(app.url(&format!("/v1/transcriptions/{id}/structure")))
        .bearer_auth(&ana)
        .json(&json!({"template": "history_and_physical"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["note"]["template"], "history_and_physical");
    assert_eq!(section(&view, "chief_complaint"), "fall at home.");
    assert_eq!(section(&view, "allergies"), "none known.");
    assert_eq!(section(&view, "exam"), "bruised left hip.");
    let fields: Vec<&str> = view["note"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "subjective",
            "subjective",
            "subjective",
            "objective",
            "assessment",
            "plan"
        ]
    );

    app.openai
        .set_transcript("The patient is well and needs nothing further today.");
    let plain = app.upload_wav(&ana).await;
    app.drain_jobs().await;
    let response = app
        .client
        .post(app.url(&format!("/v1/transcriptions/{plain}/structure")))
        .bearer_auth(&ana)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no soap section heading"),
        "{body}"
    );
}

#[tokio::test]
async fn the_push_sends_the_latest_version_each_section_in_its_own_field() {
    let emr = FakeOpenEmr::start("mmt-client", "refresh-1").await.unwrap();
    let patient = "946da619-c631-431a-a282-487cd6fb7802";
    let encounter = "946da61d-6b95-4f8e-abe5-534a25913b71";
    emr.add_patient(patient, 7, &[(encounter, 42)]);
    let base = emr.base_url();
    let app = spawn_app_with(&[
        ("EHR_TARGET", "openemr"),
        ("OPENEMR_BASE_URL", base.as_str()),
        ("OPENEMR_CLIENT_ID", "mmt-client"),
        ("OPENEMR_REFRESH_TOKEN", "refresh-1"),
    ])
    .await;
    app.openai.set_transcript(DICTATION);
    let ana = app.clinician_token("ana");
    let id = app.upload_wav(&ana).await;
    app.drain_jobs().await;
    let (_, view) = app
        .get_json(&ana, &format!("/v1/transcriptions/{id}"))
        .await;
    let corrected = view["text"]
        .as_str()
        .unwrap()
        .replace("ibuprofin", "ibuprofen");
    assert_eq!(
        patch(&app, &ana, &id, json!({"version": 1, "text": corrected}))
            .await
            .0,
        200
    );
    let response = app
        .client
        .post(app.url(&format!("/v1/transcriptions/{id}/ehr")))
        .bearer_auth(&ana)
        .json(&json!({"patient_id": patient, "encounter_id": encounter}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    while mmt_core::jobs::run_ehr_once(&app.state).await.is_some() {}
    let notes = emr.notes();
    assert_eq!(notes.len(), 1);
    let fields = &notes[0].fields;
    assert_eq!(
        fields["subjective"],
        "headache for two days, worse in the morning."
    );
    assert_eq!(
        fields["objective"],
        "Blood pressure 120 over 80, neck supple."
    );
    assert_eq!(fields["assessment"], "tension headache.");
    assert!(
        fields["plan"].starts_with("ibuprofen 400 milligrams"),
        "the edit went in: {}",
        fields["plan"]
    );
    assert!(fields["plan"].contains("[MMT delivery "));
}

#[tokio::test]
async fn an_empty_transcript_is_not_pushed() {
    let emr = FakeOpenEmr::start("mmt-client", "refresh-1").await.unwrap();
    let base = emr.base_url();
    let app = spawn_app_with(&[
        ("EHR_TARGET", "openemr"),
        ("OPENEMR_BASE_URL", base.as_str()),
        ("OPENEMR_CLIENT_ID", "mmt-client"),
        ("OPENEMR_REFRESH_TOKEN", "refresh-1"),
    ])
    .await;
    app.openai.set_transcript("Something short to start.");
    let ana = app.clinician_token("ana");
    let id = app.upload_wav(&ana).await;
    app.drain_jobs().await;
    assert_eq!(
        patch(&app, &ana, &id, json!({"text": "  "})).await.0,
        200,
        "an owner may clear the text"
    );
    let response = app
        .client
        .post(app.url(&format!("/v1/transcriptions/{id}/ehr")))
        .bearer_auth(&ana)
        .json(&json!({"patient_id": "946da619-c631-431a-a282-487cd6fb7802", "encounter_id": "42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "empty_transcript", "{body}");
    assert!(emr.notes().is_empty());
}

const CONVERSATION: &str = "What brings you in today? I have had a cough for a week and a bit of a \
    fever. Let me listen to your chest. Your chest sounds clear. It looks like a viral bronchitis, \
    so drink plenty of fluids and come back if it lasts another week.";

async fn structure(app: &TestApp, token: &str, id: &str, body: Value) -> (u16, Value) {
    let path = format!("/v1/transcriptions/{id}/structure");
    app.send_json(reqwest::Method::POST, token, &path, &body)
        .await
}

#[tokio::test]
async fn the_draft_model_sorts_a_conversation_into_sections_for_review() {
    let app = spawn_app_with(&[("NOTE_DRAFT_MODEL", "gpt-4o-mini")]).await;
    app.openai.set_transcript(CONVERSATION);
    let ana = app.clinician_token("ana");
    let id = app.upload_wav(&ana).await;
    app.drain_jobs().await;
    app.openai.set_chat_reply(
        json!({"subjective": "Cough for a week with a mild fever.", "objective": "Chest clear.",
               "assessment": "Viral bronchitis.", "plan": "Fluids; return if it lasts another week."})
        .to_string(),
        "stop",
    );
    // One 429 first: retried after its Retry-After, as the transcription engine is.
    app.openai.script([mmt_testkit::Failure::RateLimited {
        retry_after_s: Some(0),
    }]);
    let (status, view) = structure(&app, &ana, &id, json!({"method": "draft"})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["version"], 2);
    assert_eq!(view["edited_by"], "user:ana");
    assert_eq!(section(&view, "assessment"), "Viral bronchitis.");
    assert_eq!(
        view["text"], CONVERSATION,
        "the transcript itself is unchanged"
    );

    // What the model was sent: the documented request shape.
    let sent = app.openai.chat_requests();
    assert_eq!(sent.len(), 2, "the 429, then the retry");
    let request = &sent[1];
    assert_eq!(request["model"], "gpt-4o-mini");
    assert_eq!(request["response_format"]["type"], "json_object");
    assert_eq!(request["temperature"], 0);
    assert_eq!(request["messages"][0]["role"], "system");
    assert!(
        request["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("subjective, objective, assessment, plan")
    );
    assert_eq!(request["messages"][1]["content"], CONVERSATION);
}

#[tokio::test]
async fn draft_failures_are_told_apart_and_nothing_is_saved() {
    let app = spawn_app_with(&[("NOTE_DRAFT_MODEL", "gpt-4o-mini")]).await;
    app.openai.set_transcript(CONVERSATION);
    let ana = app.clinician_token("ana");
    let id = app.upload_wav(&ana).await;
    app.drain_jobs().await;
    let draft = json!({"method": "draft"});
    use mmt_testkit::Failure;
    // 5xx on every try (the first and OPENAI_MAX_RETRIES=2 more): busy, try again later.
    app.openai.script([
        Failure::ServerError(500),
        Failure::ServerError(502),
        Failure::ServerError(503),
    ]);
    let (status, body) = structure(&app, &ana, &id, draft.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("engine_unavailable")),
        "{body}"
    );
    // A rejected key: not retried, a gateway error that says why.
    app.openai.script([Failure::Unauthorized]);
    let before = app.openai.chat_requests().len();
    let (status, body) = structure(&app, &ana, &id, draft.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("draft_failed")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API key")
    );
    assert_eq!(
        app.openai.chat_requests().len(),
        before + 1,
        "a 401 is not retried"
    );
    // Cut off, or not JSON: unusable.
    app.openai
        .set_chat_reply("{\"subjective\": \"Cough for a", "length");
    assert_eq!(structure(&app, &ana, &id, draft.clone()).await.0, 502);
    app.openai
        .set_chat_reply("Here is your note: cough.", "stop");
    let (status, body) = structure(&app, &ana, &id, draft.clone()).await;
    assert_eq!(status, 502);
    assert!(body["error"]["message"].as_str().unwrap().contains("JSON"));
    // Nothing was saved by any of them.
    let (_, view) = app
        .get_json(&ana, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(view["version"], 1);
    // Guests' transcripts do not go to the draft model.
    let guest = app.guest_token().await;
    let guest_id = app.upload_wav(&guest).await;
    app.drain_jobs().await;
    assert_eq!(structure(&app, &guest, &guest_id, draft).await.0, 403);

    // Without NOTE_DRAFT_MODEL there are no drafts.
    let plain = spawn_app_with(&[]).await;
    plain.openai.set_transcript(CONVERSATION);
    let bo = plain.clinician_token("bo");
    let id = plain.upload_wav(&bo).await;
    plain.drain_jobs().await;
    let (status, body) = structure(&plain, &bo, &id, json!({"method": "draft"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("drafts_not_configured"))
    );
}
