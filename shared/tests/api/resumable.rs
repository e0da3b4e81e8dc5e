//! Resumable uploads as a client on a poor network sends them: a recording in parts, one
//! connection cut mid-part, the upload asked what arrived, the part sent again, completed, and
//! transcribed by the local Whisper engine — on the local file store (parts through this
//! server) and on S3 (parts to presigned URLs, played by moto_server).
//!
//! The recording is real speech at 48 kHz stereo (what browsers record), MMT_RESUMABLE_UPLOAD_MB
//! large (default 20: three parts). `make large-upload-check` runs these with 300.

use std::process::Command;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::helpers::{TestApp, run_tool, sha256_hex, spawn_app_with};

const SPOKEN: &str = "The patient reports a dry cough for three weeks and mild fever at night.";

pub fn upload_size() -> usize {
    let mb: usize = std::env::var("MMT_RESUMABLE_UPLOAD_MB")
        .ok()
        .map(|v| {
            v.parse()
                .expect("MMT_RESUMABLE_UPLOAD_MB is a number of MB")
        })
        .unwrap_or(20);
    mb * 1_000_000 + 1234
}

/// `size` bytes of WAV: espeak-ng speech, resampled by ffmpeg to 48 kHz stereo, repeated; and
/// how many times the sentence is heard whole.
pub fn speech_wav_of_size(size: usize) -> (Vec<u8>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let spoken = dir.path().join("spoken.wav");
    let raw = dir.path().join("spoken.s16le");
    run_tool(
        Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "140", "-w"])
            .arg(&spoken)
            .arg(SPOKEN),
    );
    run_tool(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(&spoken)
            .args([
                "-af",
                "apad=pad_dur=0.5",
                "-ar",
                "48000",
                "-ac",
                "2",
                "-f",
                "s16le",
            ])
            .arg(&raw),
    );
    let pcm = std::fs::read(&raw).unwrap();
    let data_len = (size - 44) & !3;
    let mut wav = Vec::with_capacity(size);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&2u16.to_le_bytes()); // stereo
    wav.extend_from_slice(&48_000u32.to_le_bytes());
    wav.extend_from_slice(&(48_000u32 * 4).to_le_bytes());
    wav.extend_from_slice(&4u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data_len as u32).to_le_bytes());
    while wav.len() < 44 + data_len {
        let take = pcm.len().min(44 + data_len - wav.len());
        wav.extend_from_slice(&pcm[..take]);
    }
    wav.resize(size, 0);
    (wav, data_len / pcm.len())
}

