//! [`Transcriber`] on whisper.cpp, in this process (CPU, or NVIDIA GPU with the `cuda` feature).
//!
//! The model is loaded once and shared; each transcription gets its own decoder state. Audio
//! is decoded as a stream (see [`super::audio`]) and transcribed in pieces of about
//! `WHISPER_CHUNK_SECS`, cut at the quietest moment near the boundary, so memory does not grow
//! with the length of the recording. Each piece after the first is prompted with the end of
//! the text before it, so context carries across the cut.

use std::{
    cell::Cell,
    path::{Path, PathBuf},
    sync::{Arc, Once},
};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::audio::{AudioError, TARGET_RATE, decode_file};
use crate::{
    config::LocalEngineConfig,
    domain::{EngineKind, Segment, Transcript},
    ports::{AudioInput, EngineError, Progress, TranscribeOptions, Transcriber},
};

/// Whisper's window: shorter pieces can use a smaller audio context.
const WINDOW_SECS: f64 = 30.0;
/// Encoder frames per second of audio (1500 per 30 s window).
const FRAMES_PER_SEC: f64 = 50.0;
/// How far past the nominal chunk length we look for a quiet place to cut.
const CUT_SEARCH_SECS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("Whisper model {0} not found: run `make model` (or set WHISPER_MODEL_PATH)")]
    Missing(PathBuf),
    #[error("Whisper model {path} could not be loaded: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

pub struct WhisperTranscriber {
    context: Arc<WhisperContext>,
    config: LocalEngineConfig,
    label: String,
    multilingual: bool,
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
    ) -> Job {
        Job {
            context: self.context.clone(),
            config: self.config.clone(),
            language: options
                .language
                .clone()
                .or_else(|| self.config.language.clone())
                .or_else(|| (!self.multilingual).then(|| "en".to_owned())),
            prompt: options
                .prompt
                .clone()
                .or_else(|| self.config.initial_prompt.clone()),
            extension,
            progress: progress.clone(),
        }
    }

    /// Transcribes a local file on the calling thread (the `mmt transcribe` command, benchmarks).
    pub fn transcribe_file(
        &self,
        path: &Path,
        format: crate::domain::AudioFormat,
        options: &TranscribeOptions,
        progress: &Progress,
    ) -> Result<Transcript, EngineError> {
        self.job(format.extension(), options, progress).run(path)
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

    async fn transcribe(
        &self,
        audio: &AudioInput,
        options: &TranscribeOptions,
        progress: &Progress,
    ) -> Result<Transcript, EngineError> {
        // Containers such as MP4 keep their index at the end: decoding needs a seekable file.
        let spilled = spill(audio).await?;
        let job = self.job(audio.format.extension(), options, progress);
        tokio::task::spawn_blocking(move || job.run(&spilled))
            .await
            .map_err(|e| {
                EngineError::Transient(format!("the local engine stopped unexpectedly: {e}"))
            })?
    }
}

/// Copies the audio to a private temporary file, removed when dropped.
async fn spill(audio: &AudioInput) -> Result<tempfile::TempPath, EngineError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        EngineError::Transient(format!("audio could not be read from storage: {e}"))
    };
    let path = tempfile::Builder::new()
        .prefix("mmt-audio-")
        .tempfile()
        .map_err(|e| unreadable(&e))?
        .into_temp_path();
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| unreadable(&e))?;
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
    Ok(path)
}

struct Job {
    context: Arc<WhisperContext>,
    config: LocalEngineConfig,
    language: Option<String>,
    prompt: Option<String>,
    extension: &'static str,
    progress: Progress,
}

impl Job {
    fn run(self, path: &Path) -> Result<Transcript, EngineError> {
        let mut state = self.context.create_state().map_err(|e| {
            EngineError::Transient(format!("the local engine could not start: {e}"))
        })?;
        let chunk_samples = self.config.chunk.as_secs() as usize * TARGET_RATE as usize;
        let search = CUT_SEARCH_SECS * TARGET_RATE as usize;
        let total_s = Cell::new(None::<f64>);
        let mut out = Pieces::default();
        let mut buffer: Vec<f32> = Vec::new();

        let decoded = decode_file(
            path,
            Some(self.extension),
            |info| total_s.set(info.duration_s),
            |samples| {
                buffer.extend_from_slice(samples);
                if buffer.len() >= chunk_samples + search {
                    let cut = quietest_cut(&buffer, chunk_samples, search);
                    let piece: Vec<f32> = buffer.drain(..cut).collect();
                    self.transcribe_piece(&mut state, &piece, &mut out, total_s.get())
                        .map_err(|e| AudioError::Stopped(e.to_string()))?;
                }
                Ok(())
            },
        );
        match decoded {
            Ok(_) => {}
            Err(AudioError::Stopped(reason)) => return Err(EngineError::Transient(reason)),
            Err(AudioError::Io(e)) => {
                return Err(EngineError::Transient(format!(
                    "audio could not be read: {e}"
                )));
            }
            Err(other) => return Err(EngineError::Permanent(other.to_string())),
        }
        if !buffer.is_empty() {
            self.transcribe_piece(&mut state, &buffer, &mut out, total_s.get())?;
        }
        self.progress.report(100);
        Ok(Transcript {
            text: out.text.trim().to_owned(),
            segments: out.segments,
            language: out.language.or(self.language),
            duration_s: Some(out.offset_s),
        })
    }

