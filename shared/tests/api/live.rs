//! Live dictation (`GET /v1/stream`) on the real engine (tiny.en) with real speech
//! (espeak-ng), streamed at real-time pace by a WebSocket client, and hostile clients.

use std::{process::Command, time::Duration};

use mmt_testkit::live::{Plan, Run, dictate, pcm16_of};
use serde_json::Value;

use crate::{
    helpers::{TestApp, run_tool},
    local_engine::{WHISPER, local_app, word_error_rate},
};

/// A dictation of several sentences with pauses between them, as a clinician speaks.
const SENTENCES: &[&str] = &[
    "The patient reports a dry cough and a mild fever that started four days ago.",
    "She has no chest pain and her breathing is normal at rest.",
    "We will prescribe rest, plenty of fluids and a follow up visit next week.",
];
const PAUSE_S: f64 = 1.5;

/// The sentences spoken by espeak-ng, resampled to 16 kHz by ffmpeg, with `PAUSE_S` of
/// silence after each; and the second at which each sentence ends.
fn dictation(dir: &std::path::Path) -> (Vec<i16>, Vec<f64>) {
    let mut samples = Vec::new();
    let mut ends = Vec::new();
    for (i, sentence) in SENTENCES.iter().enumerate() {
        let wav = dir.join(format!("sentence-{i}.wav"));
        run_tool(
            Command::new("espeak-ng")
                .args(["-v", "en-us", "-s", "150", "-w"])
                .arg(&wav)
                .arg(sentence),
        );
        samples.extend(pcm16_of(&wav).unwrap());
        ends.push(samples.len() as f64 / 16_000.0);
        samples.extend(std::iter::repeat_n(0i16, (PAUSE_S * 16_000.0) as usize));
    }
    (samples, ends)
}

fn ws_url(app: &TestApp) -> String {
    format!("{}/v1/stream", app.address.replacen("http", "ws", 1))
}

fn close_code(run: &Run) -> u16 {
    run.close.as_ref().map_or(0, |(code, _)| *code)
}

