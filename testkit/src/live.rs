//! A live dictation client for the tests and `make bench`: streams PCM16 over `/v1/stream` at
//! a chosen pace and keeps every message with the moment it arrived, for lag figures.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{
    Message, client::IntoClientRequest, http::HeaderValue, protocol::CloseFrame,
};

/// How to stream.
#[derive(Debug, Clone)]
pub struct Plan {
    pub token: String,
    /// Milliseconds of audio per frame.
    pub frame_ms: u32,
    /// 1.0 = real time; more sends faster.
    pub pace: f64,
    /// An `Origin` header, as a browser sends.
    pub origin: Option<String>,
    /// Whether the client reads the server's messages while it sends (a client that never
    /// reads only looks once it has stopped sending).
    pub reads: bool,
    /// Sent as the `start` message's options.
    pub language: Option<String>,
}

impl Plan {
    pub fn real_time(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            frame_ms: 100,
            pace: 1.0,
            origin: None,
            reads: true,
            language: None,
        }
    }
}

/// One message from the server, and when it arrived (from the first audio frame).
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Duration,
    pub message: Value,
}

/// What a stream produced.
#[derive(Debug, Default)]
pub struct Run {
    pub events: Vec<Event>,
    /// The close frame's code and reason.
    pub close: Option<(u16, String)>,
    /// Seconds of audio sent before the server closed or the client stopped.
    pub sent_s: f64,
}

/// A committed word: its time in the audio and how long after it was spoken it appeared.
#[derive(Debug, Clone)]
pub struct WordLag {
    pub word: String,
    pub end_s: f64,
    /// From the end of the word to the first message that showed it (partial or final).
    pub shown_after_s: f64,
    /// From the end of the word to its commit.
    pub committed_after_s: f64,
}

impl Run {
    /// Every message of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events
            .iter()
            .filter(move |e| e.message["type"] == kind)
    }

    /// The id of the saved record.
    pub fn saved_id(&self) -> Option<String> {
        self.of_kind("saved")
            .next()
            .and_then(|e| e.message["id"].as_str().map(str::to_owned))
    }

    /// The committed text, in order.
    pub fn committed_text(&self) -> String {
        self.committed_words()
            .into_iter()
            .map(|(w, _)| w["word"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn committed_words(&self) -> Vec<(Value, Duration)> {
        self.of_kind("final")
            .flat_map(|e| {
                e.message["words"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |w| (w, e.at))
            })
            .collect()
    }

    /// Each committed word's lag: the audio was sent in real time from the first frame, so
    /// the word was spoken by `end` seconds after it.
    pub fn word_lags(&self) -> Vec<WordLag> {
        let committed = self.committed_words();
        // What the page would show after each message: the committed words, then the partial.
        let mut shown: Vec<(Duration, Vec<String>)> = Vec::new();
        let mut done: Vec<String> = Vec::new();
        for event in &self.events {
            match event.message["type"].as_str() {
                Some("final") => done.extend(
                    event.message["words"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|w| plain(w["word"].as_str().unwrap_or_default())),
                ),
                Some("partial") => {
                    let mut view = done.clone();
                    view.extend(
                        event.message["text"]
                            .as_str()
                            .unwrap_or_default()
                            .split_whitespace()
                            .map(plain),
                    );
                    shown.push((event.at, view));
                }
                _ => {}
            }
        }
        committed
            .iter()
            .enumerate()
            .map(|(index, (word, committed_at))| {
                let text = word["word"].as_str().unwrap_or_default().to_owned();
                let end_s = word["end"].as_f64().unwrap_or_default();
                let first_shown = shown
                    .iter()
                    .find(|(_, view)| view.get(index) == Some(&plain(&text)))
                    .map_or(*committed_at, |(at, _)| (*at).min(*committed_at));
                WordLag {
                    word: text,
                    end_s,
                    shown_after_s: first_shown.as_secs_f64() - end_s,
                    committed_after_s: committed_at.as_secs_f64() - end_s,
                }
            })
            .collect()
    }
}

fn plain(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Streams `samples` (16 kHz mono PCM16) to `ws_url` as `plan` says, then `stop`, and waits
/// for the server to close (at most `wait` after the last frame).
pub async fn dictate(
    ws_url: &str,
    samples: &[i16],
    plan: &Plan,
    wait: Duration,
) -> anyhow::Result<Run> {
    let mut request = ws_url.into_client_request()?;
    if let Some(origin) = &plan.origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin)?);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    let (mut sink, mut stream) = socket.split();
    let run = Arc::new(Mutex::new(Run::default()));
    let started = Arc::new(Mutex::new(Instant::now()));
    let (sending_done, mut may_read) = tokio::sync::watch::channel(plan.reads);
    let reader = {
        let (run, started) = (run.clone(), started.clone());
        tokio::spawn(async move {
            let _ = may_read.wait_for(|reads| *reads).await;
            while let Some(Ok(message)) = stream.next().await {
                let at = started.lock().unwrap().elapsed();
                match message {
                    Message::Text(text) => {
                        let message = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        run.lock().unwrap().events.push(Event { at, message });
                    }
                    Message::Close(frame) => {
                        run.lock().unwrap().close =
                            frame.map(|f: CloseFrame| (f.code.into(), f.reason.to_string()));
                        break;
                    }
                    _ => {}
                }
            }
        })
    };
    let start = json!({"type": "start", "token": plan.token, "language": plan.language});
    sink.send(Message::text(start.to_string())).await?;
    let frame = (16 * plan.frame_ms) as usize;
    *started.lock().unwrap() = Instant::now();
    let t0 = Instant::now();
    for (i, chunk) in samples.chunks(frame).enumerate() {
        let due =
            t0 + Duration::from_secs_f64(i as f64 * f64::from(plan.frame_ms) / 1000.0 / plan.pace);
        tokio::time::sleep_until(due.into()).await;
        let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        if sink.send(Message::binary(bytes)).await.is_err() || reader.is_finished() {
            break;
        }
        run.lock().unwrap().sent_s = ((i + 1) * frame) as f64 / 16_000.0;
    }
    let _ = sink
        .send(Message::text(json!({"type": "stop"}).to_string()))
        .await;
    let _ = sending_done.send(true);
    let _ = tokio::time::timeout(wait, reader).await;
    let run = std::mem::take(&mut *run.lock().unwrap());
    Ok(run)
}

/// Reads a WAV (or any file ffmpeg reads) as 16 kHz mono PCM16, with ffmpeg's resampler.
pub fn pcm16_of(path: &std::path::Path) -> anyhow::Result<Vec<i16>> {
    let output = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-ac", "1", "-ar", "16000", "-f", "s16le", "-"])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// The median and 95th percentile of `values`.
pub fn median_p95(values: &mut [f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95))
}
