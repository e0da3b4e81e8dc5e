//! Cuts a stream of 16 kHz samples into the pieces Whisper decodes: each short enough for one
//! encoder pass with its context fitted to its length, cut where the speaker pauses, and —
//! with voice activity detection on — with long silences left out, so silence is never
//! decoded. Each piece knows where it starts in the recording, so timestamps stay exact.
//!
//! The detector is energy-based: a 20 ms frame is silent below [`SILENCE_DBFS`]. It is
//! deliberately conservative — only a run of at least [`MIN_SILENCE_S`] of such frames is
//! removed, with [`KEEP_AROUND_S`] kept on each side — so quiet speech is never lost; a noisy
//! room simply removes nothing.

use super::audio::TARGET_RATE;

/// Frames quieter than this are silence (about the level of a quiet room through a laptop mic).
pub const SILENCE_DBFS: f32 = -50.0;
/// Silences shorter than this are pauses inside speech: they stay in the piece.
pub const MIN_SILENCE_S: f32 = 1.0;
/// Silence kept before and after speech, so word edges are not clipped.
pub const KEEP_AROUND_S: f32 = 0.2;
const FRAME: usize = TARGET_RATE as usize / 50;
/// How far past the target length a cut may move to find a pause.
const SEARCH_S: usize = 5;

/// A stretch of the recording to decode.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// Where it starts in the recording, in seconds.
    pub start_s: f64,
    pub samples: Vec<f32>,
}

impl Piece {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(TARGET_RATE)
    }
}

pub struct SpeechPieces {
    target: usize,
    detect_silence: bool,
    buffer: Vec<f32>,
    /// Position of `buffer[0]` in the recording, in samples.
    buffer_start: u64,
}

impl SpeechPieces {
    /// Pieces of about `target_s` seconds (up to [`SEARCH_S`] more, to reach a pause).
    pub fn new(target_s: u64, detect_silence: bool) -> Self {
        Self {
            target: target_s as usize * TARGET_RATE as usize,
            detect_silence,
            buffer: Vec::new(),
            buffer_start: 0,
        }
    }

    /// Adds decoded samples; returns the pieces now complete.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Piece> {
        self.buffer.extend_from_slice(samples);
        let mut out = Vec::new();
        loop {
            if self.detect_silence && self.remove_silence(&mut out) {
                continue;
            }
            let search = SEARCH_S * TARGET_RATE as usize;
            if self.buffer.len() < self.target + search {
                return out;
            }
            let cut = quietest_cut(&self.buffer, self.target, search);
            self.emit(cut, cut, &mut out);
        }
    }

    /// The rest of the recording, once decoding has ended.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = self.push(&[]);
        if self.detect_silence && is_silent(&self.buffer) {
            self.buffer.clear();
        } else if !self.buffer.is_empty() {
            let end = self.buffer.len();
            self.emit(end, end, &mut out);
        }
        out
    }

    /// Trims silence at the start of the buffer to [`KEEP_AROUND_S`], or ends the current
    /// piece at the first long silence and drops it. Returns whether anything was removed.
    fn remove_silence(&mut self, out: &mut Vec<Piece>) -> bool {
        let keep = (KEEP_AROUND_S * TARGET_RATE as f32) as usize;
        let leading = self
            .buffer
            .chunks_exact(FRAME)
            .take_while(|f| frame_is_silent(f))
            .count()
            * FRAME;
        if leading > keep {
            self.emit(0, leading - keep, out);
            return true;
        }
        let min_run = (MIN_SILENCE_S * TARGET_RATE as f32) as usize;
        let Some((start, end)) = first_silent_run(&self.buffer, min_run) else {
            return false;
        };
        // A run still growing at the end of the buffer ends here for now; the next call trims
        // the rest as leading silence.
        let piece_end = start + keep;
        let resume = end.saturating_sub(keep).max(piece_end);
        self.emit(piece_end, resume, out);
        true
    }

    /// Emits `buffer[..end]` as a piece (unless empty) and forgets `buffer[..resume]`.
    fn emit(&mut self, end: usize, resume: usize, out: &mut Vec<Piece>) {
        if end > 0 {
            out.push(Piece {
                start_s: self.buffer_start as f64 / f64::from(TARGET_RATE),
                samples: self.buffer[..end].to_vec(),
            });
        }
        self.buffer.drain(..resume);
        self.buffer_start += resume as u64;
    }
}

fn frame_is_silent(frame: &[f32]) -> bool {
    let mean_square = frame.iter().map(|s| s * s).sum::<f32>() / frame.len().max(1) as f32;
    10.0 * mean_square.max(f32::MIN_POSITIVE).log10() < SILENCE_DBFS
}