    fn transcribe_piece(
        &self,
        state: &mut WhisperState,
        piece: &[f32],
        out: &mut Pieces,
        total_s: Option<f64>,
    ) -> Result<(), EngineError> {
        let piece_s = piece.len() as f64 / f64::from(TARGET_RATE);
        let mut params = self.params(piece_s);
        let prompt = self.prompt_after(&out.text);
        if !prompt.is_empty() {
            params.set_initial_prompt(&prompt);
        }
        let (reporter, done_s) = (self.progress.clone(), out.offset_s);
        params.set_progress_callback_safe(move |percent: i32| {
            let Some(total) = total_s.filter(|t| *t > 0.0) else {
                return reporter.report(percent.clamp(0, 99) as u8);
            };
            let overall = (done_s + piece_s * f64::from(percent) / 100.0) / total * 100.0;
            reporter.report(overall.clamp(0.0, 99.0) as u8);
        });

        state
            .full(params, piece)
            .map_err(|e| EngineError::Transient(format!("the local engine failed: {e}")))?;
        for segment in state.as_iter() {
            let text = segment
                .to_str_lossy()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if is_annotation(&text) {
                continue;
            }
            out.text.push_str(&text);
            out.segments.push(Segment {
                start: out.offset_s + segment.start_timestamp() as f64 / 100.0,
                end: (out.offset_s + segment.end_timestamp() as f64 / 100.0)
                    .min(out.offset_s + piece_s),
                text: text.trim().to_owned(),
            });
        }
        if self.language.is_none() && out.language.is_none() {
            out.language =
                whisper_rs::get_lang_str(state.full_lang_id_from_state()).map(str::to_owned);
        }
        out.offset_s += piece_s;
        Ok(())
    }

    /// Decoding settings for a piece of `piece_s` seconds.
    fn params(&self, piece_s: f64) -> FullParams<'_, '_> {
        let strategy = if self.config.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: self.config.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(self.config.threads as i32);
        params.set_translate(false);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_temperature(self.config.temperature);
        params.set_temperature_inc(self.config.temperature_increment);
        params.set_language(Some(self.language.as_deref().unwrap_or("auto")));
        if self.config.fit_audio_context && piece_s < WINDOW_SECS {
            // A 3 s clip need not pay for a 30 s encoder pass; keep a margin past the audio.
            let frames = ((piece_s + 1.0) * FRAMES_PER_SEC).ceil() as i32;
            params.set_audio_ctx(frames.clamp(64, 1500));
        }
        params
    }

    /// The prompt of the next piece: the configured vocabulary, and the end of what was
    /// transcribed so far, carried across the cut.
    fn prompt_after(&self, done: &str) -> String {
        match (&self.prompt, done.is_empty()) {
            (Some(p), true) => p.clone(),
            (p, false) => {
                // Carry the end of the previous piece across the cut.
                let tail: String = done
                    .chars()
                    .rev()
                    .take(200)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("{} {tail}", p.as_deref().unwrap_or_default())
                    .trim()
                    .to_owned()
            }
            (None, true) => String::new(),
        }
    }
}

/// whisper.cpp marks non-speech with bracketed labels such as `[BLANK_AUDIO]`: not words.
fn is_annotation(text: &str) -> bool {
    let t = text.trim();
    t.is_empty()
        || (t.starts_with('[') && t.ends_with(']'))
        || (t.starts_with('(') && t.ends_with(')'))
}

#[derive(Default)]
struct Pieces {
    text: String,
    segments: Vec<Segment>,
    language: Option<String>,
    /// Seconds of audio transcribed so far.
    offset_s: f64,
}

/// Where to cut `buffer` near `at`: the start of the quietest 0.25 s within `search` samples.
fn quietest_cut(buffer: &[f32], at: usize, search: usize) -> usize {
    const WINDOW: usize = TARGET_RATE as usize / 4;
    let end = (at + search).min(buffer.len());
    (at..end.saturating_sub(WINDOW))
        .step_by(WINDOW / 2)
        .min_by(|a, b| {
            let energy = |i: usize| buffer[i..i + WINDOW].iter().map(|s| s * s).sum::<f32>();
            energy(*a).total_cmp(&energy(*b))
        })
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::{is_annotation, quietest_cut};

    #[test]
    fn non_speech_labels_are_not_text() {
        assert!(is_annotation(" [BLANK_AUDIO]"));
        assert!(is_annotation("(silence) "));
        assert!(!is_annotation(" Take two tablets [daily]."));
    }

    #[test]
    fn cuts_land_in_silence() {
        let mut buffer = vec![0.5f32; 16_000 * 20];
        // Silence from 13.0 s to 13.5 s.
        buffer[16_000 * 13..16_000 * 13 + 8_000]
            .iter_mut()
            .for_each(|s| *s = 0.0);
        let cut = quietest_cut(&buffer, 16_000 * 10, 16_000 * 8);
        assert!((16_000 * 13..16_000 * 13 + 4_000).contains(&cut), "{cut}");
    }
}
