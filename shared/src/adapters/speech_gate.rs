//! Silero voice activity detection (whisper.cpp's detector, with the weights `make model`
//! converts from the `silero-vad` PyPI package) in front of [`super::speech_pieces`]: a stretch
//! of at least [`MIN_NON_SPEECH_S`] in which the network hears no speech — silence, but also
//! a fan, traffic or a room's murmur, which the energy detector must keep — is silenced, so
//! the pieces leave it out and Whisper never decodes it. [`PAD_S`] of the original audio is
//! kept at each edge, so no word is clipped.
//!
//! The detector runs on blocks of [`BLOCK`] samples (whisper.cpp restarts its LSTM for each
//! call); a block boundary costs at most a few windows of warm-up, inside which nothing is
//! silenced unless the whole stretch is long enough.

use std::path::Path;

use whisper_rs::{WhisperVadContext, WhisperVadContextParams};

use super::audio::TARGET_RATE;

/// Samples per probability (whisper.cpp's `n_window` for the 16 kHz model).
const WINDOW: usize = 512;
/// 960 windows: about 30.7 s.
const BLOCK: usize = WINDOW * 960;
/// Below this probability a window holds no speech (Silero's own default negative threshold).
pub const NO_SPEECH_BELOW: f32 = 0.35;
/// Shorter stretches without speech are pauses: they stay.
pub const MIN_NON_SPEECH_S: f32 = 1.0;
/// Original audio kept at each edge of a silenced stretch.
pub const PAD_S: f32 = 0.2;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("the voice activity model {path} could not be loaded")]
    Load { path: String },
    #[error("voice activity detection failed: {0}")]
    Detect(String),
}

pub struct SpeechGate {
    vad: WhisperVadContext,
    pending: Vec<f32>,
    /// Seconds silenced so far, for the logs.
    silenced: usize,
}

impl SpeechGate {
    pub fn load(model: &Path, threads: usize) -> Result<Self, GateError> {
        let mut params = WhisperVadContextParams::new();
        params.set_n_threads(threads.max(1) as i32);
        let path = model.display().to_string();
        let vad = WhisperVadContext::new(&path, params).map_err(|_| GateError::Load { path })?;
        Ok(Self {
            vad,
            pending: Vec::with_capacity(BLOCK),
            silenced: 0,
        })
    }

    /// Takes decoded samples; returns the samples of each completed block, gated, in order.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<f32>, GateError> {
        self.pending.extend_from_slice(samples);
        let mut out = Vec::new();
        while self.pending.len() >= BLOCK {
            let mut block: Vec<f32> = self.pending.drain(..BLOCK).collect();
            self.gate(&mut block)?;
            out.extend(block);
        }
        Ok(out)
    }

    /// The rest, gated, once decoding has ended.
    pub fn finish(&mut self) -> Result<Vec<f32>, GateError> {
        let mut rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.gate(&mut rest)?;
        }
        tracing::debug!(
            silenced_s = self.silenced as f64 / f64::from(TARGET_RATE),
            "no speech heard"
        );
        Ok(rest)
    }

    fn gate(&mut self, block: &mut [f32]) -> Result<(), GateError> {
        self.vad
            .detect_speech(block)
            .map_err(|e| GateError::Detect(e.to_string()))?;
        self.silenced += silence_non_speech(block, self.vad.probabilities());
        Ok(())
    }
}

/// Silences each stretch of at least [`MIN_NON_SPEECH_S`] whose windows are all below
/// [`NO_SPEECH_BELOW`], keeping [`PAD_S`] at each edge; how many samples it silenced.
pub fn silence_non_speech(samples: &mut [f32], probabilities: &[f32]) -> usize {
    let rate = TARGET_RATE as f32;
    let min_windows = (MIN_NON_SPEECH_S * rate / WINDOW as f32).ceil() as usize;
    let pad = (PAD_S * rate) as usize;
    let mut silenced = 0;
    let mut silence = |from_window: usize, to_window: usize| {
        let start = from_window * WINDOW + pad;
        let end = (to_window * WINDOW).min(samples.len()).saturating_sub(pad);
        if start < end {
            samples[start..end].fill(0.0);
            silenced += end - start;
        }
    };
    let mut run_start = None;
    for (i, p) in probabilities.iter().enumerate() {
        match (*p < NO_SPEECH_BELOW, run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(start)) => {
                if i - start >= min_windows {
                    silence(start, i);
                }
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run_start.filter(|s| probabilities.len() - s >= min_windows) {
        silence(start, probabilities.len());
    }
    silenced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_long_stretches_without_speech_are_silenced_and_their_edges_kept() {
        let windows = 100;
        let mut samples = vec![1.0f32; windows * WINDOW];
        let mut probabilities = vec![0.9f32; windows];
        // A 0.5 s pause (16 windows) stays; a 2 s stretch (63 windows) goes, but its edges stay.
        probabilities[10..26].fill(0.1);
        probabilities[30..93].fill(0.2);
        let silenced = silence_non_speech(&mut samples, &probabilities);
        let pad = (PAD_S * TARGET_RATE as f32) as usize;
        let (start, end) = (30 * WINDOW + pad, 93 * WINDOW - pad);
        assert_eq!(silenced, end - start);
        assert!(samples[start..end].iter().all(|s| *s == 0.0));
        assert!(samples[..start].iter().all(|s| *s == 1.0));
        assert!(samples[end..].iter().all(|s| *s == 1.0));
    }

    #[test]
    fn a_stretch_reaching_the_end_counts_and_is_cut_at_the_last_sample() {
        let mut samples = vec![1.0f32; 40 * WINDOW + 100];
        let mut probabilities = vec![0.9f32; 41];
        probabilities[5..].fill(0.0);
        silence_non_speech(&mut samples, &probabilities);
        let pad = (PAD_S * TARGET_RATE as f32) as usize;
        assert_eq!(samples[5 * WINDOW + pad], 0.0);
        assert_eq!(samples[samples.len() - pad - 1], 0.0);
        assert_eq!(samples[samples.len() - pad], 1.0);
    }
}
