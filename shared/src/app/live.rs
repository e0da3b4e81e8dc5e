//! Live dictation: admitting a session within the machine's real-time capacity, feeding its
//! audio to the engine window by window, and saving it as an ordinary transcription record
//! when it ends. The transport (the WebSocket in `http::routes::live`) only moves messages.

use std::{
    collections::HashMap,
    io::{Seek, Write},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use tokio::sync::Semaphore;

use super::{AppState, uploads::Then};
use crate::{
    config::LiveConfig,
    domain::{
        AudioFormat, EngineKind, OwnerId, Task, Transcript, TranscriptionId, TranscriptionRecord,
        TranscriptionRequest, Word,
        live::{LiveTranscript, Update, WindowPolicy},
    },
    ports::{EngineError, LiveDecoder, LiveEngine},
};

/// Audio arrives as 16 kHz mono PCM16.
pub const SAMPLE_RATE: u32 = 16_000;
/// The share of the decoders' time live sessions may fill: the rest absorbs bursts (a long
/// window, a slow decode) without every session falling behind.
const TARGET_UTILISATION: f64 = 0.8;
/// Quieter than this (RMS, full scale 1.0) everywhere, a window holds no speech.
const SILENCE_RMS: f32 = 0.004;
/// The newest audio this long and much quieter than the window's speech is a pause.
const PAUSE_S: f64 = 0.6;
/// 20 ms, the frame loudness is measured on.
const FRAME_SAMPLES: usize = 320;
/// The silence kept before the first speech of a window.
const LEAD_IN_S: f64 = 0.3;
/// How far past a committed word's end its sound may still run.
const WORD_TAIL_S: f64 = 0.3;
/// Words further apart than this start a new segment of the saved transcript.
const SEGMENT_GAP_S: f64 = 1.5;
/// The committed text given to the engine as what came before its window.
const PROMPT_CHARS: usize = 200;
/// A window shorter than this is not decoded: Whisper invents words in a fraction of a second.
const MIN_DECODE_S: f64 = 1.0;

/// Why a session was not started.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("you already have {0} live dictations open: stop one first")]
    TooManyForUser(usize),
    #[error(
        "this server is already transcribing {0} live dictations, as many as it can in real \
         time: try again shortly, or record and upload"
    )]
    AtCapacity(usize),
    #[error(
        "the model ({0}) is too slow to transcribe live on this machine: record and upload, \
         or deploy a smaller model or a GPU worker"
    )]
    TooSlow(String),
    #[error("the live engine could not start")]
    Engine(#[source] EngineError),
}

/// Why a running session ends before its `stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limit {
    #[error("an audio frame is larger than the limit")]
    FrameTooLarge,
    #[error("an audio frame must hold whole 16-bit samples")]
    OddFrame,
    #[error("the session reached its length limit; what was said is saved")]
    TooLong,
    #[error("audio is arriving faster than real time: upload recordings instead")]
    TooFast,
    #[error("the server fell behind this dictation; what was said is saved")]
    FellBehind,
}

/// Live sessions of this process, and what the machine can take.
pub struct LiveDictation {
    engine: Arc<dyn LiveEngine>,
    config: LiveConfig,
    /// Decodes running at once; sessions wait their turn here.
    decoders: Arc<Semaphore>,
    open: Mutex<OpenStreams>,
    /// Seconds one decode of a session's window takes on this machine (a moving average of
    /// real decodes, first measured by decoding a calibration window).
    decode_cost_s: Mutex<Option<f64>>,
    /// Cancelled when the process stops: sessions save what they have and close.
    closing: tokio_util::sync::CancellationToken,
}

#[derive(Default)]
struct OpenStreams {
    total: usize,
    by_owner: HashMap<OwnerId, usize>,
}

