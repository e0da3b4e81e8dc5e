//! Field encryption at rest: with ENABLE_FIELD_ENCRYPTION the raw SQLite file holds none of
//! the PHI (transcript, prompt, file name) nor the owner's vocabulary, its owner still reads it
//! all, and a record whose
//! key is gone from the ring is an error, never garbage.

use crate::helpers::{TestApp, spawn_app_with, tone};

const PHRASE: &str = "Zebediah Quarrington reports palpitations since Tuesday";
const PROMPT: &str = "amiodarone Quarrington";
const FILE_NAME: &str = "quarrington-cardiology.wav";
const VOCABULARY: [&str; 2] = ["Zanubrutinib", "Dr. Vexworth"];
const K1: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const K2: &str = "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

/// An app that seals PHI under k1.
async fn sealed_with_k1() -> TestApp {
    spawn_app_with(&[
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        ("ENCRYPTION_KEYS", K1),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
    ])
    .await
}

async fn transcribe_planted(app: &TestApp) -> (String, String) {
    app.openai.set_transcript(PHRASE);
    let token = app.guest_token().await;
    let saved = app
        .client
        .put(app.url("/v1/vocabulary"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "terms": VOCABULARY }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    let response = app
        .upload(&token, tone(), FILE_NAME, &[("prompt", PROMPT)])
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_jobs().await;
    (token, id)
}

/// Everything SQLite has written for this app: the database file and its write-ahead log.
fn raw_database(app: &TestApp) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["mmt.db", "mmt.db-wal"] {
        if let Ok(b) = std::fs::read(app.dir.path().join(name)) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty());
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn without_encryption_the_raw_file_holds_the_phi() {
    // The control: proves the search below can find what it looks for.
    let app = spawn_app_with(&[]).await;
    transcribe_planted(&app).await;
    let raw = raw_database(&app);
    assert!(contains(&raw, "Quarrington reports"));
    assert!(contains(&raw, "amiodarone"));
    assert!(contains(&raw, "Vexworth"));
}

#[tokio::test]
async fn with_encryption_the_raw_file_holds_no_phi_and_the_owner_reads_it_all() {
    let app = sealed_with_k1().await;
    let (token, id) = transcribe_planted(&app).await;
    let raw = raw_database(&app);
    for planted in [
        "Quarrington",
        "palpitations",
        "amiodarone",
        "cardiology",
        "Vexworth",
        "Zanubrutinib",
    ] {
        assert!(!contains(&raw, planted), "{planted} is in the raw database");
    }
    assert!(
        contains(&raw, "mmt:v2:k1:"),
        "record fields are there, bound to their owner"
    );
    assert!(contains(&raw, "mmt:v1:k1:"), "and the vocabulary");

    let (status, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(record["status"], "completed");
    assert_eq!(record["text"], PHRASE);
    assert_eq!(record["file_name"], FILE_NAME);
    assert!(!record["segments"].as_array().unwrap().is_empty());
    let srt = app
        .get(
            &token,
            &format!("/v1/transcriptions/{id}/transcript?format=srt"),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(srt.contains("Quarrington"), "{srt}");
}

/// The same data directory, opened again with another key ring (a restart after rotation).
async fn reopen(app: &TestApp, keys: &str, primary: &str) -> mmt_core::AppState {
    let env = crate::helpers::test_env(
        &app.dir,
        &app.openai,
        &[
            ("ENABLE_FIELD_ENCRYPTION", "1"),
            ("ENCRYPTION_KEYS", keys),
            ("PRIMARY_ENCRYPTION_KEY_ID", primary),
        ],
    );
    mmt_core::AppState::from_config(mmt_core::Config::from_map(&env).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn rotation_reads_old_records_and_a_missing_key_is_an_error_not_garbage() {
    let app = sealed_with_k1().await;
    let (_, id) = transcribe_planted(&app).await;
    let id: mmt_core::domain::TranscriptionId = id.parse().unwrap();

    // k2 is primary now; k1 is still in the ring: the old record reads as before.
    let rotated = reopen(&app, &format!("{K1},{K2}"), "k2").await;
    let record = rotated.records.get(&id).await.unwrap().unwrap();
    assert_eq!(record.transcript.unwrap().text, PHRASE);
    assert_eq!(record.prompt.as_deref(), Some(PROMPT));

    // k1 retired before its records were re-encrypted: a clear error naming the key.
    let retired = reopen(&app, K2, "k2").await;
    let err = retired.records.get(&id).await.unwrap_err().to_string();
    assert!(err.contains("k1") && !err.contains("Quarrington"), "{err}");
}

/// A stretch of the uploaded audio: what a raw file holding the recording would contain.
fn audio_window() -> Vec<u8> {
    let audio = tone();
    audio[audio.len() / 2..audio.len() / 2 + 64].to_vec()
}

fn audio_directory_holds(app: &TestApp, window: &[u8]) -> bool {
    crate::helpers::files_under(&app.dir.path().join("audio"))
        .iter()
        .any(|file| {
            std::fs::read(file)
                .unwrap()
                .windows(window.len())
                .any(|w| w == window)
        })
}

#[tokio::test]
async fn with_encryption_the_audio_directory_holds_no_audio_bytes_and_the_engine_gets_them_all() {
    let window = audio_window();
    // The control: without encryption the search finds the recording.
    let plain = spawn_app_with(&[]).await;
    transcribe_planted(&plain).await;
    assert!(audio_directory_holds(&plain, &window));

    let app = sealed_with_k1().await;
    let (token, id) = transcribe_planted(&app).await;
    assert_eq!(app.audio_files().len(), 1, "the recording is kept");
    assert!(!audio_directory_holds(&app, &window));
    // The engine was sent exactly the uploaded bytes, opened on the way out.
    let sent: Vec<Option<String>> = app
        .openai
        .requests()
        .into_iter()
        .map(|r| r.file_sha256)
        .collect();
    assert_eq!(sent, vec![Some(crate::helpers::sha256_hex(&tone()))]);
    let (status, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(
        (status, record["status"].as_str()),
        (200, Some("completed"))
    );
}

/// Opens the same data directory as `app` with another key ring and rotates.
async fn rotate(app: &TestApp, keys: &str, primary: &str) -> mmt_core::app::RotationReport {
    let state = reopen(app, keys, primary).await;
    let rotation = state.key_rotation.clone().expect("encryption is on");
    let mut batches = 0;
    let report = rotation.run(2, |_| batches += 1).await.unwrap();
    assert!(batches >= 1);
    report
}

#[tokio::test]
async fn rotation_reseals_records_and_audio_so_the_old_key_can_leave_the_ring() {
    let app = sealed_with_k1().await;
    // Five recordings: more than one batch of two, so the rotation pages.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, id) = transcribe_planted(&app).await;
        ids.push(id.parse::<mmt_core::domain::TranscriptionId>().unwrap());
    }
    assert!(contains(&raw_database(&app), "mmt:v1:k1:"));

    let report = rotate(&app, &format!("{K1},{K2}"), "k2").await;
    assert_eq!(report.records_scanned, 5);
    assert_eq!(report.records_resealed, 5);
    assert_eq!(report.audio_resealed, 5);
    assert_eq!(report.vocabularies_resealed, 5, "one per guest");
    // Running it again finds nothing left to do (and is how an interrupted run resumes).
    let again = rotate(&app, &format!("{K1},{K2}"), "k2").await;
    assert_eq!(
        (
            again.records_resealed,
            again.audio_resealed,
            again.vocabularies_resealed
        ),
        (0, 0, 0)
    );

    // k1 retired: every record and every recording still opens, under k2 alone.
    let retired = reopen(&app, K2, "k2").await;
    for id in &ids {
        let record = retired.records.get(id).await.unwrap().unwrap();
        assert_eq!(record.transcript.unwrap().text, PHRASE);
        assert_eq!(record.prompt.as_deref(), Some(PROMPT));
        assert_eq!(record.file_name.as_deref(), Some(FILE_NAME));
        let vocabulary = retired
            .vocabularies
            .get(&record.owner)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(vocabulary.terms(), VOCABULARY);
        let mut audio = retired.blobs.get(&record.audio_key).await.unwrap();
        let mut bytes = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut audio).await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(bytes, tone());
    }
    let raw = raw_database(&app);
    assert!(
        !contains(&raw, "mmt:v1:k1:"),
        "no field is left under k1, not even in free pages or the write-ahead log"
    );
    assert!(contains(&raw, "mmt:v1:k2:"));
}

/// The owner is part of what seals a record's fields (security review, item 11): someone with
/// write access to the database who hands a record to another subject by rewriting its owner
/// column gets an error for that subject, never the transcript.
#[tokio::test]
async fn a_record_handed_to_another_owner_in_the_database_does_not_open() {
    let app = sealed_with_k1().await;
    let (_, id) = transcribe_planted(&app).await;
    let thief = app.guest_token().await;
    let (_, who) = app.get_json(&thief, "/v1/transcriptions").await;
    assert!(who["items"].as_array().unwrap().is_empty());
    let thief_subject = {
        let payload = thief.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        claims["sub"].as_str().unwrap().to_owned()
    };
    let db = rusqlite::Connection::open(app.dir.path().join("mmt.db")).unwrap();
    db.execute(
        "UPDATE transcriptions SET owner = ?1 WHERE id = ?2",
        [&thief_subject, &id],
    )
    .unwrap();
    drop(db);
    let response = app.get(&thief, &format!("/v1/transcriptions/{id}")).await;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(!body.contains("Quarrington"), "{body}");
}
