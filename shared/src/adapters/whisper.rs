//! [`Transcriber`] on whisper.cpp, in this process (CPU, or NVIDIA GPU with the `cuda` feature).
//!
//! The model is loaded once and shared. Audio is decoded as a stream (see [`super::audio`])
//! and cut into pieces of about `WHISPER_PIECE_SECS` at the speaker's pauses, long silences
//! left out (see [`super::speech_pieces`]); `WHISPER_WORKERS` threads transcribe the pieces in
//! parallel, each with its own decoder state and an encoder pass sized to its piece. Memory
//! is bounded by the pieces in flight, not by the length of the recording.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Once, OnceLock, mpsc},
};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::{
    audio::{AudioError, TARGET_RATE},
    isolated_decoder::{self, ProbeError},
    speech_gate::{GateError, SpeechGate},
    speech_pieces::{Piece, SpeechPieces},
};
use crate::{
    config::{LocalEngineConfig, VoiceDetection},
    domain::{EngineKind, Segment, Task, TokenScore, Transcript},
    ports::{AudioInput, EngineError, Progress, TranscribeOptions, Transcriber},
};

/// Whisper's window: shorter pieces can use a smaller audio context.
const WINDOW_SECS: f64 = 30.0;
/// A fitted encoder context covers the piece plus this much, and never less than
/// `MIN_FITTED_SECS`.
const FIT_MARGIN_SECS: f64 = 2.0;
const MIN_FITTED_SECS: f64 = 10.0;
/// Encoder frames per second of audio (1500 per 30 s window).
const FRAMES_PER_SEC: f64 = 50.0;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("Whisper model {0} not found: run `make model` (or set WHISPER_MODEL_PATH)")]
    Missing(PathBuf),
    #[error("Whisper model {path} could not be loaded: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Decoder(#[from] ProbeError),
}

pub struct WhisperTranscriber {
    pub(super) context: Arc<WhisperContext>,
    pub(super) config: LocalEngineConfig,
    pub(super) label: String,
    pub(super) multilingual: bool,
}

impl WhisperTranscriber {
    pub fn load(config: &LocalEngineConfig) -> Result<Self, LoadError> {
        static LOGGING: Once = Once::new();
        // whisper.cpp's own log lines go through `tracing` instead of stderr.
        LOGGING.call_once(whisper_rs::install_logging_hooks);
        let path = &config.model_path;
        if !path.is_file() {
            return Err(LoadError::Missing(path.clone()));
        }
        isolated_decoder::probe(&config.decoder)?;
        let mut params = WhisperContextParameters::default();
        params.use_gpu(config.use_gpu);
        let context =
            WhisperContext::new_with_params(path, params).map_err(|e| LoadError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let multilingual = context.is_multilingual();
        let label = path
            .file_stem()
            .map(|s| s.to_string_lossy().trim_start_matches("ggml-").to_owned())
            .unwrap_or_else(|| "whisper".into());
        Ok(Self {
            context: Arc::new(context),
            config: config.clone(),
            label,
            multilingual,
        })
    }
}

impl WhisperTranscriber {
    fn job(
        &self,
        extension: &'static str,
        options: &TranscribeOptions,
        progress: &Progress,
    ) -> Result<Job, EngineError> {
        if options.task == Task::Translate && !self.multilingual {
            return Err(EngineError::Permanent(format!(
                "the model {} is English-only and cannot translate: deploy a multilingual \
                 model (e.g. MODEL=base)",
                self.label
            )));
        }
        Ok(Job {
            context: self.context.clone(),
            config: self.config.clone(),
            task: options.task,
            language: options
                .language
                .clone()
                .or_else(|| self.config.language.clone())
                .or_else(|| (!self.multilingual).then(|| "en".to_owned())),
            prompt: options.prompt.clone(),
            extension,
            progress: progress.clone(),
        })
    }