/// The API's answer, with its status.
async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The client side of the protocol, as the README's curl walk-through does it.
pub struct Uploader<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl Uploader<'_> {
    pub async fn create(&self, size: usize) -> Value {
        let (status, body) = call(
            self.app
                .client
                .post(self.app.url("/v1/uploads"))
                .bearer_auth(&self.token)
                .json(&json!({"filename": "visit.wav", "content_type": "audio/wav", "size": size})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    pub async fn status(&self, id: &str) -> (u16, Value) {
        call(
            self.app
                .client
                .get(self.app.url(&format!("/v1/uploads/{id}")))
                .bearer_auth(&self.token),
        )
        .await
    }

    pub async fn part_urls(&self, id: &str, parts: Option<&[u32]>) -> (u16, Value) {
        let body = match parts {
            Some(parts) => json!({ "parts": parts }),
            None => json!({}),
        };
        call(
            self.app
                .client
                .post(self.app.url(&format!("/v1/uploads/{id}/parts")))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    pub async fn complete(&self, id: &str) -> (u16, Value) {
        call(
            self.app
                .client
                .post(self.app.url(&format!("/v1/uploads/{id}/complete")))
                .bearer_auth(&self.token),
        )
        .await
    }

    /// Sends every missing part of `file` to the URLs the upload hands out; all must succeed.
    pub async fn send_all(&self, plan: &Value, file: &Bytes) {
        let (status, urls) = self.part_urls(plan["id"].as_str().unwrap(), None).await;
        assert_eq!(status, 200, "{urls}");
        for target in urls["parts"].as_array().unwrap() {
            let response = self
                .send(target, slice(file, plan, target), None)
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "part {}: {}",
                target["number"],
                response.text().await.unwrap()
            );
        }
    }

    /// Sends `bytes` to a part target with its headers only (no bearer token). `cut_after`:
    /// the connection drops after that many bytes.
    pub async fn send(
        &self,
        target: &Value,
        bytes: Bytes,
        cut_after: Option<usize>,
    ) -> reqwest::Result<reqwest::Response> {
        let url = target["url"].as_str().unwrap();
        let url = if url.starts_with('/') {
            self.app.url(url)
        } else {
            url.to_owned()
        };
        assert_eq!(target["method"], "PUT");
        let mut request = self
            .app
            .client
            .put(url)
            .header("content-length", bytes.len().to_string());
        for (name, value) in target["headers"].as_object().unwrap() {
            if !name.eq_ignore_ascii_case("content-length") {
                request = request.header(name, value.as_str().unwrap());
            }
        }
        let request = match cut_after {
            None => request.body(bytes),
            Some(cut) => {
                let sent = bytes.slice(..cut);
                let body = futures::stream::iter(vec![
                    Ok(sent),
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "network dropped",
                    )),
                ]);
                request.body(reqwest::Body::wrap_stream(body))
            }
        };
        request.send().await
    }
}

/// The part of `audio` a target names.
pub fn slice(audio: &Bytes, plan: &Value, target: &Value) -> Bytes {
    let part_size = plan["part_size"].as_u64().unwrap() as usize;
    let number = target["number"].as_u64().unwrap() as usize;
    let length = target["length"].as_u64().unwrap() as usize;
    audio.slice((number - 1) * part_size..(number - 1) * part_size + length)
}

/// Every part sent, part 2 cut off mid-way and resumed; returns the transcription id.
pub async fn upload_with_a_cut_connection(uploader: &Uploader<'_>, audio: &Bytes) -> String {
    let plan = uploader.create(audio.len()).await;
    let id = plan["id"].as_str().unwrap().to_owned();
    assert_eq!(plan["status"], "awaiting_upload");
    let count = plan["part_count"].as_u64().unwrap() as u32;
    assert!(count >= 3, "{plan}");
    assert_eq!(plan["missing"].as_array().unwrap().len(), count as usize);

    let (status, urls) = uploader.part_urls(&id, None).await;
    assert_eq!(status, 200, "{urls}");
    let targets = urls["parts"].as_array().unwrap().clone();
    assert_eq!(targets.len(), count as usize);
    for target in &targets {
        let bytes = slice(audio, &plan, target);
        if target["number"] == 2 {
            let cut = bytes.len() / 2;
            let outcome = uploader.send(target, bytes, Some(cut)).await;
            assert!(
                outcome.as_ref().map_or(true, |r| !r.status().is_success()),
                "a cut part must not be accepted"
            );
        } else {
            let response = uploader.send(target, bytes, None).await.unwrap();
            assert!(
                response.status().is_success(),
                "{}",
                response.text().await.unwrap()
            );
        }
    }

    // Resume: the upload says what is missing; completing now is refused.
    let (status, state) = uploader.status(&id).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["missing"], json!([2]), "{state}");
    let received_bytes: u64 = audio.len() as u64 - targets[1]["length"].as_u64().unwrap();
    assert_eq!(state["received_bytes"], received_bytes);
    let (status, refused) = uploader.complete(&id).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(": 2"),
        "{refused}"
    );

    let (status, urls) = uploader.part_urls(&id, None).await;
    assert_eq!(status, 200, "{urls}");
    let again = &urls["parts"][0];
    assert_eq!(
        (
            urls["parts"].as_array().unwrap().len(),
            again["number"].as_u64()
        ),
        (1, Some(2))
    );
    let response = uploader
        .send(again, slice(audio, &plan, again), None)
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let (_, state) = uploader.status(&id).await;
    assert_eq!(state["missing"], json!([]), "{state}");
    assert_eq!(state["received_bytes"], audio.len() as u64);

    let (status, accepted) = uploader.complete(&id).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["size_bytes"], audio.len() as u64);
    // Completing again (an answer lost on the way back) answers the same.
    let (status, again) = uploader.complete(&id).await;
    assert_eq!((status, &again["id"]), (202, &accepted["id"]));
    id
}

/// The whole recording was transcribed: the engine decoded all of it (every part, joined), the
/// segments run to its end, and the sentence is heard (as tiny.en hears espeak-ng).
pub fn assert_transcribed(record: &Value, audio: &[u8], repetitions: usize) {
    assert_eq!(record["status"], "completed", "{record}");
    let duration = record["duration_s"].as_f64().unwrap();
    // 48 kHz, stereo, 16-bit: 192,000 bytes a second after the 44-byte header.
    let recorded = (audio.len() - 44) as f64 / 192_000.0;
    assert!(
        (duration - recorded).abs() < 0.5,
        "decoded {duration} s of a {recorded} s recording"
    );
    let last_end = record["segments"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s["end"].as_f64())
        .unwrap_or_default();
    assert!(
        last_end >= 0.9 * duration,
        "segments stop at {last_end} s of {duration} s"
    );
    let text = record["text"].as_str().unwrap_or_default().to_lowercase();
    let heard = text.matches("weeks").count();
    assert!(
        text.contains("patient") && heard * 2 >= repetitions,
        "{heard} of {repetitions} sentences heard: {text}"
    );
}

#[cfg(feature = "whisper")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_in_parts_survives_a_cut_connection_and_is_transcribed_on_the_local_store() {
    let _whisper = crate::local_engine::WHISPER.lock().await;
    let app = crate::local_engine::local_app(&[("MAX_UPLOAD_BYTES", "2000000000")]).await;
    let uploader = Uploader {
        token: app.guest_token().await,
        app: &app,
    };
    let (audio, repetitions) = speech_wav_of_size(upload_size());
    let audio = Bytes::from(audio);

    let id = upload_with_a_cut_connection(&uploader, &audio).await;
    // The stored audio is the file, byte for byte, and no part is left behind.
    let stored = app.audio_files();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        sha256_hex(&std::fs::read(&stored[0]).unwrap()),
        sha256_hex(&audio)
    );
    app.drain_jobs().await;
    let (_, record) = app
        .get_json(&uploader.token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_transcribed(&record, &audio, repetitions);
}

