//! [`LiveEngine`] on whisper.cpp: the model the batch engine loaded, with a decoder state of
//! its own per live session.

use std::sync::Arc;

use whisper_rs::{SamplingStrategy, WhisperContext, WhisperState};

use super::whisper::{WhisperTranscriber, is_annotation, quiet_params, text_tokens};
use crate::{
    domain::{Segment, Word},
    ports::{EngineError, LiveDecoder, LiveEngine},
};

/// The shortest encoder context a window is given: tiny models repeat themselves in a context
/// cut close to short audio (see the batch engine's fitted context).
const MIN_CONTEXT_SECS: f64 = 10.0;
const CONTEXT_MARGIN_SECS: f64 = 2.0;
const FRAMES_PER_SEC: f64 = 50.0;
/// A small model that loops starts the window's text over: a run of this many words equal
/// to the guess's first marks where.
const LOOP_WORDS: usize = 3;
/// Fast speech is about 3 words, 4 tokens, a second.
const TOKENS_PER_SECOND: f64 = 6.0;
/// Whisper reads at most 30 s at once.
const MAX_FRAMES: i32 = 1500;

impl LiveEngine for WhisperTranscriber {
    fn describe(&self) -> String {
        format!("whisper.cpp {}", self.label)
    }

    fn open(&self, language: Option<&str>) -> Result<Box<dyn LiveDecoder>, EngineError> {
        let state = self.context.create_state().map_err(|e| {
            EngineError::Transient(format!("the local engine could not start: {e}"))
        })?;
        let language = language
            .map(str::to_owned)
            .or_else(|| self.config.language.clone())
            .unwrap_or_else(|| if self.multilingual { "auto" } else { "en" }.to_owned());
        Ok(Box::new(WhisperLiveDecoder {
            context: self.context.clone(),
            state,
            threads: self.config.threads.max(1),
            language,
        }))
    }
}

struct WhisperLiveDecoder {
    context: Arc<WhisperContext>,
    state: WhisperState,
    threads: usize,
    language: String,
}

impl LiveDecoder for WhisperLiveDecoder {
    fn decode(&mut self, samples: &[f32], prompt: &str) -> Result<Vec<Word>, EngineError> {
        let seconds = samples.len() as f64 / 16_000.0;
        let mut params = quiet_params(SamplingStrategy::Greedy { best_of: 1 }, self.threads);
        // No temperature fallback: a live decode must take a predictable time; the next
        // window gets another chance.
        params.set_temperature(0.0);
        params.set_temperature_inc(0.0);
        params.set_language(Some(&self.language));
        if !prompt.is_empty() {
            params.set_initial_prompt(prompt);
        }
        // Dictation is at most a few tokens a second: a window that decodes to far more is the
        // model repeating itself, which costs time and is never right.
        params.set_max_tokens((seconds * TOKENS_PER_SECOND) as i32 + 8);
        let context_s = (seconds + CONTEXT_MARGIN_SECS).max(MIN_CONTEXT_SECS);
        params.set_audio_ctx(((context_s * FRAMES_PER_SEC).ceil() as i32).min(MAX_FRAMES));
        self.state
            .full(params, samples)
            .map_err(|e| EngineError::Transient(format!("the local engine failed: {e}")))?;
        Ok(self.words(seconds))
    }
}

impl WhisperLiveDecoder {
    /// The decoded words, from the tokens' own times (whisper.cpp's segment times are coarser).
    fn words(&self, seconds: f64) -> Vec<Word> {
        let last_text_token = self.context.token_eot();
        let at = |centiseconds: i64| (centiseconds.max(0) as f64 / 100.0).min(seconds);
        let mut words = Vec::new();
        for segment in self.state.as_iter() {
            let text = segment.to_str_lossy().unwrap_or_default();
            if is_annotation(&text) {
                continue;
            }
            let token_scores = text_tokens(&segment, last_text_token, at);
            let segment = Segment {
                token_scores,
                ..Segment::new(0.0, 0.0, text.trim())
            };
            words.extend(segment.words());
        }
        without_loop(words)
    }
}

/// The words before the model started the window's text over, if it did.
fn without_loop(mut words: Vec<Word>) -> Vec<Word> {
    let plain = |w: &Word| {
        w.word
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let restart = (1..words.len().saturating_sub(LOOP_WORDS - 1))
        .find(|&at| (0..LOOP_WORDS).all(|i| plain(&words[at + i]) == plain(&words[i])));
    if let Some(at) = restart {
        words.truncate(at);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Word> {
        text.split_whitespace()
            .map(|w| Word {
                word: w.to_owned(),
                start: 0.0,
                end: 0.0,
            })
            .collect()
    }

    #[test]
    fn a_window_read_twice_over_is_cut_where_it_starts_again() {
        let looped = without_loop(words("We will rest. We will rest. We will"));
        assert_eq!(looped.len(), 3);
        let plain = without_loop(words("the patient and the patient"));
        assert_eq!(plain.len(), 5, "two words repeated are speech");
    }
}
