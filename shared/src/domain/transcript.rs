//! Transcripts and the subtitle/text formats clients download them in.

use std::{fmt::Write, str::FromStr};

use serde::{Deserialize, Serialize};

/// A stretch of speech, with times in seconds from the start of the audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// What an engine produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    pub language: Option<String>,
    pub duration_s: Option<f64>,
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
    vec![Segment {
        start: 0.0,
        end: transcript.duration_s.unwrap_or(0.0),
        text: transcript.text.clone(),
    }]
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
                Segment {
                    start: 0.0,
                    end: 1.5,
                    text: " Hello there.".into(),
                },
                Segment {
                    start: 1.5,
                    end: 3661.25,
                    text: " Take two tablets.".into(),
                },
            ],
            language: Some("en".into()),
            duration_s: Some(3661.3),
        }
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
}