#[tokio::test]
async fn part_urls_bind_their_part_length_and_upload_and_only_the_owner_drives_an_upload() {
    let app = spawn_app_with(&[]).await;
    let owner = Uploader {
        token: app.guest_token().await,
        app: &app,
    };
    let stranger = Uploader {
        token: app.guest_token().await,
        app: &app,
    };
    let audio = Bytes::from(mmt_testkit::tone_wav(300.0, 48_000));
    let plan = owner.create(audio.len()).await;
    let id = plan["id"].as_str().unwrap();
    let (_, urls) = owner.part_urls(id, None).await;
    let first = &urls["parts"][0];
    let second = &urls["parts"][1];
    assert!(
        first["headers"].as_object().unwrap().is_empty(),
        "no bearer token, no headers"
    );

    // A body of any other length is refused and nothing is kept.
    let part = slice(&audio, &plan, first);
    for wrong in [
        part.slice(..part.len() - 1),
        Bytes::from([part.to_vec(), vec![0]].concat()),
    ] {
        let response = owner.send(first, wrong, None).await.unwrap();
        assert_eq!(response.status(), 400);
    }
    // Part 1's URL does not take part 2, nor another upload's; a forged or missing grant fails;
    // the bearer token is no grant.
    let url = first["url"].as_str().unwrap();
    let other = owner.create(audio.len()).await;
    let other_id = other["id"].as_str().unwrap();
    let token = url.split("token=").nth(1).unwrap();
    for (path, bearer) in [
        (format!("/v1/uploads/{id}/parts/2?token={token}"), None),
        (
            format!("/v1/uploads/{other_id}/parts/1?token={token}"),
            None,
        ),
        (
            format!(
                "/v1/uploads/{id}/parts/1?token={}x",
                &token[..token.len() - 1]
            ),
            None,
        ),
        (
            format!("/v1/uploads/{id}/parts/1?token={}", owner.token),
            None,
        ),
        (
            format!("/v1/uploads/{id}/parts/1"),
            Some(owner.token.clone()),
        ),
    ] {
        let mut request = app.client.put(app.url(&path)).body(part.clone());
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert!(status == 403 || status == 400, "{path}: {status}");
    }
    let (_, state) = owner.status(id).await;
    assert_eq!(state["received"], json!([]), "nothing was stored: {state}");

    // Someone else's upload does not exist for them.
    for (status, body) in [
        stranger.status(id).await,
        stranger.part_urls(id, None).await,
        stranger.complete(id).await,
    ] {
        assert_eq!(status, 404, "{body}");
    }
    // Part numbers outside the upload, and completing with parts missing.
    let (status, _) = owner.part_urls(id, Some(&[0])).await;
    assert_eq!(status, 400);
    let (status, _) = owner
        .part_urls(id, Some(&[plan["part_count"].as_u64().unwrap() as u32 + 1]))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        owner
            .send(second, slice(&audio, &plan, second), None)
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, refused) = owner.complete(id).await;
    assert_eq!(status, 409);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing: 1,"),
        "{refused}"
    );
}

#[tokio::test]
async fn an_upload_that_is_not_audio_is_refused_when_completed_and_nothing_is_kept() {
    let app = spawn_app_with(&[]).await;
    let uploader = Uploader {
        token: app.guest_token().await,
        app: &app,
    };
    let document = Bytes::from(
        b"%PDF-1.7 not a recording"
            .iter()
            .copied()
            .cycle()
            .take(9_000_000)
            .collect::<Vec<u8>>(),
    );
    let plan = uploader.create(document.len()).await;
    let id = plan["id"].as_str().unwrap();
    uploader.send_all(&plan, &document).await;
    let (status, body) = uploader.complete(id).await;
    assert_eq!(status, 415, "{body}");
    assert!(app.audio_files().is_empty(), "{:?}", app.audio_files());
    let (_, record) = app
        .get_json(&uploader.token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(record["status"], "failed");
    assert!(app.openai.requests().is_empty());
}

#[tokio::test]
async fn deleting_an_unfinished_upload_removes_its_parts() {
    let app = spawn_app_with(&[]).await;
    let uploader = Uploader {
        token: app.guest_token().await,
        app: &app,
    };
    let audio = Bytes::from(mmt_testkit::tone_wav(300.0, 48_000));
    let plan = uploader.create(audio.len()).await;
    let id = plan["id"].as_str().unwrap();
    let (_, urls) = uploader.part_urls(id, Some(&[1])).await;
    let target = &urls["parts"][0];
    assert_eq!(
        uploader
            .send(target, slice(&audio, &plan, target), None)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.audio_files().len(), 1);
    let deleted = app
        .delete(&uploader.token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(deleted.status(), 204);
    assert!(app.audio_files().is_empty(), "{:?}", app.audio_files());
    let (status, _) = uploader.status(id).await;
    assert_eq!(status, 404);
}