fn is_silent(samples: &[f32]) -> bool {
    samples.chunks(FRAME).all(frame_is_silent)
}

/// The first run of silent frames at least `min_len` samples long, as a sample range; a run
/// reaching the end of `samples` counts once it is long enough.
fn first_silent_run(samples: &[f32], min_len: usize) -> Option<(usize, usize)> {
    let mut run_start = None;
    for (i, frame) in samples.chunks_exact(FRAME).enumerate() {
        let at = i * FRAME;
        match (frame_is_silent(frame), run_start) {
            (true, None) => run_start = Some(at),
            (false, Some(start)) if at - start >= min_len => return Some((start, at)),
            (false, Some(_)) => run_start = None,
            _ => {}
        }
    }
    let end = samples.len() / FRAME * FRAME;
    run_start
        .filter(|start| end - start >= min_len)
        .map(|start| (start, end))
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
    use super::*;

    const RATE: usize = TARGET_RATE as usize;

    fn tone(seconds: f32) -> Vec<f32> {
        (0..(seconds * RATE as f32) as usize)
            .map(|i| 0.3 * (i as f32 * 0.05).sin())
            .collect()
    }

    fn all_pieces(samples: &[f32], target_s: u64, vad: bool, feed: usize) -> Vec<Piece> {
        let mut pieces = SpeechPieces::new(target_s, vad);
        let mut out = Vec::new();
        for chunk in samples.chunks(feed) {
            out.extend(pieces.push(chunk));
        }
        out.extend(pieces.finish());
        out
    }

    #[test]
    fn cuts_land_in_pauses_and_pieces_stay_short() {
        // 40 s of "speech" with a 0.5 s pause at 17 s: the first cut lands in the pause.
        let mut audio = tone(17.0);
        audio.extend(vec![0.0; RATE / 2]);
        audio.extend(tone(22.5));
        let pieces = all_pieces(&audio, 15, false, 4_000);
        let first = &pieces[0];
        assert!(
            (17.0..17.5).contains(&first.duration_s()),
            "{}",
            first.duration_s()
        );
        assert!(pieces.iter().all(|p| p.duration_s() <= 20.0));
        // Nothing lost or repeated without detection: the pieces tile the recording.
        let total: usize = pieces.iter().map(|p| p.samples.len()).sum();
        assert_eq!(total, audio.len());
        for pair in pieces.windows(2) {
            let end = pair[0].start_s + pair[0].duration_s();
            assert!((pair[1].start_s - end).abs() < 1e-9);
        }
    }

    #[test]
    fn long_silences_are_left_out_and_timestamps_kept() {
        // speech 3 s, silence 4 s, speech 2 s, silence 0.5 s (kept), speech 1 s, silence 3 s.
        let mut audio = tone(3.0);
        audio.extend(vec![0.0; 4 * RATE]);
        audio.extend(tone(2.0));
        audio.extend(vec![0.0; RATE / 2]);
        audio.extend(tone(1.0));
        audio.extend(vec![0.0; 3 * RATE]);
        for feed in [777, 1_000, 16_000, audio.len()] {
            let pieces = all_pieces(&audio, 15, true, feed);
            assert_eq!(
                pieces.len(),
                2,
                "feed {feed}: {:?}",
                pieces
                    .iter()
                    .map(|p| (p.start_s, p.duration_s()))
                    .collect::<Vec<_>>()
            );
            assert!((pieces[0].duration_s() - 3.2).abs() < 0.03);
            assert_eq!(pieces[0].start_s, 0.0);
            // The second piece starts 0.2 s before the speech at 7 s and keeps the short pause.
            assert!(
                (pieces[1].start_s - 6.8).abs() < 0.03,
                "{}",
                pieces[1].start_s
            );
            assert!(
                (pieces[1].duration_s() - 3.9).abs() < 0.05,
                "{}",
                pieces[1].duration_s()
            );
        }
    }

    #[test]
    fn quiet_speech_is_kept_and_silence_alone_gives_nothing() {
        // Speech at -40 dBFS is far above the silence threshold.
        let quiet: Vec<f32> = tone(3.0).iter().map(|s| s * 0.03).collect();
        let pieces = all_pieces(&quiet, 15, true, 8_000);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].samples.len(), quiet.len());
        let pieces = all_pieces(&vec![0.0; 10 * RATE], 15, true, 8_000);
        assert!(pieces.is_empty());
        // Without detection, silence is decoded like anything else.
        let pieces = all_pieces(&vec![0.0; 10 * RATE], 15, false, 8_000);
        assert_eq!(pieces.len(), 1);
    }
}
