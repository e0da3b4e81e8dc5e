//! Live dictation's streaming policy: which words of the engine's successive guesses are
//! settled, and how much audio the next guess needs.
//!
//! The engine re-transcribes a sliding window of the newest audio each time more arrives.
//! A word is committed when two consecutive transcriptions of the window agree on it and on
//! everything before it (LocalAgreement-2, from Macháček, Dabre and Bojar, 2023, "Turning
//! Whisper into Real-Time Transcription System"), or when the speaker pauses after it.
//! Committed text is never taken back or sent twice; what follows it is the partial, which
//! the next guess may change. Once committed text ends a sentence the window is cut there, so
//! a long session decodes a bounded window and keeps a bounded amount of audio in memory.

use super::{Segment, Word};

/// How far before the last committed word a new guess's words are taken as repeats of it:
/// the engine's word times move by a few tens of milliseconds between guesses.
const TIME_TOLERANCE_S: f64 = 0.1;
/// The longest run of already-committed words a new guess may start with again: the engine
/// re-reads the last words before a cut, and small models sometimes say their whole prompt
/// (the committed text before the window) over again.
const MAX_REPEATED_WORDS: usize = 40;

/// The result of one guess: what was just committed, and the partial after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub committed: Vec<Word>,
    pub partial: Vec<Word>,
}

/// Where the window of audio the engine reads should now begin, in session seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowCut(pub f64);

/// When the window is cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowPolicy {
    /// A window longer than this is cut at the end of its last committed sentence.
    pub trim_after_s: f64,
    /// A window longer than this is cut at its last committed word, sentence or not.
    pub max_s: f64,
}

impl Default for WindowPolicy {
    fn default() -> Self {
        Self {
            trim_after_s: 8.0,
            max_s: 16.0,
        }
    }
}

/// The state of one live transcript.
#[derive(Debug, Default)]
pub struct LiveTranscript {
    committed: Vec<Word>,
    /// The uncommitted words of the latest guess.
    pending: Vec<Word>,
    /// Where the engine's window now begins, in session seconds.
    window_start_s: f64,
}

impl LiveTranscript {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the engine's latest guess (word times in session seconds) and commits the words
    /// it shares with the guess before it.
    pub fn update(&mut self, guess: Vec<Word>) -> Update {
        let guess = self.without_committed(guess);
        let agreed = self
            .pending
            .iter()
            .zip(&guess)
            .take_while(|(before, now)| same_word(&before.word, &now.word))
            .count();
        let mut guess = guess;
        let rest = guess.split_off(agreed);
        self.committed.extend(guess.iter().cloned());
        self.pending = rest.clone();
        Update {
            committed: guess,
            partial: rest,
        }
    }

    /// Takes a guess made up to a pause (or the end of the session): every word of it is
    /// committed, since no later audio can change it.
    pub fn settle(&mut self, guess: Vec<Word>) -> Update {
        let committed = self.without_committed(guess);
        self.committed.extend(committed.iter().cloned());
        self.pending.clear();
        Update {
            committed,
            partial: Vec::new(),
        }
    }

    /// Takes a guess of a window that has grown too long without agreement: the words ending
    /// by `until_s` are committed (the window must move on without losing them), the rest stay
    /// the partial.
    pub fn settle_until(&mut self, guess: Vec<Word>, until_s: f64) -> Update {
        let mut committed = self.without_committed(guess);
        let settled = committed.iter().take_while(|w| w.end <= until_s).count();
        let rest = committed.split_off(settled);
        self.committed.extend(committed.iter().cloned());
        self.pending = rest.clone();
        Update {
            committed,
            partial: rest,
        }
    }

    /// Records that the window now begins at `start_s` (it was cut there).
    pub fn window_moved(&mut self, start_s: f64) {
        self.window_start_s = start_s;
    }

    /// The words committed so far.
    pub fn committed(&self) -> &[Word] {
        &self.committed
    }

    /// The committed text, for the engine's prompt: the words just before `window_start_s`,
    /// at most `max_chars` of them (the context a fresh window would otherwise lack).
    pub fn context_before(&self, window_start_s: f64, max_chars: usize) -> String {
        let mut words: Vec<&str> = Vec::new();
        let mut chars = 0;
        for word in self
            .committed
            .iter()
            .rev()
            .filter(|w| w.end <= window_start_s + TIME_TOLERANCE_S)
        {
            chars += word.word.len() + 1;
            if chars > max_chars {
                break;
            }
            words.push(&word.word);
        }
        words.reverse();
        words.join(" ")
    }

