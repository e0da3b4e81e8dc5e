//! Recordings whose headers lie (security review, item 1): every container MMT accepts, with
//! header fields claiming extreme or inconsistent values, uploaded to the real `mmt` server
//! as a separate process. Each upload ends refused or with a `failed` reason the user can
//! read, the server's own peak memory stays under 500 MB, and it keeps serving.

use std::{collections::HashMap, process::Command, time::Duration};

use mmt_testkit::hostile_audio::{lying_headers, recompute_ogg_crcs};
use serde_json::Value;

use crate::{
    helpers::{OPENAI_KEY, run_tool, test_env},
    local_engine::{WHISPER, model_path, vad_model_path},
    process::{start, start_with_address_space},
};

/// Each container MMT accepts, and the ffmpeg encoder of its seed.
const CONTAINERS: &[(&str, &str)] = &[
    ("wav", "pcm_s16le"),
    ("flac", "flac"),
    ("mp3", "libmp3lame"),
    ("m4a", "aac"),
    ("ogg", "libvorbis"),
    ("opus", "libopus"),
    ("webm", "libopus"),
];

/// A second of a 48 kHz stereo tone in the container `extension`.
fn seed(dir: &std::path::Path, extension: &str, codec: &str) -> Vec<u8> {
    let path = dir.join(format!("seed.{extension}"));
    run_tool(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
            .args(["-i", "sine=frequency=440:duration=1:sample_rate=48000"])
            .args(["-ac", "2", "-c:a", codec])
            .arg(&path),
    );
    std::fs::read(path).unwrap()
}

/// The server's peak resident memory so far (VmHWM), in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

struct Uploader {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Uploader {
    async fn guest(base: &str) -> Self {
        let http = reqwest::Client::new();
        let guest: Value = http
            .post(format!("{base}/auth/guest"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            http,
            base: base.to_owned(),
            token: guest["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// The record's id, or the refusal's error code when the upload itself is refused.
    async fn upload(&self, name: &str, bytes: Vec<u8>) -> Result<String, String> {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
        let response = self
            .http
            .post(format!("{}/v1/transcriptions", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        match status {
            202 => Ok(body["id"].as_str().unwrap().to_owned()),
            400..=499 => Err(body["error"]["code"].as_str().unwrap().to_owned()),
            other => panic!("{name}: {other} {body}"),
        }
    }

    async fn settled(&self, id: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let record: Value = self
                .http
                .get(format!("{}/v1/transcriptions/{id}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if record["status"] == "completed" || record["status"] == "failed" {
                return record;
            }
            assert!(std::time::Instant::now() < deadline, "still {record}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn server_env(
    dir: &tempfile::TempDir,
) -> (HashMap<String, String>, mmt_testkit::OpenAiContractServer) {
    let openai = mmt_testkit::OpenAiContractServer::start(OPENAI_KEY)
        .await
        .unwrap();
    let (model, vad) = (model_path(), vad_model_path());
    let env = test_env(
        dir,
        &openai,
        &[
            ("ENABLE_LOCAL_TRANSCRIPTION", "true"),
            ("DEFAULT_ENGINE", "local"),
            ("WHISPER_MODEL_PATH", model.as_str()),
            ("WHISPER_VAD_MODEL_PATH", vad.as_str()),
            ("WHISPER_THREADS", "2"),
            ("RATE_LIMIT_PER_MINUTE", "100000"),
        ],
    );
    (env, openai)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_whose_headers_lie_fail_with_a_reason_and_the_server_stays_small() {
    let _serial = WHISPER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (env, _openai) = server_env(&dir).await;
    let server = start(&env, &dir.path().join("server.log")).await;
    let pid = server.child.id();
    let uploader = Uploader::guest(&server.base).await;

    let mut outcomes = Vec::new();
    let mut genuine = Vec::new();
    for (extension, codec) in CONTAINERS {
        let seed = seed(dir.path(), extension, codec);
        if matches!(*extension, "ogg" | "opus") {
            let mut again = seed.clone();
            recompute_ogg_crcs(&mut again);
            assert!(
                again == seed,
                "the Ogg CRC code reproduces the encoder's CRCs"
            );
        }
        genuine.push((format!("genuine.{extension}"), seed.clone()));
        for lie in lying_headers(extension, &seed) {
            let outcome = match uploader.upload(&lie.name, lie.bytes).await {
                Ok(id) => {
                    let record = uploader.settled(&id).await;
                    let error = record["error"].as_str().unwrap_or_default().to_owned();
                    if record["status"] == "failed" {
                        assert!(
                            !error.is_empty() && !error.contains("internal"),
                            "{}: {record}",
                            lie.name
                        );
                        assert_eq!(
                            record["attempts"], 1,
                            "{}: a hostile file is not retried",
                            lie.name
                        );
                    }
                    format!("{}: {error}", record["status"].as_str().unwrap())
                }
                Err(code) => format!("refused: {code}"),
            };
            outcomes.push((lie.name, outcome));
        }
    }
    for (name, outcome) in &outcomes {
        eprintln!("{name:32} {outcome}");
    }
    assert!(outcomes.len() >= 60, "{} lies", outcomes.len());
    let failed = outcomes
        .iter()
        .filter(|(_, o)| o.starts_with("failed"))
        .count();
    assert!(
        failed >= 20,
        "most lies are caught while decoding: {failed}"
    );

    let peak = peak_rss_mb(pid);
    eprintln!("server peak RSS during the battery: {peak:.0} MB");
    assert!(peak < 500.0, "peak RSS {peak:.0} MB");
    // It keeps serving: an honest file in every container is still transcribed.
    for (name, bytes) in genuine {
        let id = uploader.upload(&name, bytes).await.unwrap();
        let record = uploader.settled(&id).await;
        assert_eq!(record["status"], "completed", "{name}: {record}");
    }
}

/// A header claiming a 4 GB comment (FLAC) or a billion-entry sample table (MP4) makes the
/// container reader ask for that much memory at once. On a machine that grants any
/// allocation and never backs the untouched pages the battery above survives either way; a
/// server whose memory is really limited (here its address space, at 3 GB) is where it
/// shows: decoded in the server's process, the first such file aborted the whole server.
/// Decoded in the isolated child, the child dies, the job fails with its reason, and the
/// server carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_claiming_gigabytes_kills_only_the_decoder_of_a_memory_limited_server() {
    let _serial = WHISPER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (env, _openai) = server_env(&dir).await;
    let mut server = start_with_address_space(&env, &dir.path().join("server.log"), 3 << 30).await;
    let uploader = Uploader::guest(&server.base).await;
    let claims = [
        ("flac", "flac", "flac-comment-4gb.flac"),
        ("m4a", "aac", "m4a-sample-count-1g.m4a"),
    ];
    for (extension, codec, name) in claims {
        let seed = seed(dir.path(), extension, codec);
        let lie = lying_headers(extension, &seed)
            .into_iter()
            .find(|lie| lie.name == name)
            .unwrap();
        let id = uploader.upload(name, lie.bytes).await.unwrap();
        let record = uploader.settled(&id).await;
        assert_eq!(record["status"], "failed", "{name}: {record}");
        let error = record["error"].as_str().unwrap();
        assert!(
            error.contains("more memory than a recording may"),
            "{name}: {error}"
        );
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "the server is still running after {name}"
        );
        let id = uploader
            .upload(&format!("genuine.{extension}"), seed)
            .await
            .unwrap();
        assert_eq!(uploader.settled(&id).await["status"], "completed");
    }
}