    /// Transcribes a local file on the calling thread (the `mmt transcribe` command, benchmarks).
    pub fn transcribe_file(
        &self,
        path: &Path,
        format: crate::domain::AudioFormat,
        options: &TranscribeOptions,
        progress: &Progress,
    ) -> Result<Transcript, EngineError> {
        let file = std::fs::File::open(path).map_err(|e| {
            EngineError::Permanent(format!("{} could not be opened: {e}", path.display()))
        })?;
        self.job(format.extension(), options, progress)?.run(file)
    }
}

#[async_trait]
impl Transcriber for WhisperTranscriber {
    fn kind(&self) -> EngineKind {
        EngineKind::Local
    }

    fn describe(&self) -> String {
        format!("whisper.cpp {}", self.label)
    }

    fn translates(&self) -> bool {
        self.multilingual
    }

    /// Exact: the model's own tokenizer.
    fn prompt_tokens(&self, text: &str) -> usize {
        // A BPE token is at least one byte; room for every byte bounds the count.
        self.context.tokenize(text, text.len() + 1).map_or_else(
            |_| crate::domain::estimated_tokens(text),
            |tokens| tokens.len(),
        )
    }

    async fn transcribe(
        &self,
        audio: &AudioInput,
        options: &TranscribeOptions,
        progress: &Progress,
    ) -> Result<Transcript, EngineError> {
        // Containers such as MP4 keep their index at the end: decoding needs a seekable file.
        let spilled = spill(audio).await?;
        let job = self.job(audio.format.extension(), options, progress)?;
        tokio::task::spawn_blocking(move || job.run(spilled))
            .await
            .map_err(|e| {
                EngineError::Transient(format!("the local engine stopped unexpectedly: {e}"))
            })?
    }
}

/// Copies the audio into a temporary file that has no name (unlinked at creation): no other
/// process can open it, and if this one dies the kernel frees it — the decrypted recording
/// never outlives the job on disk.
async fn spill(audio: &AudioInput) -> Result<std::fs::File, EngineError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        EngineError::Transient(format!("audio could not be read from storage: {e}"))
    };
    let mut file = tokio::fs::File::from_std(tempfile::tempfile().map_err(|e| unreadable(&e))?);
    let mut body = audio.open().await.map_err(|e| {
        if e.is_transient() {
            unreadable(&e)
        } else {
            EngineError::Permanent(format!("audio could not be read from storage: {e}"))
        }
    })?;
    while let Some(chunk) = body.next().await {
        file.write_all(&chunk.map_err(|e| unreadable(&e))?)
            .await
            .map_err(|e| unreadable(&e))?;
    }
    file.flush().await.map_err(|e| unreadable(&e))?;
    let mut file = file.into_std().await;
    std::io::Seek::rewind(&mut file).map_err(|e| unreadable(&e))?;
    Ok(file)
}

struct Job {
    context: Arc<WhisperContext>,
    config: LocalEngineConfig,
    task: Task,
    /// The language spoken, when known before decoding (asked for, configured, or the only
    /// one an English-only model knows).
    language: Option<String>,
    prompt: Option<String>,
    extension: &'static str,
    progress: Progress,
}

/// The language whisper.cpp detected in the recording's first speech, and its probability.
struct Detected {
    language: String,
    probability: f64,
}

/// State shared by the decoding thread and the piece workers of one job.
struct Shared {
    pieces: Mutex<mpsc::Receiver<(usize, Piece)>>,
    /// Set before the first piece is handed out, when the language was not known.
    detected: OnceLock<Detected>,
    /// Each piece's segments, with times already in the recording's time.
    results: Mutex<Vec<(usize, Vec<Segment>)>>,
    failure: Mutex<Option<EngineError>>,
    /// Past this, the job fails: no file keeps a worker forever.
    deadline: std::time::Instant,
    /// Seconds of audio transcribed so far, and the recording's length if the container says.
    done_s: Mutex<f64>,
    total_s: Mutex<Option<f64>>,
}