impl LiveDictation {
    pub fn new(engine: Arc<dyn LiveEngine>, config: LiveConfig) -> Self {
        Self {
            decoders: Arc::new(Semaphore::new(config.decoders)),
            engine,
            config,
            open: Mutex::default(),
            decode_cost_s: Mutex::new(None),
            closing: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Resolves when the process is stopping.
    pub fn closing(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.closing.cancelled()
    }

    /// Asks every session to save and close, and waits up to `grace` for them to finish.
    pub async fn close_all(&self, grace: Duration) {
        self.closing.cancel();
        let deadline = Instant::now() + grace;
        while self.open_streams() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// How many sessions this process runs at once: `LIVE_MAX_STREAMS`, or as many as the
    /// measured decode cost lets the decoders serve each `LIVE_STEP_MS`.
    pub fn capacity(&self) -> Option<usize> {
        if self.config.max_streams > 0 {
            return Some(self.config.max_streams);
        }
        let cost = (*lock(&self.decode_cost_s))?;
        let per_decoder = self.config.step.as_secs_f64() * TARGET_UTILISATION / cost.max(1e-3);
        Some((per_decoder * self.config.decoders as f64).floor() as usize)
    }

    /// Opens a session for `owner`, or says why not.
    pub async fn admit(self: &Arc<Self>, owner: &OwnerId) -> Result<Slot, Refusal> {
        if self.config.max_streams == 0 && lock(&self.decode_cost_s).is_none() {
            self.calibrate().await.map_err(Refusal::Engine)?;
        }
        let mut open = lock(&self.open);
        let mine = open.by_owner.get(owner).copied().unwrap_or(0);
        if mine >= self.config.streams_per_user {
            return Err(Refusal::TooManyForUser(mine));
        }
        let capacity = self.capacity().unwrap_or(0);
        if capacity == 0 {
            return Err(Refusal::TooSlow(self.engine.describe()));
        }
        if open.total >= capacity {
            return Err(Refusal::AtCapacity(open.total));
        }
        open.total += 1;
        *open.by_owner.entry(owner.clone()).or_default() += 1;
        Ok(Slot {
            dictation: self.clone(),
            owner: owner.clone(),
        })
    }

    /// Sessions open now.
    pub fn open_streams(&self) -> usize {
        lock(&self.open).total
    }

    /// Decodes a typical window once (8 s of a voiced, syllable-paced signal) to learn what a
    /// decode costs here before the first session is admitted.
    async fn calibrate(&self) -> Result<(), EngineError> {
        let mut decoder = self.engine.open(None)?;
        let permit = self.decoders.clone().acquire_owned().await;
        let cost = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let samples = calibration_signal(8.0);
            // The first decode of a state also allocates its buffers: not what the next cost.
            decoder.decode(&samples[..SAMPLE_RATE as usize * 2], "")?;
            let started = Instant::now();
            decoder.decode(&samples, "").map(|_| started.elapsed())
        })
        .await
        .map_err(|e| EngineError::Transient(format!("the live engine stopped: {e}")))??;
        self.record_cost(cost);
        tracing::info!(
            decode_s = cost.as_secs_f64(),
            capacity = self.capacity().unwrap_or(0),
            engine = %self.engine.describe(),
            "live dictation calibrated"
        );
        Ok(())
    }

    fn record_cost(&self, cost: Duration) {
        let mut current = lock(&self.decode_cost_s);
        let cost = cost.as_secs_f64();
        *current = Some(match *current {
            Some(before) => before * 0.9 + cost * 0.1,
            None => cost,
        });
    }
}

/// One admitted session's place; dropping it frees the place.
pub struct Slot {
    dictation: Arc<LiveDictation>,
    owner: OwnerId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.dictation.open);
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_owner.get_mut(&self.owner) {
            *count -= 1;
            if *count == 0 {
                open.by_owner.remove(&self.owner);
            }
        }
    }
}

/// What the client asked for at `start`.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub language: Option<String>,
    pub prompt: Option<String>,
}

/// One live dictation: its window of audio, its transcript so far, and the whole recording
/// spilled to a nameless temporary file (the kernel frees it if the process dies).
pub struct LiveSession {
    slot: Slot,
    owner: OwnerId,
    options: SessionOptions,
    decoder: Option<Box<dyn LiveDecoder>>,
    transcript: LiveTranscript,
    window: Vec<f32>,
    /// Samples cut from the front of the window so far.
    window_start: u64,
    received: u64,
    /// `received` when the last decode began.
    decoded_upto: u64,
    recording: std::fs::File,
    started: Instant,
}

/// A decode in flight, and what it gives back.
pub struct Decoded {
    decoder: Box<dyn LiveDecoder>,
    result: Result<Vec<Word>, EngineError>,
    elapsed: Duration,
    window_start: u64,
    paused: bool,
    /// Whether the engine ran (a window without speech is not decoded).
    engine_ran: bool,
}

impl LiveSession {
    /// A session in the admitted `slot`, with a decoder of its own.
    pub fn start(slot: Slot, options: SessionOptions) -> Result<Self, EngineError> {
        let decoder = slot.dictation.engine.open(options.language.as_deref())?;
        let recording = tempfile::tempfile()
            .map_err(|e| EngineError::Transient(format!("no room for the recording: {e}")))?;
        Ok(Self {
            owner: slot.owner.clone(),
            slot,
            options,
            decoder: Some(decoder),
            transcript: LiveTranscript::new(),
            window: Vec::new(),
            window_start: 0,
            received: 0,
            decoded_upto: 0,
            recording,
            started: Instant::now(),
        })
    }