    /// Where to cut the window that began at `window_start_s` and now ends at `window_end_s`,
    /// if it is due: after the last committed sentence end once it is long, after the last
    /// committed word once it is too long.
    pub fn window_cut(
        &self,
        policy: WindowPolicy,
        window_start_s: f64,
        window_end_s: f64,
    ) -> Option<WindowCut> {
        let length = window_end_s - window_start_s;
        if length <= policy.trim_after_s {
            return None;
        }
        let inside = self
            .committed
            .iter()
            .rev()
            .take_while(|w| w.end > window_start_s);
        let mut last_word = None;
        for word in inside {
            last_word.get_or_insert(word.end);
            if ends_sentence(&word.word) {
                return Some(WindowCut(word.end));
            }
        }
        match last_word {
            Some(end) if length > policy.max_s => Some(WindowCut(end)),
            // Nothing committed in a window past its limit: the engine hears no words in it
            // (noise, or silence not cut yet); keep only the newest `trim_after_s`.
            None if length > policy.max_s => Some(WindowCut(window_end_s - policy.trim_after_s)),
            _ => None,
        }
    }

    /// The committed words as transcript segments (see [`segments`]).
    pub fn segments(&self, pause_s: f64) -> Vec<Segment> {
        segments(&self.committed, pause_s)
    }

    /// The guess without the words already committed: those ending before the last committed
    /// word, and a repeat of the committed tail at its start (the engine re-reads audio it
    /// has transcribed before when the window was not cut right after a word).
    fn without_committed(&self, guess: Vec<Word>) -> Vec<Word> {
        let Some(last) = self.committed.last() else {
            return guess;
        };
        // Only a window that still holds the last committed word can hear it again; in one cut
        // after it, an early word time says nothing (the first word of a window is often
        // dated to its very start).
        let rereads = last.end > self.window_start_s;
        let mut guess: Vec<Word> = guess
            .into_iter()
            .filter(|w| !rereads || w.end > last.end - TIME_TOLERANCE_S)
            .collect();
        let longest = MAX_REPEATED_WORDS
            .min(guess.len())
            .min(self.committed.len());
        for n in (1..=longest).rev() {
            let tail = &self.committed[self.committed.len() - n..];
            if tail
                .iter()
                .zip(&guess[..n])
                .all(|(a, b)| same_word(&a.word, &b.word))
            {
                guess.drain(..n);
                break;
            }
        }
        guess
    }
}

/// `words` as transcript segments: one per sentence, or per stretch of words without a pause
/// longer than `pause_s` between them.
pub fn segments(words: &[Word], pause_s: f64) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut open = false;
    let mut last_end = f64::NEG_INFINITY;
    for word in words {
        match segments.last_mut() {
            Some(segment) if open && word.start - last_end <= pause_s => {
                segment.text.push(' ');
                segment.text.push_str(&word.word);
                segment.end = word.end;
            }
            _ => segments.push(Segment::new(word.start, word.end, word.word.clone())),
        }
        open = !ends_sentence(&word.word);
        last_end = word.end;
    }
    segments
}