impl Job {
    /// Decodes the file on this thread while `workers` threads transcribe its pieces, each
    /// with its own decoder state and an equal share of the threads.
    fn run(self, file: std::fs::File) -> Result<Transcript, EngineError> {
        let workers = self.config.workers.clamp(1, self.config.threads);
        let threads_each = (self.config.threads / workers).max(1);
        let (sender, receiver) = mpsc::sync_channel::<(usize, Piece)>(workers);
        let shared = Shared {
            pieces: Mutex::new(receiver),
            detected: OnceLock::new(),
            deadline: std::time::Instant::now() + self.config.job_timeout,
            results: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            done_s: Mutex::new(0.0),
            total_s: Mutex::new(None),
        };
        let decoded = std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| self.work(&shared, threads_each));
            }
            self.feed(file, sender, &shared)
        });
        if let Some(failure) = lock(&shared.failure).take() {
            return Err(failure);
        }
        let samples = decoded?;
        let mut results = std::mem::take(&mut *lock(&shared.results));
        results.sort_by_key(|(index, _)| *index);
        self.progress.report(100);
        let segments: Vec<Segment> = results.into_iter().flat_map(|(_, s)| s).collect();
        let detected = shared.detected.into_inner();
        Ok(Transcript {
            text: segments
                .iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            segments,
            language: self
                .language
                .or_else(|| detected.as_ref().map(|d| d.language.clone())),
            language_probability: detected.map(|d| d.probability),
            duration_s: Some(samples as f64 / f64::from(TARGET_RATE)),
            ..Default::default()
        })
    }

    /// Decodes the audio and hands each piece to the workers as soon as it is cut.
    fn feed(
        &self,
        file: std::fs::File,
        sender: mpsc::SyncSender<(usize, Piece)>,
        shared: &Shared,
    ) -> Result<u64, EngineError> {
        let mut pieces = SpeechPieces::new(
            self.config.piece.as_secs(),
            self.config.vad != VoiceDetection::Off,
        );
        let mut gate = self.speech_gate()?;
        let gate_failed = |e: GateError| {
            lock(&shared.failure).get_or_insert(EngineError::Transient(e.to_string()));
            AudioError::Stopped("voice activity detection failed".into())
        };
        let mut next = 0usize;
        let mut send = |piece: Piece| {
            self.hand_out(piece, next, &sender, shared)?;
            next += 1;
            Ok::<(), AudioError>(())
        };
        let decoded = isolated_decoder::decode(
            &self.config.decoder,
            file,
            Some(self.extension),
            self.config.job_timeout,
            |info| *lock(&shared.total_s) = info.duration_s,
            |samples| {
                self.within_deadline(shared)?;
                let gated;
                let samples = match gate.as_mut() {
                    Some(gate) => {
                        gated = gate.push(samples).map_err(gate_failed)?;
                        &gated[..]
                    }
                    None => samples,
                };
                pieces.push(samples).into_iter().try_for_each(&mut send)
            },
        )
        .and_then(|samples| {
            if let Some(gate) = gate.as_mut() {
                let rest = gate.finish().map_err(gate_failed)?;
                pieces.push(&rest).into_iter().try_for_each(&mut send)?;
            }
            pieces.finish().into_iter().try_for_each(&mut send)?;
            Ok(samples)
        });
        match decoded {
            Ok(samples) => Ok(samples),
            // The worker's own error is reported instead.
            Err(AudioError::Stopped(reason)) => Err(EngineError::Transient(reason)),
            Err(AudioError::Io(e)) => Err(EngineError::Transient(format!(
                "audio could not be read: {e}"
            ))),
            Err(other) => Err(EngineError::Permanent(other.to_string())),
        }
    }

    /// Fails the job once it has run past its deadline.
    fn within_deadline(&self, shared: &Shared) -> Result<(), AudioError> {
        if std::time::Instant::now() < shared.deadline {
            return Ok(());
        }
        let limit = self.config.job_timeout.as_secs();
        lock(&shared.failure).get_or_insert_with(|| {
            EngineError::Permanent(format!(
                "transcription took longer than its {limit} s limit (WHISPER_JOB_TIMEOUT_SECS)"
            ))
        });
        Err(AudioError::Stopped("the job ran out of time".into()))
    }

    /// Silero VAD in front of the pieces, when configured. One thread: the network is small,
    /// and the piece workers need the rest.
    fn speech_gate(&self) -> Result<Option<SpeechGate>, EngineError> {
        match &self.config.vad {
            VoiceDetection::Silero(model) => SpeechGate::load(model, 1).map(Some).map_err(|e| {
                EngineError::Transient(format!("the local engine could not start: {e}"))
            }),
            _ => Ok(None),
        }
    }

    /// Gives piece `index` to the workers; before the first, detects the language if needed.
    fn hand_out(
        &self,
        piece: Piece,
        index: usize,
        sender: &mpsc::SyncSender<(usize, Piece)>,
        shared: &Shared,
    ) -> Result<(), AudioError> {
        if lock(&shared.failure).is_some() {
            return Err(AudioError::Stopped("a piece failed".into()));
        }
        if index == 0 && self.language.is_none() {
            // Once, on the first speech, so every piece is decoded in the same language.
            match self.detect_language(&piece.samples) {
                Ok(detected) => {
                    let _ = shared.detected.set(detected);
                }
                Err(e) => {
                    lock(&shared.failure).get_or_insert(e);
                    return Err(AudioError::Stopped("language detection failed".into()));
                }
            }
        }
        tracing::debug!(
            piece = index,
            start_s = piece.start_s,
            duration_s = piece.duration_s(),
            "audio piece cut"
        );
        sender
            .send((index, piece))
            .map_err(|_| AudioError::Stopped("the workers stopped".into()))
    }

    /// One worker: transcribes pieces until there are none left or one fails.
    fn work(&self, shared: &Shared, threads: usize) {
        let mut state = None;
        loop {
            let next = lock(&shared.pieces).recv();
            let Ok((index, piece)) = next else { return };
            if lock(&shared.failure).is_some() || self.within_deadline(shared).is_err() {
                continue; // drain, so the decoder is not left blocked
            }
            let result = match &mut state {
                Some(state) => self.transcribe_piece(state, &piece, threads, shared),
                None => self
                    .context
                    .create_state()
                    .map_err(|e| {
                        EngineError::Transient(format!("the local engine could not start: {e}"))
                    })
                    .and_then(|created| {
                        let state = state.insert(created);
                        self.transcribe_piece(state, &piece, threads, shared)
                    }),
            };
            match result {
                Ok(text) => lock(&shared.results).push((index, text)),
                Err(e) => {
                    lock(&shared.failure).get_or_insert(e);
                }
            }
        }
    }

    /// whisper.cpp's language detection on `samples` (its first 30 s), with all the threads.
    fn detect_language(&self, samples: &[f32]) -> Result<Detected, EngineError> {
        let failed = |e: &dyn std::fmt::Display| {
            EngineError::Transient(format!("language detection failed: {e}"))
        };
        let threads = self.config.threads.max(1);
        let mut state = self.context.create_state().map_err(|e| failed(&e))?;
        state.pcm_to_mel(samples, threads).map_err(|e| failed(&e))?;
        let (id, probabilities) = state.lang_detect(0, threads).map_err(|e| failed(&e))?;
        let language = whisper_rs::get_lang_str(id)
            .ok_or_else(|| failed(&format!("unknown language id {id}")))?;
        let probability = usize::try_from(id)
            .ok()
            .and_then(|i| probabilities.get(i))
            .copied()
            .unwrap_or_default();
        tracing::debug!(language, probability, "language detected");
        Ok(Detected {
            language: language.to_owned(),
            probability: f64::from(probability),
        })
    }

    fn transcribe_piece(
        &self,
        state: &mut WhisperState,
        piece: &Piece,
        threads: usize,
        shared: &Shared,
    ) -> Result<Vec<Segment>, EngineError> {
        let piece_s = piece.duration_s();
        let language = self
            .language
            .as_deref()
            .or_else(|| shared.detected.get().map(|d| d.language.as_str()));
        let params = self.params(piece_s, threads, language);
        state
            .full(params, &piece.samples)
            .map_err(|e| EngineError::Transient(format!("the local engine failed: {e}")))?;
        let mut segments = Vec::new();
        let last_text_token = self.context.token_eot();
        for segment in state.as_iter() {
            let text = segment
                .to_str_lossy()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if is_annotation(&text) {
                continue;
            }
            let at = |centiseconds: i64| {
                piece.start_s + (centiseconds.max(0) as f64 / 100.0).min(piece_s)
            };
            let token_scores = text_tokens(&segment, last_text_token, at);
            segments.push(Segment {
                start: at(segment.start_timestamp()),
                end: at(segment.end_timestamp()),
                text: text.trim().to_owned(),
                token_scores,
            });
        }
        let done = {
            let mut done = lock(&shared.done_s);
            *done += piece_s;
            *done
        };
        if let Some(total) = lock(&shared.total_s).filter(|t| *t > 0.0) {
            self.progress
                .report((done / total * 100.0).clamp(0.0, 99.0) as u8);
        }
        Ok(segments)
    }

    /// Decoding settings for a piece of `piece_s` seconds. Pieces are decoded independently
    /// (prompted with the vocabulary only, not the text before them), so the transcript does
    /// not depend on how many workers the machine runs.
    fn params<'a>(
        &'a self,
        piece_s: f64,
        threads: usize,
        language: Option<&'a str>,
    ) -> FullParams<'a, 'a> {
        let strategy = if self.config.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: self.config.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut params = quiet_params(strategy, threads);
        params.set_translate(self.task == Task::Translate);
        params.set_temperature(self.config.temperature);
        params.set_temperature_inc(self.config.temperature_increment);
        params.set_language(Some(language.unwrap_or("auto")));
        if let Some(prompt) = self.prompt.as_deref().filter(|p| !p.is_empty()) {
            params.set_initial_prompt(prompt);
        }
        if self.config.fit_audio_context && piece_s < WINDOW_SECS {
            // A 15 s piece need not pay for a 30 s encoder pass. A context cut close to the
            // audio makes tiny models repeat themselves (a 5 s piece in 6.4 s of context came
            // back three times over), hence the margin and the floor.
            let seconds = (piece_s + FIT_MARGIN_SECS).max(MIN_FITTED_SECS);
            let frames = (seconds * FRAMES_PER_SEC).ceil() as i32;
            params.set_audio_ctx(frames.min(1500));
        }
        params
    }
}