    fn config(&self) -> &LiveConfig {
        &self.slot.dictation.config
    }

    /// Seconds of audio received.
    pub fn received_s(&self) -> f64 {
        self.received as f64 / f64::from(SAMPLE_RATE)
    }

    /// Takes one frame of PCM16 audio, or says which limit it breaks.
    pub fn push(&mut self, frame: &[u8]) -> Result<(), Limit> {
        let config = self.config();
        if frame.len() > config.max_frame_bytes {
            return Err(Limit::FrameTooLarge);
        }
        if !frame.len().is_multiple_of(2) {
            return Err(Limit::OddFrame);
        }
        let max_samples = config.max_session.as_secs() * u64::from(SAMPLE_RATE);
        let ahead = self.received_s() - self.started.elapsed().as_secs_f64();
        if ahead > config.max_ahead.as_secs_f64() {
            return Err(Limit::TooFast);
        }
        let window_limit = WindowPolicy::default().max_s + config.max_buffered.as_secs_f64();
        if self.window.len() as f64 / f64::from(SAMPLE_RATE) > window_limit {
            return Err(Limit::FellBehind);
        }
        let room = max_samples.saturating_sub(self.received) as usize * 2;
        let frame = &frame[..frame.len().min(room)];
        self.recording
            .write_all(frame)
            .map_err(|_| Limit::FellBehind)?;
        self.window.extend(
            frame
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
        );
        self.received += frame.len() as u64 / 2;
        if self.received >= max_samples {
            return Err(Limit::TooLong);
        }
        Ok(())
    }

    /// Whether the window has grown by a step since the last decode, and no decode is running.
    pub fn wants_decode(&self) -> bool {
        let step = self.config().step.as_secs_f64() * f64::from(SAMPLE_RATE);
        self.decoder.is_some() && (self.received - self.decoded_upto) as f64 >= step
    }

