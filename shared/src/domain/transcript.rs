//! Transcripts and the subtitle/text formats clients download them in.

use std::{fmt::Write, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StructuredNote;

/// A stretch of speech, with times in seconds from the start of the audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
    /// The tokens the engine decoded, with their times and confidence, where the engine
    /// reports them (the local engine does; the cloud one does not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_scores: Vec<TokenScore>,
}

/// One decoded token: its text, when it was spoken and how sure the model was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenScore {
    pub text: String,
    pub start: f64,
    pub end: f64,
    /// Natural logarithm of the probability the model gave the token.
    pub logprob: f64,
}

/// A word with its time span: its tokens joined.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
}

impl Segment {
    pub fn new(start: f64, end: f64, text: impl Into<String>) -> Self {
        Self {
            start,
            end,
            text: text.into(),
            token_scores: Vec::new(),
        }
    }

    /// The words of the segment, from its tokens: a token that begins with a space begins a
    /// word (Whisper's byte-level BPE marks word starts so); punctuation stays with its word.
    pub fn words(&self) -> Vec<Word> {
        let mut words: Vec<Word> = Vec::new();
        for token in &self.token_scores {
            let starts_word = token.text.starts_with(' ') || words.is_empty();
            let piece = token.text.trim();
            if piece.is_empty() {
                continue;
            }
            match words.last_mut() {
                Some(word) if !starts_word => {
                    word.word.push_str(piece);
                    word.end = token.end;
                }
                _ => words.push(Word {
                    word: piece.to_owned(),
                    start: token.start,
                    end: token.end,
                }),
            }
        }
        words
    }

    /// The mean log-probability of the segment's tokens, if the engine reported them.
    pub fn avg_logprob(&self) -> Option<f64> {
        (!self.token_scores.is_empty()).then(|| {
            self.token_scores.iter().map(|t| t.logprob).sum::<f64>()
                / self.token_scores.len() as f64
        })
    }
}

/// What an engine produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    pub language: Option<String>,
    /// How sure the engine was of `language` (0–1), when it detected the language itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_probability: Option<f64>,
    pub duration_s: Option<f64>,
    /// The note's sections, once the transcript was structured (spoken headings, a draft, or
    /// the clinician's edit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<StructuredNote>,
    /// Who made this version, and when; `None` for the engine's own (version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    /// The versions this one replaced, oldest first: nothing a clinician corrected is lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<TranscriptVersion>,
}

/// Who made a version of a transcript, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// 1 is the engine's; every edit adds one.
    pub version: u32,
    /// The subject who saved it (`None`: the engine).
    pub author: Option<String>,
    pub at: DateTime<Utc>,
}

/// A version a later edit replaced, kept whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptVersion {
    #[serde(flatten)]
    pub revision: Revision,
    pub text: String,
    pub segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<StructuredNote>,
}

/// A clinician's correction: the new text, and optionally new segments and sections.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptEdit {
    pub text: String,
    /// `None` keeps the segments' times with the old words: the segments are dropped only
    /// when the caller sends new ones or the text no longer matches them.
    pub segments: Option<Vec<Segment>>,
    /// `Some(None)` removes the structure, `None` keeps it.
    pub note: Option<Option<StructuredNote>>,
}

impl Transcript {
    /// This version's number (1 for the engine's).
    pub fn version(&self) -> u32 {
        self.revision.as_ref().map_or(1, |r| r.version)
    }

    /// Applies an edit as a new version by `author`: the current one moves to `earlier`.
    /// `completed_at` dates the engine's version.
    pub fn revise(
        &mut self,
        edit: TranscriptEdit,
        author: &str,
        at: DateTime<Utc>,
        completed_at: DateTime<Utc>,
    ) {
        let current = TranscriptVersion {
            revision: self.current_revision(completed_at),
            text: std::mem::take(&mut self.text),
            segments: self.segments.clone(),
            note: self.note.clone(),
        };
        let version = current.revision.version + 1;
        self.earlier.push(current);
        self.text = edit.text;
        if let Some(segments) = edit.segments {
            self.segments = segments;
        }
        if let Some(note) = edit.note {
            self.note = note;
        }
        self.revision = Some(Revision {
            version,
            author: Some(author.to_owned()),
            at,
        });
    }

    fn current_revision(&self, completed_at: DateTime<Utc>) -> Revision {
        self.revision.clone().unwrap_or(Revision {
            version: 1,
            author: None,
            at: completed_at,
        })
    }