/// Locks a job's shared state; a worker that panicked leaves its data usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Decoding settings both engines share: `threads`, each window decoded on its own (no text
/// carried over from the last), per-token times (word timestamps), nothing printed, blank and
/// non-speech tokens suppressed.
pub(super) fn quiet_params<'a>(strategy: SamplingStrategy, threads: usize) -> FullParams<'a, 'a> {
    let mut params = FullParams::new(strategy);
    params.set_n_threads(threads as i32);
    params.set_no_context(true);
    params.set_token_timestamps(true);
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    params.set_suppress_blank(true);
    params.set_suppress_nst(true);
    params
}

/// The text tokens of a decoded segment, with their times (`at` turns whisper.cpp's
/// centiseconds into seconds) and log-probabilities.
pub(super) fn text_tokens(
    segment: &whisper_rs::WhisperSegment<'_>,
    last_text_token: whisper_rs::WhisperTokenId,
    at: impl Fn(i64) -> f64,
) -> Vec<TokenScore> {
    (0..segment.n_tokens())
        .filter_map(|i| segment.get_token(i))
        .filter_map(|token| {
            let data = token.token_data();
            // Ids from end-of-text up are control and timestamp tokens, not words.
            (data.id < last_text_token).then(|| TokenScore {
                text: token
                    .to_str_lossy()
                    .map(|t| t.into_owned())
                    .unwrap_or_default(),
                start: at(data.t0),
                end: at(data.t1),
                logprob: f64::from(data.plog),
            })
        })
        .collect()
}

/// whisper.cpp marks non-speech with bracketed labels such as `[BLANK_AUDIO]`: not words.
pub(super) fn is_annotation(text: &str) -> bool {
    let t = text.trim();
    t.is_empty()
        || (t.starts_with('[') && t.ends_with(']'))
        || (t.starts_with('(') && t.ends_with(')'))
}

#[cfg(test)]
mod tests {
    use super::is_annotation;

    #[test]
    fn non_speech_labels_are_not_text() {
        assert!(is_annotation(" [BLANK_AUDIO]"));
        assert!(is_annotation("(silence) "));
        assert!(!is_annotation(" Take two tablets [daily]."));
    }
}