    /// Starts decoding the window on a blocking thread, when a decoder is free.
    pub fn decode(&mut self) -> Option<tokio::task::JoinHandle<Decoded>> {
        let mut decoder = self.decoder.take()?;
        self.decoded_upto = self.received;
        self.skip_leading_silence();
        let samples = self.window.clone();
        let window_start = self.window_start;
        let start_s = window_start as f64 / f64::from(SAMPLE_RATE);
        let prompt = self.prompt(start_s);
        let decoders = self.slot.dictation.decoders.clone();
        Some(tokio::spawn(async move {
            let permit = decoders.acquire_owned().await;
            let joined = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let started = Instant::now();
                let paused = ends_in_pause(&samples);
                let engine_ran = has_speech(&samples)
                    && samples.len() as f64 >= MIN_DECODE_S * f64::from(SAMPLE_RATE);
                let result = match engine_ran {
                    true => decoder.decode(&samples, &prompt),
                    false => Ok(Vec::new()),
                };
                Decoded {
                    decoder,
                    result,
                    elapsed: started.elapsed(),
                    window_start,
                    paused,
                    engine_ran,
                }
            })
            .await;
            joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        }))
    }

    /// Drops the silence the window begins with, but the last `LEAD_IN_S` of it: a small
    /// model misreads the first words of a sentence heard after a second of silence.
    fn skip_leading_silence(&mut self) {
        let frame = FRAME_SAMPLES;
        let silent_frames = frame_rms(&self.window)
            .take_while(|rms| *rms <= SILENCE_RMS)
            .count();
        let keep = (LEAD_IN_S * f64::from(SAMPLE_RATE)) as usize;
        let drop = (silent_frames * frame)
            .saturating_sub(keep)
            .min(self.window.len());
        if drop > 0 {
            self.window.drain(..drop);
            self.window_start += drop as u64;
            self.transcript
                .window_moved(self.window_start as f64 / f64::from(SAMPLE_RATE));
        }
    }

    /// Applies a finished decode: the words it settles and the partial after them. The window
    /// is cut once its committed text allows.
    pub fn apply(&mut self, decoded: Decoded) -> Result<Update, EngineError> {
        self.decoder = Some(decoded.decoder);
        let offset = decoded.window_start as f64 / f64::from(SAMPLE_RATE);
        let words: Vec<Word> = decoded
            .result?
            .into_iter()
            .map(|w| Word {
                start: w.start + offset,
                end: w.end + offset,
                ..w
            })
            .collect();
        if decoded.engine_ran {
            self.slot.dictation.record_cost(decoded.elapsed);
        }
        tracing::debug!(
            decode_s = decoded.elapsed.as_secs_f64(),
            window_s = self.window.len() as f64 / f64::from(SAMPLE_RATE),
            words = words.len(),
            paused = decoded.paused,
            "live window decoded"
        );
        let end_s = (self.window_start + self.window.len() as u64) as f64 / f64::from(SAMPLE_RATE);
        // Past its longest, a window moves on: its words up to the newest second are committed
        // whether or not two guesses agreed, so nothing said is cut away uncommitted.
        let too_long = end_s - offset > WindowPolicy::default().max_s;
        let update = if decoded.paused {
            self.transcript.settle(words)
        } else if too_long {
            self.transcript.settle_until(words, end_s - 1.0)
        } else {
            self.transcript.update(words)
        };
        // Past its longest, the next window starts after the last committed word; without one
        // in the window, it keeps only the newest audio.
        let last_committed = self
            .transcript
            .committed()
            .last()
            .map(|w| w.end)
            .filter(|end| *end > offset);
        let policy = WindowPolicy::default();
        let cut = if decoded.paused {
            // A little after the last committed word (word times can be early, and a tail left
            // in the next window comes back as a word), never into the pause; but never past
            // speech the guess left out either, which the next window must still hear.
            let pause_start = (end_s - PAUSE_S).max(offset);
            Some(last_committed.map_or(pause_start, |end| (end + WORD_TAIL_S).min(pause_start)))
        } else if too_long {
            Some(last_committed.unwrap_or(end_s - policy.trim_after_s))
        } else {
            self.transcript
                .window_cut(policy, offset, end_s)
                .map(|cut| cut.0)
        };
        if let Some(cut_s) = cut {
            let cut_at = (cut_s * f64::from(SAMPLE_RATE)) as u64;
            let drop = cut_at.saturating_sub(self.window_start) as usize;
            self.window.drain(..drop.min(self.window.len()));
            self.window_start += drop as u64;
            self.transcript
                .window_moved(self.window_start as f64 / f64::from(SAMPLE_RATE));
        }
        Ok(update)
    }

    /// The last decode, of whatever the window still holds: every word of it is committed.
    pub async fn finish(&mut self, in_flight: Option<tokio::task::JoinHandle<Decoded>>) -> Update {
        let mut settled = Update::default();
        if let Some(handle) = in_flight
            && let Ok(decoded) = handle.await
            && let Ok(update) = self.apply(decoded)
        {
            settled.committed.extend(update.committed);
        }
        if let Some(handle) = self.decode()
            && let Ok(mut decoded) = handle.await
        {
            decoded.paused = true;
            match self.apply(decoded) {
                Ok(update) => settled.committed.extend(update.committed),
                Err(e) => tracing::warn!(error = %e, "the last live decode failed"),
            }
        }
        settled
    }

    /// The committed text as a transcript.
    pub fn transcript(&self) -> Transcript {
        let segments = self.transcript.segments(SEGMENT_GAP_S);
        Transcript {
            text: crate::domain::live::join_words(self.transcript.committed()),
            segments,
            language: self.options.language.clone(),
            duration_s: Some(self.received_s()),
            ..Default::default()
        }
    }

    fn prompt(&self, window_start_s: f64) -> String {
        let before = self.transcript.context_before(window_start_s, PROMPT_CHARS);
        match self.options.prompt.as_deref().filter(|p| !p.is_empty()) {
            Some(own) if before.is_empty() => own.to_owned(),
            Some(own) => format!("{own} {before}"),
            None => before,
        }
    }

    /// Keeps the session as an ordinary transcription record: the recording stored (sealed
    /// where the store seals), the transcript complete. `None` when nothing was said.
    pub async fn save(&mut self, state: &AppState) -> Result<Option<TranscriptionId>, SaveError> {
        if self.received == 0 {
            return Ok(None);
        }
        let id = TranscriptionId::new();
        let record = TranscriptionRecord::new_queued(
            id,
            self.owner.clone(),
            TranscriptionRequest {
                engine: EngineKind::Local,
                task: Task::Transcribe,
                language: self.options.language.clone(),
                prompt: self.options.prompt.clone(),
            },
            Some(format!(
                "dictation-{}.wav",
                state.clock.now().format("%Y%m%d-%H%M%S")
            )),
            AudioFormat::Wav,
            44 + self.received * 2,
            state.clock.now(),
        );
        let body = self.wav_stream()?;
        state
            .blobs
            .put(&record.audio_key, body, record.size_bytes)
            .await?;
        let record = state
            .uploads()
            .accept(record, Then::ProcessNow)
            .await
            .map_err(|e| SaveError::Record(e.to_string()))?;
        state
            .transcriptions()
            .complete_live(&record, self.transcript(), self.started)
            .await
            .map_err(|e| SaveError::Record(e.to_string()))?;
        Ok(Some(id))
    }

    /// The recording as a WAV file, read back from the spilled PCM.
    fn wav_stream(&mut self) -> Result<crate::ports::ByteStream<'static>, SaveError> {
        let data_bytes = u32::try_from(self.received * 2).unwrap_or(u32::MAX - 44);
        let header = bytes::Bytes::from(wav_header(data_bytes));
        self.recording.rewind().map_err(SaveError::Spill)?;
        let file = tokio::fs::File::from_std(self.recording.try_clone().map_err(SaveError::Spill)?);
        let body = tokio_util::io::ReaderStream::new(file);
        Ok(futures::stream::once(async move { Ok(header) })
            .chain(body)
            .boxed())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("the recording could not be read back")]
    Spill(#[source] std::io::Error),
    #[error("the recording could not be stored")]
    Blob(#[from] crate::ports::BlobError),
    #[error("the transcription record could not be kept: {0}")]
    Record(String),
}

/// A 44-byte header for 16 kHz mono PCM16 of `data_bytes`.
fn wav_header(data_bytes: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&1u16.to_le_bytes()); // mono
    header.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    header.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_bytes.to_le_bytes());
    header
}