/// Text for display: words joined by spaces.
pub fn join_words(words: &[Word]) -> String {
    words
        .iter()
        .map(|w| w.word.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Two guesses of a word agree when they differ only in case and punctuation.
fn same_word(a: &str, b: &str) -> bool {
    let plain = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    plain(a) == plain(b)
}

fn ends_sentence(word: &str) -> bool {
    word.ends_with(['.', '?', '!'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str, start: f64) -> Vec<Word> {
        text.split_whitespace()
            .enumerate()
            .map(|(i, w)| Word {
                word: w.to_owned(),
                start: start + i as f64 * 0.5,
                end: start + i as f64 * 0.5 + 0.4,
            })
            .collect()
    }

    fn text(words: &[Word]) -> String {
        join_words(words)
    }

    #[test]
    fn a_word_is_committed_once_two_guesses_agree_on_it() {
        let mut live = LiveTranscript::new();
        let first = live.update(words("the patient", 0.0));
        assert!(first.committed.is_empty());
        assert_eq!(text(&first.partial), "the patient");
        let second = live.update(words("The patient has", 0.0));
        assert_eq!(text(&second.committed), "The patient");
        assert_eq!(text(&second.partial), "has");
        let third = live.update(words("The patient has a cough", 0.0));
        assert_eq!(text(&third.committed), "has");
        assert_eq!(text(&third.partial), "a cough");
        assert_eq!(text(live.committed()), "The patient has");
    }

    #[test]
    fn a_changed_guess_commits_nothing_past_the_change() {
        let mut live = LiveTranscript::new();
        live.update(words("pain in the chess", 0.0));
        let update = live.update(words("pain in the chest today", 0.0));
        assert_eq!(text(&update.committed), "pain in the");
        assert_eq!(text(&update.partial), "chest today");
    }

    #[test]
    fn committed_words_are_never_sent_again() {
        let mut live = LiveTranscript::new();
        live.update(words("one two three", 0.0));
        live.update(words("one two three four", 0.0));
        // The window was cut after "two": the engine hears "three four five" from 1.0 s on,
        // and in a shifted window it may repeat a committed word with slightly moved times.
        let update = live.update(words("two three four five", 0.55));
        assert_eq!(text(&update.committed), "four");
        assert_eq!(text(&update.partial), "five");
        let update = live.update(words("three four five six", 1.0));
        assert_eq!(text(&update.committed), "five");
        assert_eq!(text(live.committed()), "one two three four five");
    }

    #[test]
    fn in_a_window_cut_after_the_committed_text_every_word_is_new() {
        let mut live = LiveTranscript::new();
        live.settle(words("rest.", 14.0));
        // The window was cut at the pause; its first word is dated to its very start, before
        // the committed word's (late) end.
        live.window_moved(14.2);
        let update = live.settle(words("We will", 14.2));
        assert_eq!(text(&update.committed), "We will");
    }

    #[test]
    fn a_pause_settles_the_whole_guess() {
        let mut live = LiveTranscript::new();
        live.update(words("Take two tablets", 0.0));
        let settled = live.settle(words("Take two tablets daily.", 0.0));
        assert_eq!(text(&settled.committed), "Take two tablets daily.");
        assert!(settled.partial.is_empty());
        let next = live.update(words("Take two tablets daily. Rest", 0.0));
        assert!(next.committed.is_empty());
        assert_eq!(text(&next.partial), "Rest");
    }

    #[test]
    fn a_window_too_long_to_agree_commits_all_but_its_newest_words() {
        let mut live = LiveTranscript::new();
        live.update(words("alpha beta gamma", 0.0));
        let update = live.settle_until(words("alfa beta gamma delta", 0.0), 1.0);
        assert_eq!(text(&update.committed), "alfa beta");
        assert_eq!(text(&update.partial), "gamma delta");
        let next = live.update(words("alfa beta gamma delta epsilon", 0.0));
        assert_eq!(text(&next.committed), "gamma delta");
    }

    #[test]
    fn the_window_is_cut_after_the_last_committed_sentence() {
        let mut live = LiveTranscript::new();
        let policy = WindowPolicy {
            trim_after_s: 2.0,
            max_s: 6.0,
        };
        live.settle(words("Good morning. I feel", 0.0));
        assert_eq!(live.window_cut(policy, 0.0, 1.5), None, "short enough");
        // "morning." ends at 0.9 s.
        assert_eq!(live.window_cut(policy, 0.0, 3.0), Some(WindowCut(0.9)));
        // No sentence ends after 0.9 s: nothing to cut until the window is too long.
        assert_eq!(live.window_cut(policy, 0.9, 4.0), None);
        assert_eq!(live.window_cut(policy, 0.9, 7.0), Some(WindowCut(1.9)));
    }

    #[test]
    fn a_window_without_words_keeps_only_its_newest_audio() {
        let live = LiveTranscript::new();
        let policy = WindowPolicy {
            trim_after_s: 2.0,
            max_s: 6.0,
        };
        assert_eq!(live.window_cut(policy, 0.0, 5.0), None);
        assert_eq!(live.window_cut(policy, 0.0, 7.0), Some(WindowCut(5.0)));
    }

    #[test]
    fn the_prompt_is_the_committed_text_before_the_window() {
        let mut live = LiveTranscript::new();
        live.settle(words("alpha beta gamma delta", 0.0));
        assert_eq!(live.context_before(0.95, 100), "alpha beta");
        assert_eq!(live.context_before(10.0, 12), "gamma delta");
    }

    #[test]
    fn segments_follow_sentences_and_pauses() {
        let mut live = LiveTranscript::new();
        live.settle(words("Good morning. How are", 0.0));
        live.settle(words("you", 10.0));
        let segments = live.segments(1.0);
        let texts: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["Good morning.", "How are", "you"]);
        assert_eq!(segments[0].start, 0.0);
        assert!((segments[1].end - 1.9).abs() < 1e-9);
    }
}