    /// Every version, oldest first, the current one last.
    pub fn versions(&self, completed_at: DateTime<Utc>) -> Vec<TranscriptVersion> {
        let mut all = self.earlier.clone();
        all.push(TranscriptVersion {
            revision: self.current_revision(completed_at),
            text: self.text.clone(),
            segments: self.segments.clone(),
            note: self.note.clone(),
        });
        all
    }
}

/// The segments for `new_text` after an edit of `old_text`, keeping every segment's times:
/// the words that changed replace the words of the segments they were in, and segments the
/// edit did not touch keep their text and tokens. `None` when the segments do not spell the
/// old text word for word (then the times cannot be kept honestly).
pub fn carry_segments(
    segments: &[Segment],
    old_text: &str,
    new_text: &str,
) -> Option<Vec<Segment>> {
    let owner: Vec<usize> = segments
        .iter()
        .enumerate()
        .flat_map(|(n, s)| std::iter::repeat_n(n, s.text.split_whitespace().count()))
        .collect();
    let seg_words: Vec<&str> = segments
        .iter()
        .flat_map(|s| s.text.split_whitespace())
        .collect();
    let old: Vec<&str> = old_text.split_whitespace().collect();
    if old != seg_words {
        return None;
    }
    let new: Vec<&str> = new_text.split_whitespace().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    if prefix == old.len() && prefix == new.len() {
        return Some(segments.to_vec());
    }
    // The segments the changed words were in; an insertion between words joins the segment
    // of the word before it (or the first segment).
    let (first, last) = if prefix < old.len() - suffix {
        (owner[prefix], owner[old.len() - suffix - 1])
    } else {
        let at = owner.get(prefix.saturating_sub(1)).copied().unwrap_or(0);
        (at, at)
    };
    let start_word = owner.iter().position(|&o| o == first).unwrap_or(prefix);
    let end_word = owner
        .iter()
        .rposition(|&o| o == last)
        .map_or(prefix, |p| p + 1);
    let replaced_end = new.len() - (old.len() - end_word);
    let text = new[start_word..replaced_end].join(" ");
    let mut out: Vec<Segment> = segments[..first].to_vec();
    out.push(Segment::new(
        segments[first].start,
        segments[last].end,
        format!(" {text}"),
    ));
    out.extend_from_slice(&segments[last + 1..]);
    Some(out)
}

/// Download formats for `GET /v1/transcriptions/{id}/transcript`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseFormat {
    Json,
    Txt,
    Srt,
    Vtt,
}

impl FromStr for ResponseFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "txt" | "text" => Ok(Self::Txt),
            "srt" => Ok(Self::Srt),
            "vtt" => Ok(Self::Vtt),
            _ => Err("format must be one of json, txt, srt, vtt".into()),
        }
    }
}

impl ResponseFormat {
    pub const ALL: [ResponseFormat; 4] = [Self::Json, Self::Txt, Self::Srt, Self::Vtt];

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Txt => "text/plain; charset=utf-8",
            Self::Srt => "application/x-subrip; charset=utf-8",
            Self::Vtt => "text/vtt; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Txt => "txt",
            Self::Srt => "srt",
            Self::Vtt => "vtt",
        }
    }
}

/// Renders a transcript as a download body. Subtitle formats need segments; when an engine
/// returned none, the whole text becomes one cue spanning the audio.
pub fn render_transcript(transcript: &Transcript, format: ResponseFormat) -> String {
    match format {
        ResponseFormat::Json => serde_json::json!({
            "text": transcript.text,
            "language": transcript.language,
            "duration_s": transcript.duration_s,
            "segments": transcript.segments,
        })
        .to_string(),
        ResponseFormat::Txt => {
            let mut out = transcript.text.trim().to_owned();
            out.push('\n');
            out
        }
        ResponseFormat::Srt => {
            let mut out = String::new();
            for (i, seg) in cues(transcript).iter().enumerate() {
                let _ = write!(
                    out,
                    "{}\n{} --> {}\n{}\n\n",
                    i + 1,
                    timestamp(seg.start, ','),
                    timestamp(seg.end, ','),
                    seg.text.trim()
                );
            }
            out
        }
        ResponseFormat::Vtt => {
            let mut out = String::from("WEBVTT\n\n");
            for seg in cues(transcript) {
                let _ = write!(
                    out,
                    "{} --> {}\n{}\n\n",
                    timestamp(seg.start, '.'),
                    timestamp(seg.end, '.'),
                    // A blank line or "-->" inside a cue would end it early.
                    seg.text.trim().replace("-->", "->").replace("\n\n", "\n")
                );
            }
            out
        }
    }
}