/// The loudness of each 20 ms of `samples`.
fn frame_rms(samples: &[f32]) -> impl Iterator<Item = f32> + '_ {
    samples
        .chunks(320)
        .map(|frame| (frame.iter().map(|s| s * s).sum::<f32>() / frame.len().max(1) as f32).sqrt())
}

fn has_speech(samples: &[f32]) -> bool {
    frame_rms(samples).any(|rms| rms > SILENCE_RMS)
}

/// Whether the newest [`PAUSE_S`] of `samples` is silence, or far quieter than the loudest
/// speech before it.
fn ends_in_pause(samples: &[f32]) -> bool {
    let tail = (PAUSE_S * f64::from(SAMPLE_RATE)) as usize;
    if samples.len() < tail * 2 {
        return false;
    }
    let (speech, pause) = samples.split_at(samples.len() - tail);
    let loudest = frame_rms(speech).fold(0.0f32, f32::max);
    let threshold = SILENCE_RMS.max(loudest * 0.05);
    loudest > SILENCE_RMS && frame_rms(pause).all(|rms| rms < threshold)
}

/// `seconds` of a voiced signal shaped into syllables, as loud as speech: decodes of it cost
/// about what decodes of dictation do.
fn calibration_signal(seconds: f64) -> Vec<f32> {
    let n = (seconds * f64::from(SAMPLE_RATE)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(SAMPLE_RATE);
            let pitch = 120.0 + 20.0 * (t * 0.7).sin();
            let voice: f64 = (1..=8)
                .map(|h| {
                    (2.0 * std::f64::consts::PI * pitch * f64::from(h) * t).sin() / f64::from(h)
                })
                .sum();
            let syllables = (2.0 * std::f64::consts::PI * 4.0 * t).sin().max(0.0);
            (0.1 * voice * syllables) as f32
        })
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(seconds: f64, amplitude: f32) -> Vec<f32> {
        (0..(seconds * 16_000.0) as usize)
            .map(|i| amplitude * (i as f32 * 0.1).sin())
            .collect()
    }

    #[test]
    fn a_pause_is_quiet_audio_after_speech() {
        let mut samples = tone(2.0, 0.3);
        assert!(!ends_in_pause(&samples), "still speaking");
        samples.extend(tone(0.7, 0.001));
        assert!(ends_in_pause(&samples));
        assert!(!ends_in_pause(&tone(3.0, 0.001)), "no speech before it");
        assert!(!has_speech(&tone(3.0, 0.001)));
        assert!(has_speech(&tone(3.0, 0.2)));
    }

    #[test]
    fn the_saved_recording_is_a_wav_file_of_its_samples() {
        let header = wav_header(32_000);
        assert_eq!(header.len(), 44);
        assert_eq!(&header[..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes(header[24..28].try_into().unwrap()),
            16_000
        );
        assert_eq!(
            u32::from_le_bytes(header[40..44].try_into().unwrap()),
            32_000
        );
        assert_eq!(
            crate::domain::sniff_audio_format(&header),
            Some(AudioFormat::Wav)
        );
    }
}
