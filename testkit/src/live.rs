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

    /// Each committed word's lag against `reference`: the words spoken, each with the second
    /// of the audio at which it ends. The audio was sent in real time from the first frame, so
    /// a word ending at `end_s` had been spoken `end_s` seconds after it. Committed words are
    /// matched to the reference in order (longest common subsequence); a misheard word has no
    /// lag.
    pub fn word_lags(&self, reference: &[SpokenWord]) -> Vec<WordLag> {
        let committed = self.committed_words();
        let shown = self.views();
        let heard: Vec<String> = committed
            .iter()
            .map(|(w, _)| plain(w["word"].as_str().unwrap_or_default()))
            .collect();
        let spoken: Vec<String> = reference.iter().map(|(w, _)| plain(w)).collect();
        aligned(&heard, &spoken)
            .into_iter()
            .map(|(index, spoken_index)| {
                let committed_at = committed[index].1;
                // Shown where it ends up, give or take two places: an earlier partial may
                // still have had a word more or less before it.
                let near = |(place, word): (usize, &String)| {
                    place.abs_diff(index) <= 2 && *word == heard[index]
                };
                let first_shown = shown
                    .iter()
                    .find(|(_, view)| view.iter().enumerate().any(near))
                    .map_or(committed_at, |(at, _)| (*at).min(committed_at));
                let end_s = reference[spoken_index].1;
                WordLag {
                    word: reference[spoken_index].0.clone(),
                    end_s,
                    shown_after_s: first_shown.as_secs_f64() - end_s,
                    committed_after_s: committed_at.as_secs_f64() - end_s,
                }
            })
            .collect()
    }

    /// What a page shows after each `partial`: the committed words, then the partial's.
    fn views(&self) -> Vec<(Duration, Vec<String>)> {
        let mut views = Vec::new();
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
                    views.push((event.at, view));
                }
                _ => {}
            }
        }
        views
    }
}

/// Pairs of indexes `(i, j)` with `a[i] == b[j]`, in order, as many as possible.
fn aligned(a: &[String], b: &[String]) -> Vec<(usize, usize)> {
    let mut table = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            table[i][j] = match a[i] == b[j] {
                true => table[i + 1][j + 1] + 1,
                false => table[i + 1][j].max(table[i][j + 1]),
            };
        }
    }
    let (mut i, mut j, mut pairs) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if table[i + 1][j] >= table[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
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

/// A word spoken, and the second of the audio at which it ends.
pub type SpokenWord = (String, f64);

/// Speaks `sentences` with espeak-ng word by word (each word's leading and trailing silence
/// cut by sox, `WORD_GAP_S` between words, `pause_s` after each sentence), as 16 kHz PCM16:
/// the audio, and every word with the second at which it ends — exact, not estimated.
pub fn spoken_words(
    dir: &std::path::Path,
    sentences: &[&str],
    pause_s: f64,
) -> anyhow::Result<(Vec<i16>, Vec<SpokenWord>)> {
    const WORD_GAP_S: f64 = 0.08;
    let mut samples: Vec<i16> = Vec::new();
    let mut words = Vec::new();
    let silence = |seconds: f64| std::iter::repeat_n(0i16, (seconds * 16_000.0) as usize);
    for (s, sentence) in sentences.iter().enumerate() {
        for (w, word) in sentence.split_whitespace().enumerate() {
            let raw = dir.join(format!("word-{s}-{w}.wav"));
            let trimmed = dir.join(format!("word-{s}-{w}.trimmed.wav"));
            run(std::process::Command::new("espeak-ng")
                .args(["-v", "en-us", "-s", "160", "-w"])
                .arg(&raw)
                .arg(word))?;
            run(std::process::Command::new("sox")
                .arg(&raw)
                .args(["-r", "16000", "-c", "1", "-b", "16"])
                .arg(&trimmed)
                .args([
                    "silence", "1", "0.01", "0.5%", "reverse", "silence", "1", "0.01", "0.5%",
                    "reverse",
                ]))?;
            samples.extend(pcm16_of(&trimmed)?);
            words.push((word.to_owned(), samples.len() as f64 / 16_000.0));
            samples.extend(silence(WORD_GAP_S));
        }
        samples.extend(silence(pause_s));
    }
    Ok((samples, words))
}

fn run(command: &mut std::process::Command) -> anyhow::Result<()> {
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
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