fn significant_words(sentence: &str) -> Vec<String> {
    sentence
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| w.len() >= 4)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_appear_while_speaking_and_the_session_becomes_a_record_as_good_as_an_upload() {
    let _one_at_a_time = WHISPER.lock().await;
    let app = local_app(&[("LIVE_MAX_STREAMS", "8")]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    let (samples, sentence_ends) = dictation(dir.path());

    let run = dictate(
        &ws_url(&app),
        &samples,
        &Plan::real_time(&token),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(close_code(&run), 1000, "{:?}", run.events);
    let ready = run.of_kind("ready").next().expect("a ready message");
    assert_eq!(ready.message["sample_rate"], 16_000);

    // Each sentence shows some of its words before it has been fully spoken.
    for (sentence, end) in SENTENCES.iter().zip(&sentence_ends) {
        let words = significant_words(sentence);
        let early = run
            .events
            .iter()
            .filter(|e| e.at.as_secs_f64() < *end)
            .filter(|e| e.message["type"] == "partial" || e.message["type"] == "final")
            .any(|e| {
                let text = e.message.to_string().to_lowercase();
                words.iter().any(|w| text.contains(w.as_str()))
            });
        assert!(
            early,
            "nothing of {sentence:?} before {end:.1} s: {:?}",
            run.events
        );
    }
    // Committed text is never sent twice, and the page's view equals the saved transcript.
    let committed = run.committed_text();
    let id = run.saved_id().expect("the saved record's id");
    let (status, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(record["status"], "completed");
    let live_text = record["text"].as_str().unwrap().to_owned();
    assert_eq!(live_text, committed);
    assert!(record["segments"].as_array().unwrap().len() >= SENTENCES.len());

    // The same audio uploaded and transcribed in one piece.
    let spoken = SENTENCES.join(" ");
    let live_wer = word_error_rate(&spoken, &live_text);
    let wav = dir.path().join("whole.wav");
    let raw = dir.path().join("whole.pcm");
    std::fs::write(
        &raw,
        samples
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    run_tool(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "s16le",
                "-ar",
                "16000",
                "-ac",
                "1",
                "-i",
            ])
            .arg(&raw)
            .arg(&wav),
    );
    let response = app
        .upload(&token, std::fs::read(&wav).unwrap(), "whole.wav", &[])
        .await;
    assert_eq!(response.status(), 202);
    let batch_id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_jobs().await;
    let (_, batch) = app
        .get_json(&token, &format!("/v1/transcriptions/{batch_id}"))
        .await;
    let batch_wer = word_error_rate(&spoken, batch["text"].as_str().unwrap());
    println!("live WER {live_wer:.3}, batch WER {batch_wer:.3}: {live_text}");
    assert!(
        live_wer <= batch_wer + 0.05,
        "live WER {live_wer:.3} vs batch {batch_wer:.3}: {live_text:?}"
    );

    // The recording is kept like an upload's (sealed where the store seals): the whole
    // session, as WAV.
    let key = mmt_core::domain::BlobKey::for_transcription(&id.parse().unwrap());
    let mut audio = app.state.blobs.get(&key).await.unwrap();
    let mut stored = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut audio).await {
        stored.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(&stored[..4], b"RIFF");
    assert_eq!(stored.len(), 44 + samples.len() * 2);
    assert_eq!(&stored[44..46], &samples[0].to_le_bytes());
}

/// Silence at 16 kHz: enough for the limits, no decoding to wait for.
fn silence(seconds: f64) -> Vec<i16> {
    vec![0; (seconds * 16_000.0) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_closed_with_a_code_that_says_why_while_others_are_served() {
    let _one_at_a_time = WHISPER.lock().await;
    let app = local_app(&[
        ("LIVE_IDLE_TIMEOUT_SECS", "3"),
        ("LIVE_MAX_SESSION_SECS", "10"),
        ("LIVE_STREAMS_PER_USER", "1"),
        ("LIVE_MAX_STREAMS", "8"),
    ])
    .await;
    let url = ws_url(&app);
    let wait = Duration::from_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let (speech, _) = dictation(dir.path());
    let honest_token = app.guest_token().await;
    let honest = {
        let (url, plan) = (url.clone(), Plan::real_time(&honest_token));
        let speech = speech[..16_000 * 8].to_vec();
        tokio::spawn(async move { dictate(&url, &speech, &plan, wait).await.unwrap() })
    };

    let bad_token = dictate(&url, &silence(1.0), &Plan::real_time("not-a-token"), wait)
        .await
        .unwrap();
    assert_eq!(close_code(&bad_token), 4401, "{bad_token:?}");

    let mut foreign = Plan::real_time(&app.guest_token().await);
    foreign.origin = Some("https://evil.example".into());
    let foreign = dictate(&url, &silence(1.0), &foreign, wait).await.unwrap();
    assert_eq!(close_code(&foreign), 4403, "{foreign:?}");

    let mut oversized = Plan::real_time(&app.guest_token().await);
    oversized.frame_ms = 2_000; // 64,000 bytes, over the 32,000-byte limit
    let oversized = dictate(&url, &silence(4.0), &oversized, wait)
        .await
        .unwrap();
    assert_eq!(close_code(&oversized), 1009, "{oversized:?}");

    let mut flood = Plan::real_time(&app.guest_token().await);
    flood.pace = 20.0;
    let flood = dictate(&url, &silence(60.0), &flood, wait).await.unwrap();
    assert_eq!(close_code(&flood), 4429, "{flood:?}");
    assert!(
        flood.sent_s < 30.0,
        "the flood was stopped early: {} s",
        flood.sent_s
    );

    let mut deaf = Plan::real_time(&app.guest_token().await);
    deaf.reads = false;
    let deaf = dictate(&url, &silence(8.0), &deaf, wait).await.unwrap();
    assert_eq!(close_code(&deaf), 4408, "{deaf:?}");
    assert!(
        deaf.saved_id().is_some(),
        "what the deaf client sent is kept: {deaf:?}"
    );

    let long_token = app.guest_token().await;
    let long = dictate(&url, &silence(14.0), &Plan::real_time(&long_token), wait)
        .await
        .unwrap();
    assert_eq!(close_code(&long), 4413, "{long:?}");
    let id = long.saved_id().expect("the session so far is saved");
    let (_, record) = app
        .get_json(&long_token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert!(
        (record["duration_s"].as_f64().unwrap() - 10.0).abs() < 0.2,
        "{record}"
    );

    // One user, two sessions at once: the second is refused, the first goes on.
    let twice = app.guest_token().await;
    let first = {
        let (url, plan) = (url.clone(), Plan::real_time(&twice));
        tokio::spawn(async move { dictate(&url, &silence(3.0), &plan, wait).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let second = dictate(&url, &silence(1.0), &Plan::real_time(&twice), wait)
        .await
        .unwrap();
    assert_eq!(close_code(&second), 4429, "{second:?}");
    assert_eq!(close_code(&first.await.unwrap()), 1000);

    let honest = honest.await.unwrap();
    assert_eq!(close_code(&honest), 1000, "{honest:?}");
    assert!(!honest.committed_text().is_empty(), "{honest:?}");
    app.assert_live().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_beyond_the_machines_capacity_is_refused_at_start() {
    let _one_at_a_time = WHISPER.lock().await;
    let app = local_app(&[("LIVE_MAX_STREAMS", "1")]).await;
    let url = ws_url(&app);
    let wait = Duration::from_secs(30);
    let first = {
        let (url, plan) = (url.clone(), Plan::real_time(&app.guest_token().await));
        tokio::spawn(async move { dictate(&url, &silence(3.0), &plan, wait).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let refused = dictate(
        &url,
        &silence(1.0),
        &Plan::real_time(&app.guest_token().await),
        wait,
    )
    .await
    .unwrap();
    assert_eq!(close_code(&refused), 1013, "{refused:?}");
    let error = refused.of_kind("error").next().expect("an error message");
    assert_eq!(error.message["code"], "at_capacity");
    assert!(
        error.message["message"]
            .as_str()
            .unwrap()
            .contains("upload")
    );
    assert_eq!(close_code(&first.await.unwrap()), 1000);

    // Measured capacity: the default derives the limit from what a decode costs here.
    let measured = local_app(&[]).await;
    let live = measured.state.live.clone().expect("live dictation is on");
    assert_eq!(
        live.capacity(),
        None,
        "not measured before the first session"
    );
    let run = dictate(
        &ws_url(&measured),
        &silence(1.0),
        &Plan::real_time(&measured.guest_token().await),
        wait,
    )
    .await
    .unwrap();
    assert_eq!(close_code(&run), 1000, "{run:?}");
    assert!(
        live.capacity().unwrap() >= 1,
        "tiny.en keeps up on this machine"
    );
}

#[tokio::test]
async fn live_dictation_is_off_without_the_local_engine() {
    let app = crate::helpers::spawn_app().await;
    let response = app.client.get(app.url("/v1/stream")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ENABLE_LIVE_DICTATION"),
        "{body}"
    );
    let (_, status) = app.get_json("", "/demo/status").await;
    assert_eq!(
        status["live_dictation"], false,
        "the page offers no Dictate button"
    );
}

/// The README's client example, run as written against the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_client_example_dictates_and_gets_the_saved_record() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let example = readme
        .split("<!-- live-client-example -->\n```python\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the README's live client example");
    assert!(example.lines().count() <= 22, "a short example");
    let _one_at_a_time = WHISPER.lock().await;
    let app = local_app(&[]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("dictate.py");
    std::fs::write(&script, example).unwrap();
    let wav = dir.path().join("sentence.wav");
    run_tool(
        Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&wav)
            .arg(SENTENCES[1]),
    );
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(ws_url(&app))
        .arg(&token)
        .arg(&wav)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("closed 1000"), "{stdout}");
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("saved "))
        .expect("the saved record's id")
        .trim();
    let (status, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(status, 200);
    let text = record["text"].as_str().unwrap().to_lowercase();
    assert!(
        text.contains("pain") && text.contains("breathing"),
        "{text}"
    );
}

/// The GPU worker's role (`mmt worker`): it serves live dictation with the API's token
/// verification, and a SIGTERM mid-dictation saves the session and closes it with 1012.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_serves_live_dictation_and_a_sigterm_saves_the_session() {
    let _one_at_a_time = WHISPER.lock().await;
    let app = crate::helpers::spawn_app().await;
    let token = app.guest_token().await;
    let (model, vad) = (
        crate::local_engine::model_path(),
        crate::local_engine::vad_model_path(),
    );
    let env = crate::helpers::test_env(
        &app.dir,
        &app.openai,
        &[
            ("ENABLE_LOCAL_TRANSCRIPTION", "true"),
            ("WHISPER_MODEL_PATH", &model),
            ("WHISPER_VAD_MODEL_PATH", &vad),
            ("WHISPER_THREADS", "2"),
            ("LIVE_MAX_STREAMS", "2"),
            ("SHUTDOWN_GRACE_SECS", "10"),
        ],
    );
    let log = app.dir.path().join("worker.log");
    let mut worker = crate::process::start_mode("worker", &env, &log, None).await;
    let dir = tempfile::tempdir().unwrap();
    let (speech, _) = dictation(dir.path());
    let url = format!("{}/v1/stream", worker.base.replacen("http", "ws", 1));
    let plan = Plan::real_time(&token);
    let dictating = tokio::spawn(async move {
        dictate(&url, &speech, &plan, Duration::from_secs(30))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_secs(7)).await;
    worker.sigterm();
    let run = dictating.await.unwrap();
    assert_eq!(
        close_code(&run),
        1012,
        "{run:?}: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(worker.wait_exit(Duration::from_secs(20)).await.success());
    let id = run
        .saved_id()
        .expect("the session is saved before the worker exits");
    let (status, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(record["status"], "completed");
    assert_eq!(record["text"].as_str().unwrap(), run.committed_text());
    let stranger = app.guest_token().await;
    let (status, _) = app
        .get_json(&stranger, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(status, 404, "another user does not see it");
    assert!(
        run.committed_text().to_lowercase().contains("fever"),
        "{run:?}"
    );
}
