//! The local Whisper engine with a real model (tiny.en from `make model`) on real speech
//! (espeak-ng), in every container a browser, phone or dictation device produces.
//!
//! whisper.cpp's worker threads busy-wait, so these tests take a lock and run one at a time.

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;

use crate::helpers::{TestApp, run_tool, spawn_app_with};

pub(crate) static WHISPER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SPOKEN: &str =
    "Good morning. I have been feeling tired for two weeks and I sleep badly at night.";
const ADVICE: &str = "She should drink plenty of water and rest at home for three days.";

pub(crate) fn model_path() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/ggml-tiny.en.bin");
    assert!(
        path.is_file(),
        "{} is missing: run `make model` first (make test does)",
        path.display()
    );
    path.display().to_string()
}

/// The multilingual base model (`MODEL=base make model`), for language detection and
/// translation: tiny.en knows English only.
fn multilingual_model_path() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/ggml-base.bin");
    assert!(
        path.is_file(),
        "{} is missing: run `MODEL=base make model` first (make test does)",
        path.display()
    );
    path.display().to_string()
}

/// Spanish dictation, and words of its meaning in each language: a translation must carry
/// the English ones and none of the Spanish.
const SPANISH: &str = "El paciente tiene fiebre y dolor de cabeza desde hace tres días. \
                       Debe tomar paracetamol cada ocho horas.";
const SPANISH_WORDS: &[&str] = &["paciente", "tiene", "fiebre", "cabeza", "tres", "horas"];
const ENGLISH_WORDS: &[&str] = &["patient", "fever", "head", "three", "days", "hours"];

/// How many of `words` appear in `text`, ignoring case.
fn count_words(text: &str, words: &[&str]) -> usize {
    let text = text.to_lowercase();
    words.iter().filter(|w| text.contains(*w)).count()
}

/// Silero VAD converted from the `silero-vad` package (`make model`).
pub(crate) fn vad_model_path() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/ggml-silero-vad.bin");
    assert!(
        path.is_file(),
        "{} is missing: run `make model` first (make test does)",
        path.display()
    );
    path.display().to_string()
}