fn cues(transcript: &Transcript) -> Vec<Segment> {
    if !transcript.segments.is_empty() {
        return transcript.segments.clone();
    }
    if transcript.text.trim().is_empty() {
        return Vec::new();
    }
    vec![Segment::new(
        0.0,
        transcript.duration_s.unwrap_or(0.0),
        transcript.text.clone(),
    )]
}

fn timestamp(seconds: f64, decimal_mark: char) -> String {
    let total_ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, rem) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    format!("{h:02}:{m:02}:{s:02}{decimal_mark}{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Transcript {
        Transcript {
            text: "Hello there. Take two tablets.".into(),
            segments: vec![
                Segment::new(0.0, 1.5, " Hello there."),
                Segment::new(1.5, 3661.25, " Take two tablets."),
            ],
            language: Some("en".into()),
            language_probability: None,
            duration_s: Some(3661.3),
            ..Default::default()
        }
    }

    #[test]
    fn words_join_their_tokens_and_keep_their_times() {
        let token = |text: &str, start: f64, end: f64, logprob: f64| TokenScore {
            text: text.into(),
            start,
            end,
            logprob,
        };
        let mut segment = Segment::new(0.0, 2.0, " Take ibuprofen.");
        segment.token_scores = vec![
            token(" Take", 0.0, 0.4, -0.1),
            token(" ib", 0.5, 0.7, -0.9),
            token("up", 0.7, 0.8, -0.5),
            token("rofen", 0.8, 1.1, -0.3),
            token(".", 1.1, 1.2, -0.2),
        ];
        let words = segment.words();
        let spans: Vec<(&str, f64, f64)> = words
            .iter()
            .map(|w| (w.word.as_str(), w.start, w.end))
            .collect();
        assert_eq!(spans, [("Take", 0.0, 0.4), ("ibuprofen.", 0.5, 1.2)]);
        assert!((segment.avg_logprob().unwrap() - (-0.4)).abs() < 1e-9);
        assert_eq!(Segment::new(0.0, 1.0, "x").avg_logprob(), None);
        assert!(Segment::new(0.0, 1.0, "x").words().is_empty());
    }

    #[test]
    fn srt_numbers_cues_and_uses_commas() {
        let srt = render_transcript(&sample(), ResponseFormat::Srt);
        assert_eq!(
            srt,
            "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n00:00:01,500 --> 01:01:01,250\nTake two tablets.\n\n"
        );
    }

    #[test]
    fn vtt_has_header_and_dots() {
        let vtt = render_transcript(&sample(), ResponseFormat::Vtt);
        assert!(vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n"));
    }

    #[test]
    fn text_without_segments_becomes_one_cue() {
        let t = Transcript {
            text: "Just text.".into(),
            duration_s: Some(2.0),
            ..Default::default()
        };
        assert_eq!(
            render_transcript(&t, ResponseFormat::Srt),
            "1\n00:00:00,000 --> 00:00:02,000\nJust text.\n\n"
        );
        assert_eq!(render_transcript(&t, ResponseFormat::Txt), "Just text.\n");
    }

    #[test]
    fn json_is_valid_and_complete() {
        let v: serde_json::Value =
            serde_json::from_str(&render_transcript(&sample(), ResponseFormat::Json)).unwrap();
        assert_eq!(v["segments"].as_array().unwrap().len(), 2);
        assert_eq!(v["language"], "en");
    }

    #[test]
    fn an_edited_word_keeps_every_segments_times() {
        let segments = vec![
            Segment::new(0.0, 2.0, " The patient has a headache."),
            Segment::new(2.0, 4.5, " She takes ibuprofin daily."),
            Segment::new(4.5, 6.0, " Review in a week."),
        ];
        let old = "The patient has a headache. She takes ibuprofin daily. Review in a week.";
        let new = "The patient has a headache. She takes ibuprofen daily. Review in a week.";
        let carried = carry_segments(&segments, old, new).unwrap();
        assert_eq!(carried.len(), 3);
        assert_eq!(carried[0], segments[0]);
        assert_eq!(carried[1].text, " She takes ibuprofen daily.");
        assert_eq!((carried[1].start, carried[1].end), (2.0, 4.5));
        assert_eq!(carried[2], segments[2]);
        // A change across a segment boundary merges those two segments' spans.
        let across = "The patient has a migraine; she takes ibuprofen daily. Review in a week.";
        let merged = carry_segments(&segments, old, across).unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[0].start, merged[0].end), (0.0, 4.5));
        // Segments that do not spell the text: no times are invented.
        assert!(carry_segments(&segments, "Something else entirely.", new).is_none());
    }
}