/// The local engine as a deployment runs it by default: tiny.en, Silero VAD.
pub(crate) async fn local_app(extra: &[(&str, &str)]) -> TestApp {
    let model = model_path();
    let vad = vad_model_path();
    let mut env = vec![
        ("ENABLE_LOCAL_TRANSCRIPTION", "true"),
        ("DEFAULT_ENGINE", "local"),
        ("WHISPER_MODEL_PATH", model.as_str()),
        ("WHISPER_VAD_MODEL_PATH", vad.as_str()),
        ("WHISPER_THREADS", "2"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

/// An espeak-ng voice and its speed in words per minute.
type Voice = (&'static str, u32);

/// Speech from espeak-ng's American voice, re-encoded by ffmpeg with `codec_args` into `name`.
fn speech(dir: &std::path::Path, text: &str, name: &str, codec_args: &[&str]) -> Vec<u8> {
    speech_in(("en-us", 130), dir, text, name, codec_args)
}

/// Speech from `voice`, re-encoded by ffmpeg (its default resampler, as a browser's) with
/// `codec_args` into `name`.
fn speech_in(
    (voice, speed): Voice,
    dir: &std::path::Path,
    text: &str,
    name: &str,
    codec_args: &[&str],
) -> Vec<u8> {
    let raw = dir.join(format!("{name}.espeak.wav"));
    run_tool(
        Command::new("espeak-ng")
            .args(["-v", voice, "-s", &speed.to_string(), "-w"])
            .arg(&raw)
            .arg(text),
    );
    let out = dir.join(name);
    run_tool(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(&raw)
            .args(codec_args)
            .arg(&out),
    );
    std::fs::read(out).unwrap()
}

/// Word error rate: word-level edit distance over the reference length, ignoring case and
/// punctuation; a hyphen or slash separates words ("follow-up" is "follow up"), as in
/// Whisper's own text normalizer.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| c.is_whitespace() || c == '-' || c == '/')
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric())
                    .collect::<String>()
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (r, h) = (words(reference), words(hypothesis));
    let mut row: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let substitution = prev + usize::from(rw != hw);
            prev = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[h.len()] as f64 / r.len().max(1) as f64
}

/// Runs an OpenAI Python SDK `script` with the API's base URL, the token and `audio` as its
/// arguments; what it printed, as JSON.
async fn run_sdk_script(
    script: &str,
    app: &TestApp,
    token: &str,
    audio: &std::path::Path,
) -> Value {
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(format!("{}/v1", app.address))
        .arg(token)
        .arg(audio)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn transcribe(app: &TestApp, token: &str, bytes: Vec<u8>, name: &str) -> Value {
    transcribe_with(app, token, bytes, name, &[]).await
}

/// Uploads with the form `fields`, runs the job, and returns the record.
async fn transcribe_with(
    app: &TestApp,
    token: &str,
    bytes: Vec<u8>,
    name: &str,
    fields: &[(&str, &str)],
) -> Value {
    let response = app.upload(token, bytes, name, fields).await;
    assert_eq!(
        response.status(),
        202,
        "{name}: {}",
        response.text().await.unwrap()
    );
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_jobs().await;
    app.get_json(token, &format!("/v1/transcriptions/{id}"))
        .await
        .1
}

#[test]
fn word_error_rate_counts_edits() {
    assert_eq!(word_error_rate("a b c d", "a b c d"), 0.0);
    assert_eq!(word_error_rate("a b c d", "A, b. c d!"), 0.0);
    assert_eq!(word_error_rate("a b c d", "a x c"), 0.5);
    assert_eq!(word_error_rate("a follow up", "A follow-up."), 0.0);
    assert_eq!(word_error_rate("a b", "a b c d"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_in_every_browser_and_phone_format_is_transcribed() {
    let _serial = WHISPER.lock().await;
    let app = local_app(&[]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    // Voices, speeds and rates vary with the container, as they do between real recorders.
    let cases: &[(&str, Voice, &[&str])] = &[
        (
            "stereo-8k.wav",
            ("en-us+f3", 150),
            &["-ar", "8000", "-ac", "2", "-c:a", "pcm_s16le"],
        ),
        (
            "float-48k.wav",
            ("en", 175),
            &["-ar", "48000", "-c:a", "pcm_f32le"],
        ),
        (
            "24bit-44k.wav",
            ("en-gb+m3", 190),
            &["-ar", "44100", "-c:a", "pcm_s24le"],
        ),
        (
            "speech.mp3",
            ("en-us+f2", 120),
            &["-ar", "22050", "-c:a", "libmp3lame", "-b:a", "64k"],
        ),
        (
            "speech.flac",
            ("en+m1", 160),
            &["-ar", "96000", "-c:a", "flac"],
        ),
        (
            "speech.m4a",
            ("en-us", 130),
            &["-ar", "32000", "-c:a", "aac", "-b:a", "64k"],
        ),
        (
            "vorbis.ogg",
            ("en-us+f3", 150),
            &["-ar", "24000", "-c:a", "libvorbis"],
        ),
        (
            "opus.ogg",
            ("en", 175),
            &["-ac", "2", "-c:a", "libopus", "-b:a", "32k"],
        ),
        (
            "opus.webm",
            ("en-gb+m3", 190),
            &["-ac", "2", "-c:a", "libopus", "-b:a", "32k"],
        ),
    ];
    for (name, voice, codec) in cases {
        let audio = speech_in(*voice, dir.path(), SPOKEN, name, codec);
        let record = transcribe(&app, &token, audio, name).await;
        assert_eq!(record["status"], "completed", "{name}: {record}");
        let text = record["text"].as_str().unwrap();
        let wer = word_error_rate(SPOKEN, text);
        assert!(wer <= 0.15, "{name}: WER {wer:.2} for {text:?}");
        assert_eq!(record["engine"], "local");
        assert_eq!(record["language"], "en");
        assert!(
            record["language_probability"].is_null(),
            "an English-only model detects nothing: {record}"
        );
        assert_eq!(record["progress"], 100);
        let duration = record["duration_s"].as_f64().unwrap();
        assert!(
            (4.0..12.0).contains(&duration),
            "{name}: duration {duration}"
        );
        let segments = record["segments"].as_array().unwrap();
        assert!(!segments.is_empty());
        assert!(
            segments
                .iter()
                .all(|s| s["end"].as_f64() >= s["start"].as_f64())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_words_at_48_khz_stereo_and_16_khz_mono_give_the_same_transcript() {
    // Issue 16's sentence and voice first: before the resampler kept the band up to ~7.9 kHz,
    // its 48 kHz copy came back as "She denies FEMA or kill but reports 13 and proceed."
    const COMPLAINT: &str = "She denies fever or chills but reports fatigue and poor sleep.";
    let _serial = WHISPER.lock().await;
    let app = local_app(&[]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    for voice in [("en", 175), ("en-us+f3", 150), ("en-gb+m3", 190)] {
        let mono = speech_in(
            voice,
            dir.path(),
            COMPLAINT,
            "mono-16k.wav",
            &["-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le"],
        );
        // The same audio at a browser's rate and channels, converted by a transparent
        // resampler (soxr, very high quality): any difference is MMT's conversion back.
        let stereo_path = dir.path().join("stereo-48k.wav");
        run_tool(
            Command::new("sox")
                .arg(dir.path().join("mono-16k.wav"))
                .args(["-r", "48000", "-c", "2"])
                .arg(&stereo_path)
                .args(["rate", "-v", "-b", "99"]),
        );
        let stereo = std::fs::read(&stereo_path).unwrap();
        let mut texts = Vec::new();
        for (name, bytes) in [("mono-16k.wav", mono), ("stereo-48k.wav", stereo)] {
            let record = transcribe(&app, &token, bytes, name).await;
            assert_eq!(record["status"], "completed", "{name}: {record}");
            texts.push(record["text"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            word_error_rate(&texts[0], &texts[1]),
            0.0,
            "{voice:?}: 16 kHz mono {:?}, 48 kHz stereo {:?}",
            texts[0],
            texts[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_audio_fails_cleanly_with_a_reason() {
    let _serial = WHISPER.lock().await;
    let app = local_app(&[]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();

    // Refused at the door: empty, and not audio.
    assert_eq!(
        app.upload(&token, Vec::new(), "empty.wav", &[])
            .await
            .status(),
        415
    );
    assert_eq!(
        app.upload(&token, b"just some text, not audio".to_vec(), "x.mp3", &[])
            .await
            .status(),
        415
    );

    // Audio-looking headers with nothing decodable behind them.
    let mut garbage = b"RIFF\x24\x10\x00\x00WAVEfmt ".to_vec();
    garbage.extend(std::iter::repeat_n(0xAB, 4000));
    let mut ogg_garbage = b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
    ogg_garbage.extend(std::iter::repeat_n(0x5A, 4000));
    // An M4A cut in half loses its index; an MP3 cut in half keeps what it has.
    let m4a = speech(
        dir.path(),
        SPOKEN,
        "cut.m4a",
        &["-c:a", "aac", "-movflags", "+faststart"],
    );
    let mp3 = speech(dir.path(), SPOKEN, "cut.mp3", &["-c:a", "libmp3lame"]);
    for (name, bytes) in [
        ("garbage.wav", garbage),
        ("garbage.ogg", ogg_garbage),
        ("truncated.m4a", m4a[..m4a.len() / 3].to_vec()),
        ("truncated.mp3", mp3[..mp3.len() / 2].to_vec()),
    ] {
        let record = tokio::time::timeout(
            Duration::from_secs(120),
            transcribe(&app, &token, bytes, name),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: the worker hung"));
        match record["status"].as_str().unwrap() {
            "failed" => {
                let error = record["error"].as_str().unwrap();
                assert!(!error.is_empty(), "{name}");
                assert_eq!(
                    record["attempts"], 1,
                    "{name}: bad audio is not retried: {record}"
                );
            }
            "completed" => assert!(
                name == "truncated.mp3" || name == "truncated.m4a",
                "{name}: {record}"
            ),
            other => panic!("{name}: {other}: {record}"),
        }
    }
    // The worker is still healthy afterwards.
    let fine = speech(dir.path(), SPOKEN, "after.wav", &["-c:a", "pcm_s16le"]);
    assert_eq!(
        transcribe(&app, &token, fine, "after.wav").await["status"],
        "completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_audio_is_transcribed_in_pieces_with_progress() {
    let _serial = WHISPER.lock().await;
    // A ~70 s recording: five or so pieces of about 15 s, on two workers.
    let app = local_app(&[]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    let long_text = [SPOKEN, ADVICE].repeat(6).join(" ");
    let audio = speech(dir.path(), &long_text, "long.flac", &["-c:a", "flac"]);
    let response = app.upload(&token, audio, "long.flac", &[]).await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let worker = {
        let state = app.state.clone();
        tokio::spawn(async move { mmt_core::jobs::run_once(&state).await })
    };
    let mut seen = Vec::new();
    while !worker.is_finished() {
        let (_, record) = app
            .get_json(&token, &format!("/v1/transcriptions/{id}"))
            .await;
        seen.push(record["progress"].as_u64().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.await.unwrap();
    let (_, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    assert!(
        seen.iter().any(|p| (1..100).contains(p)),
        "progress between 0 and 100 was visible: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {seen:?}"
    );
    let text = record["text"].as_str().unwrap();
    let wer = word_error_rate(&long_text, text);
    assert!(wer <= 0.15, "WER {wer:.2}: {text}");
    let segments = record["segments"].as_array().unwrap();
    let last_end = segments.last().unwrap()["end"].as_f64().unwrap();
    let duration = record["duration_s"].as_f64().unwrap();
    assert!(
        duration > 60.0 && last_end > 50.0 && last_end <= duration + 0.01,
        "{last_end} / {duration}"
    );
    assert!(
        segments
            .windows(2)
            .all(|w| w[1]["start"].as_f64() >= w[0]["start"].as_f64())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_left_out_and_timestamps_still_match_the_recording() {
    // Eight seconds of near-silence (room noise at -66 dBFS): both detectors leave it out.
    for vad in ["energy", "silero"] {
        pause_is_left_out(vad, "0.0005").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_without_speech_is_left_out_by_silero_vad() {
    // Eight seconds of pink noise at about -30 dBFS (a fan, traffic): too loud for the energy
    // rule, but no speech to Silero.
    // (With WHISPER_VAD=energy the noise is decoded with the second sentence, and Whisper
    // places "She should drink..." at 7.0 s, inside the noise.)
    pause_is_left_out("silero", "0.05").await;
}

/// Two sentences with eight seconds of noise at `volume` between them, transcribed with
/// `WHISPER_VAD=vad`: the words are right and none is placed inside the pause.
async fn pause_is_left_out(vad: &str, volume: &str) {
    let _serial = WHISPER.lock().await;
    let app = local_app(&[("WHISPER_VAD", vad)]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).into_os_string();
    speech(dir.path(), SPOKEN, "first.wav", &["-c:a", "pcm_s16le"]);
    speech(dir.path(), ADVICE, "second.wav", &["-c:a", "pcm_s16le"]);
    let noise = if volume == "0.0005" {
        "whitenoise"
    } else {
        "pinknoise"
    };
    run_tool(
        Command::new("sox")
            .args(["-n", "-r", "22050"])
            .arg(path("pause.wav"))
            .args(["synth", "8", noise, "vol", volume]),
    );
    run_tool(
        Command::new("sox")
            .args(["first.wav", "pause.wav", "second.wav", "dictation.wav"].map(path)),
    );
    let first_s = sox_seconds(&path("first.wav"));
    let audio = std::fs::read(path("dictation.wav")).unwrap();
    let record = transcribe(&app, &token, audio, "dictation.wav").await;
    assert_eq!(record["status"], "completed", "{record}");
    let text = record["text"].as_str().unwrap();
    let wer = word_error_rate(&format!("{SPOKEN} {ADVICE}"), text);
    assert!(wer <= 0.15, "WER {wer:.2}: {text}");
    let duration = record["duration_s"].as_f64().unwrap();
    assert!((duration - (first_s + 8.0 + sox_seconds(&path("second.wav")))).abs() < 0.1);
    // The advice is placed after the pause, where it is in the recording, not where it
    // would be had the pause been cut out of the timeline.
    let segments = record["segments"].as_array().unwrap();
    for segment in segments {
        let (start, end) = (
            segment["start"].as_f64().unwrap(),
            segment["end"].as_f64().unwrap(),
        );
        assert!(
            !(start >= first_s + 0.5 && end <= first_s + 7.5),
            "{vad}: {segment} was heard in the pause"
        );
        let words = segment["text"].as_str().unwrap().to_lowercase();
        if words.contains("water") {
            assert!(
                start >= first_s + 7.5,
                "{vad}: {segment} starts inside the pause"
            );
        }
        if words.contains("morning") {
            assert!(end <= first_s + 0.5, "{segment} ends inside the pause");
        }
    }
}

/// A WAV file's length in seconds, as sox reads it.
fn sox_seconds(path: &std::ffi::OsStr) -> f64 {
    let out = Command::new("soxi").arg("-D").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quantized_model_the_demo_runs_transcribes_like_the_original() {
    let _serial = WHISPER.lock().await;
    let quantized =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/ggml-tiny.en-q4_0.bin");
    assert!(
        quantized.is_file(),
        "{} is missing: run `make model`",
        quantized.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut texts = Vec::new();
    for model in [model_path(), quantized.display().to_string()] {
        let app = local_app(&[("WHISPER_MODEL_PATH", model.as_str())]).await;
        let token = app.guest_token().await;
        let audio = speech_in(
            ("en-us+f3", 150),
            dir.path(),
            ADVICE,
            "advice.wav",
            &["-ar", "48000"],
        );
        let record = transcribe(&app, &token, audio, "advice.wav").await;
        assert_eq!(record["status"], "completed", "{model}: {record}");
        let text = record["text"].as_str().unwrap().to_owned();
        let wer = word_error_rate(ADVICE, &text);
        assert!(wer <= 0.15, "{model}: WER {wer:.2}: {text}");
        texts.push(text);
    }
    println!("float16: {:?}\nq4_0:    {:?}", texts[0], texts[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_sdk_works_against_mmt() {
    let _serial = WHISPER.lock().await;
    let app = local_app(&[]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    speech(dir.path(), SPOKEN, "sdk.wav", &["-c:a", "pcm_s16le"]);
    let script = r#"
import json, sys
from openai import OpenAI
base, token, path = sys.argv[1:4]
client = OpenAI(base_url=base, api_key=token, max_retries=0)
out = {}
for fmt in ["json", "text", "srt", "vtt", "verbose_json"]:
    with open(path, "rb") as f:
        kwargs = {"timestamp_granularities": ["segment"]} if fmt == "verbose_json" else {}
        r = client.audio.transcriptions.create(model="whisper-1", file=f, response_format=fmt, language="en", **kwargs)
    if fmt == "json":
        out[fmt] = r.text
    elif fmt == "verbose_json":
        out[fmt] = {"text": r.text, "language": r.language, "duration": r.duration,
                    "segments": [[s.start, s.end, s.text] for s in (r.segments or [])]}
    else:
        out[fmt] = r
with open(path, "rb") as f:
    r = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                           timestamp_granularities=["word", "segment"], language="en")
out["words"] = [[w.word, w.start, w.end] for w in (r.words or [])]
out["avg_logprobs"] = [s.avg_logprob for s in (r.segments or [])]
with open(path, "rb") as f:
    r = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="json",
                                           include=["logprobs"], language="en")
out["logprobs"] = [[l.token, l.logprob, l.bytes] for l in (r.logprobs or [])]
print(json.dumps(out))
"#;
    let out = run_sdk_script(script, &app, &token, &dir.path().join("sdk.wav")).await;
    for fmt in ["json", "text"] {
        let wer = word_error_rate(SPOKEN, out[fmt].as_str().unwrap());
        assert!(wer <= 0.15, "{fmt}: {wer}: {out}");
    }
    assert!(
        out["srt"]
            .as_str()
            .unwrap()
            .starts_with("1\n00:00:00,000 --> "),
        "{out}"
    );
    assert!(
        out["vtt"]
            .as_str()
            .unwrap()
            .starts_with("WEBVTT\n\n00:00:00.000 --> "),
        "{out}"
    );
    let verbose = &out["verbose_json"];
    assert_eq!(verbose["language"], "english");
    assert!(verbose["duration"].as_f64().unwrap() > 4.0);
    assert!(!verbose["segments"].as_array().unwrap().is_empty());
    assert_word_timestamps(&out["words"], verbose["duration"].as_f64().unwrap());
    let avg_logprobs: Vec<f64> = serde_json::from_value(out["avg_logprobs"].clone()).unwrap();
    assert!(
        avg_logprobs.iter().all(|l| (-5.0..0.0).contains(l)),
        "real confidences, not zeros: {avg_logprobs:?}"
    );
    assert_logprobs(&out["logprobs"]);

    // Each call also left an owner-only record.
    let (_, list) = app.get_json(&token, "/v1/transcriptions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 7);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "completed")
    );

    // A wrong "API key" is refused the way the SDK expects (401).
    let denied = tokio::process::Command::new("python3")
        .arg("-c")
        .arg("import sys\nfrom openai import OpenAI, AuthenticationError\nc = OpenAI(base_url=sys.argv[1], api_key='nope', max_retries=0)\ntry:\n    c.audio.transcriptions.create(model='whisper-1', file=open(sys.argv[2], 'rb'))\nexcept AuthenticationError:\n    print('denied')\n")
        .arg(format!("{}/v1", app.address))
        .arg(dir.path().join("sdk.wav"))
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&denied.stdout).trim(),
        "denied",
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
}

/// The words of `SPOKEN`, in order, each with a span inside the recording; spans follow
/// each other.
fn assert_word_timestamps(words: &Value, duration: f64) {
    let words: Vec<(String, f64, f64)> = serde_json::from_value(words.clone()).unwrap();
    let text: Vec<&str> = words.iter().map(|(w, _, _)| w.as_str()).collect();
    let wer = word_error_rate(SPOKEN, &text.join(" "));
    assert!(wer <= 0.15, "words {text:?}");
    for (word, start, end) in &words {
        assert!(
            0.0 <= *start && start <= end && *end <= duration + 0.01,
            "{word}: {start}..{end}"
        );
    }
    assert!(
        words.windows(2).all(|w| w[1].1 >= w[0].1),
        "words in order: {words:?}"
    );
    // "Good morning" is said first, "night" last (about 7 s later at 130 words a minute).
    let (first, last) = (&words[0], &words[words.len() - 1]);
    assert!(first.1 < 1.5 && last.2 > 4.0, "{first:?} … {last:?}");
}

/// Token log-probabilities: real values, the tokens spelling the text, bytes their UTF-8.
fn assert_logprobs(logprobs: &Value) {
    // The SDK types `bytes` as a list of numbers (floats, once parsed).
    let logprobs: Vec<(String, f64, Vec<f64>)> = serde_json::from_value(logprobs.clone()).unwrap();
    assert!(logprobs.len() >= 10, "{logprobs:?}");
    let spelled: String = logprobs.iter().map(|(t, _, _)| t.as_str()).collect();
    let wer = word_error_rate(SPOKEN, &spelled);
    assert!(wer <= 0.15, "the tokens spell {spelled:?}");
    for (token, logprob, bytes) in &logprobs {
        assert!(*logprob <= 0.0 && *logprob > -30.0, "{token}: {logprob}");
        let utf8: Vec<f64> = token.bytes().map(f64::from).collect();
        assert_eq!(bytes, &utf8, "{token}");
    }
    assert!(
        logprobs.iter().any(|(_, l, _)| *l < -1e-3),
        "not every token is certain: {logprobs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_read_blip_is_retried_by_the_local_engine() {
    let _whisper = WHISPER.lock().await;
    let model = model_path();
    let app = crate::helpers::spawn_app_customised(
        &[
            ("ENABLE_LOCAL_TRANSCRIPTION", "true"),
            ("DEFAULT_ENGINE", "local"),
            ("WHISPER_MODEL_PATH", model.as_str()),
            ("WHISPER_THREADS", "2"),
        ],
        |state| crate::pipeline::blip_first_reads(state, 1),
    )
    .await;
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    app.drain_jobs().await;
    let (_, r) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(
        r["attempts"], 2,
        "the blip cost one attempt, not the transcription"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multilingual_model_detects_the_language_and_translates_on_request() {
    let _serial = WHISPER.lock().await;
    let model = multilingual_model_path();
    let app = local_app(&[("WHISPER_MODEL_PATH", model.as_str())]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    let spanish = speech_in(
        ("es", 140),
        dir.path(),
        SPANISH,
        "es.webm",
        &["-ac", "2", "-c:a", "libopus"],
    );

    // Transcribed as spoken, in the language detected, with its probability.
    let record = transcribe(&app, &token, spanish.clone(), "es.webm").await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["task"], "transcribe");
    assert_eq!(record["language"], "es", "{record}");
    let probability = record["language_probability"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&probability), "{record}");
    let text = record["text"].as_str().unwrap();
    assert!(count_words(text, SPANISH_WORDS) >= 3, "{text}");

    // Translated into English on request; the record keeps the language spoken.
    let record = transcribe_with(&app, &token, spanish, "es.webm", &[("task", "translate")]).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["task"], "translate");
    assert_eq!(record["language"], "es", "{record}");
    let text = record["text"].as_str().unwrap();
    assert!(count_words(text, ENGLISH_WORDS) >= 3, "{text}");
    assert_eq!(count_words(text, SPANISH_WORDS), 0, "{text}");

    // Another language, another voice and rate: detected as such.
    let german = speech_in(
        ("de", 150),
        dir.path(),
        "Die Patientin hat seit drei Tagen Fieber und trinkt zu wenig Wasser.",
        "de.wav",
        &["-ar", "44100"],
    );
    let record = transcribe(&app, &token, german, "de.wav").await;
    assert_eq!(record["language"], "de", "{record}");
    assert!(record["language_probability"].as_f64().unwrap() > 0.3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_translates_with_a_multilingual_model() {
    let _serial = WHISPER.lock().await;
    let model = multilingual_model_path();
    let app = local_app(&[("WHISPER_MODEL_PATH", model.as_str())]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    speech_in(
        ("es", 140),
        dir.path(),
        SPANISH,
        "es.mp3",
        &["-c:a", "libmp3lame"],
    );
    let script = r#"
import json, sys
from openai import OpenAI
base, token, path = sys.argv[1:4]
client = OpenAI(base_url=base, api_key=token, max_retries=0)
with open(path, "rb") as f:
    plain = client.audio.translations.create(model="whisper-1", file=f)
with open(path, "rb") as f:
    verbose = client.audio.translations.create(model="whisper-1", file=f, response_format="verbose_json")
print(json.dumps({"json": plain.text, "verbose": {"text": verbose.text, "language": verbose.language,
    "duration": verbose.duration, "segments": [[s.start, s.end, s.text] for s in (verbose.segments or [])]}}))
"#;
    let out = run_sdk_script(script, &app, &token, &dir.path().join("es.mp3")).await;
    for text in [&out["json"], &out["verbose"]["text"]] {
        let text = text.as_str().unwrap();
        assert!(count_words(text, ENGLISH_WORDS) >= 3, "{out}");
        assert_eq!(count_words(text, SPANISH_WORDS), 0, "{out}");
    }
    let verbose = &out["verbose"];
    assert_eq!(verbose["language"], "english", "the output's language");
    assert!(verbose["duration"].as_f64().unwrap() > 4.0, "{out}");
    assert!(!verbose["segments"].as_array().unwrap().is_empty(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_english_only_model_refuses_translation_and_keeps_nothing() {
    use reqwest::multipart::{Form, Part};
    let _serial = WHISPER.lock().await;
    let app = local_app(&[]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    let audio = speech(dir.path(), ADVICE, "advice.wav", &[]);
    let synchronous = app
        .client
        .post(app.url("/v1/audio/translations"))
        .bearer_auth(&token)
        .multipart(
            Form::new()
                .part("file", Part::bytes(audio.clone()).file_name("advice.wav"))
                .text("model", "whisper-1"),
        )
        .send()
        .await
        .unwrap();
    let queued = app
        .upload(&token, audio, "advice.wav", &[("task", "translate")])
        .await;
    for response in [synchronous, queued] {
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "translation_unavailable", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("English-only"),
            "{body}"
        );
    }
    assert!(app.audio_files().is_empty());
    let (_, list) = app.get_json(&token, "/v1/transcriptions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_vocabulary_makes_whisper_spell_their_names() {
    let _serial = WHISPER.lock().await;
    let app = local_app(&[("VOCABULARY", "Lisinopril, Metformin")]).await;
    let (with_terms, without) = (app.guest_token().await, app.guest_token().await);
    let saved = app
        .client
        .put(app.url("/v1/vocabulary"))
        .bearer_auth(&with_terms)
        .json(&serde_json::json!({"terms": ["Dr. Okafor", "Ashby clinic"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let said = "Start lisinopril ten milligrams and metformin, \
                and book a review with Doctor Okafor in Ashby clinic.";
    for (voice, rate) in [(("en-us", 150), "48000"), (("en-gb+m3", 160), "16000")] {
        let name = format!("{}.wav", voice.0);
        let audio = speech_in(voice, dir.path(), said, &name, &["-ar", rate, "-ac", "2"]);
        let mine = transcribe(&app, &with_terms, audio.clone(), &name).await;
        let theirs = transcribe(&app, &without, audio, &name).await;
        let (mine, theirs) = (
            mine["text"].as_str().unwrap(),
            theirs["text"].as_str().unwrap(),
        );
        // The deployment's terms help everyone; the user's only their own recordings.
        for text in [mine, theirs] {
            assert!(text.contains("Metformin"), "{voice:?}: {text}");
        }
        assert!(
            mine.contains("Okafor") && mine.contains("Ashby"),
            "{voice:?}: {mine}"
        );
        assert!(
            !theirs.contains("Okafor") && !theirs.contains("Ashby"),
            "{voice:?}: without the terms tiny.en hears {theirs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_engine_counts_prompt_tokens_with_the_models_tokenizer() {
    use mmt_core::{
        adapters::whisper::WhisperTranscriber,
        domain::{PROMPT_TOKEN_BUDGET, Vocabulary, compose_prompt},
        ports::Transcriber,
    };
    let _serial = WHISPER.lock().await;
    let mut config = mmt_core::Config::from_map(&std::collections::HashMap::from([
        ("WHISPER_MODEL_PATH".to_owned(), model_path()),
        ("AUDIO_DECODER".to_owned(), "in-process".to_owned()),
    ]))
    .unwrap()
    .engines
    .local;
    config.threads = 2;
    let engine = WhisperTranscriber::load(&config).unwrap();
    // Whisper's GPT-2 BPE: common words are one token, rare drug names several.
    assert_eq!(engine.prompt_tokens(" the"), 1);
    let drug = engine.prompt_tokens(" zanubrutinib");
    assert!((3..=8).contains(&drug), "{drug}");
    // A long vocabulary is cut to exactly what fits.
    let terms: Vec<String> = (0..200).map(|i| format!("Zanubrutinib{i}")).collect();
    let prompt = compose_prompt(
        &Vocabulary::new(&terms).unwrap(),
        &Vocabulary::default(),
        Some("Oncology follow-up."),
        &|text| engine.prompt_tokens(text),
    );
    let text = prompt.text.clone().unwrap();
    let tokens = engine.prompt_tokens(&text);
    assert!(
        tokens <= PROMPT_TOKEN_BUDGET && tokens > PROMPT_TOKEN_BUDGET - 12,
        "{tokens} tokens: {text}"
    );
    assert!(text.ends_with("Zanubrutinib199. Oncology follow-up."));
    assert!(prompt.terms_left_out > 150, "{prompt:?}");
}

/// A RIFF/WAVE file of 16-bit PCM noise whose header says `channels` channels.
fn wav_with_channels(channels: u16, seconds: u32) -> Vec<u8> {
    let rate = 16_000u32;
    let align = channels * 2;
    let data_len = rate * seconds * u32::from(align);
    let mut out = b"RIFF".to_vec();
    out.extend((36 + data_len).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(channels.to_le_bytes());
    out.extend(rate.to_le_bytes());
    out.extend((rate * u32::from(align)).to_le_bytes());
    out.extend(align.to_le_bytes());
    out.extend(16u16.to_le_bytes());
    out.extend(b"data");
    out.extend(data_len.to_le_bytes());
    let mut state = 0x1234_5678u32;
    out.extend((0..data_len / 2).flat_map(|_| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((state >> 16) as i16 / 8).to_le_bytes()
    }));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_that_claims_too_much_fails_fast_with_its_reason() {
    let _serial = WHISPER.lock().await;
    let app = local_app(&[]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    // Three hours of digital silence in 26 KB of FLAC (65 535-sample frames): before the
    // bound, a worker spent a minute decoding it; now it stops past 60 s + 1 s per 200 bytes.
    let bomb = dir.path().join("bomb.flac");
    run_tool(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
            .args(["-i", "anullsrc=r=8000:cl=mono", "-t", "10800"])
            .args(["-c:a", "flac", "-frame_size", "65535"])
            .arg(&bomb),
    );
    let bytes = std::fs::read(&bomb).unwrap();
    assert!(bytes.len() < 100_000, "{} bytes", bytes.len());
    let started = std::time::Instant::now();
    let record = transcribe(&app, &token, bytes, "bomb.flac").await;
    assert_eq!(record["status"], "failed", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("decodes to more than"), "{error}");
    assert_eq!(record["attempts"], 1, "not retried");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // Forty channels is no recorder's output: refused by its header (here symphonia's RIFF
    // reader refuses first; MMT's own bound covers containers that allow more).
    let record = transcribe(&app, &token, wav_with_channels(40, 1), "many.wav").await;
    assert_eq!(record["status"], "failed", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("channel"), "{error}");
    // Eight channels (a conference recorder) are mixed down as before.
    let record = transcribe(&app, &token, wav_with_channels(8, 1), "eight.wav").await;
    assert_eq!(record["status"], "completed", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_time_limit_fails_with_its_reason() {
    let _serial = WHISPER.lock().await;
    let app = local_app(&[("WHISPER_JOB_TIMEOUT_SECS", "1"), ("WHISPER_VAD", "off")]).await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    speech(dir.path(), SPOKEN, "once.wav", &["-c:a", "pcm_s16le"]);
    let path = |name: &str| dir.path().join(name).into_os_string();
    // About two minutes of speech: several seconds of work, past a one-second limit.
    let mut args = vec![path("once.wav"); 16];
    args.push(path("long.wav"));
    run_tool(Command::new("sox").args(args));
    let record = transcribe(
        &app,
        &token,
        std::fs::read(path("long.wav")).unwrap(),
        "long.wav",
    )
    .await;
    assert_eq!(record["status"], "failed", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("longer than its 1 s limit"), "{error}");
    assert_eq!(record["attempts"], 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decrypted_recording_never_has_a_name_on_disk() {
    let _serial = WHISPER.lock().await;
    let app = local_app(&[
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        (
            "ENCRYPTION_KEYS",
            "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
    ])
    .await;
    let token = app.guest_token().await;
    let dir = tempfile::tempdir().unwrap();
    let audio = speech(dir.path(), SPOKEN, "sealed.wav", &["-c:a", "pcm_s16le"]);
    let temp = std::env::temp_dir();
    let named = move || -> Vec<String> {
        std::fs::read_dir(&temp)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("mmt-audio-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Watch the temporary directory for as long as the job runs: a copy of the decrypted
    // recording there would outlive a crash.
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2_000 {
            seen.extend(named());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    });
    let record = transcribe(&app, &token, audio, "sealed.wav").await;
    assert_eq!(record["status"], "completed", "{record}");
    watcher.abort();
    let seen = watcher.await.unwrap_or_default();
    assert!(seen.is_empty(), "named copies seen: {seen:?}");
}
