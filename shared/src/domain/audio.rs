//! Recognising audio by its bytes, not by the name a client gave it.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Containers MMT accepts: what browsers, phones and dictation devices record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    Wav,
    Mp3,
    Flac,
    Ogg,
    Webm,
    Mp4,
    Aac,
}

impl AudioFormat {
    /// How many leading bytes [`sniff_audio_format`] wants to see.
    pub const SNIFF_LEN: usize = 12;

    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Mp3 => "mp3",
            Self::Flac => "flac",
            Self::Ogg => "ogg",
            Self::Webm => "webm",
            Self::Mp4 => "m4a",
            Self::Aac => "aac",
        }
    }

    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Wav => "audio/wav",
            Self::Mp3 => "audio/mpeg",
            Self::Flac => "audio/flac",
            Self::Ogg => "audio/ogg",
            Self::Webm => "audio/webm",
            Self::Mp4 => "audio/mp4",
            Self::Aac => "audio/aac",
        }
    }
}

impl AudioFormat {
    /// The format a client declares with a MIME type (parameters such as `codecs=` ignored),
    /// before any bytes arrive. The bytes are sniffed again once they do.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
        Some(match essence.as_str() {
            "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Self::Wav,
            "audio/mpeg" | "audio/mp3" => Self::Mp3,
            "audio/flac" | "audio/x-flac" => Self::Flac,
            "audio/ogg" | "audio/opus" | "application/ogg" => Self::Ogg,
            "audio/webm" | "video/webm" => Self::Webm,
            "audio/mp4" | "audio/x-m4a" | "audio/m4a" | "video/mp4" => Self::Mp4,
            "audio/aac" | "audio/x-aac" => Self::Aac,
            _ => return None,
        })
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for AudioFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "wav" => Self::Wav,
            "mp3" => Self::Mp3,
            "flac" => Self::Flac,
            "ogg" => Self::Ogg,
            "webm" => Self::Webm,
            "m4a" | "mp4" => Self::Mp4,
            "aac" => Self::Aac,
            other => return Err(format!("unknown audio format {other:?}")),
        })
    }
}

/// Names the container from its first bytes, or `None` when they are not audio we accept.
pub fn sniff_audio_format(head: &[u8]) -> Option<AudioFormat> {
    if head.len() < AudioFormat::SNIFF_LEN {
        return None;
    }
    let at = |offset: usize, magic: &[u8]| head[offset..].starts_with(magic);
    if (at(0, b"RIFF") || at(0, b"RF64")) && at(8, b"WAVE") {
        Some(AudioFormat::Wav)
    } else if at(0, b"fLaC") {
        Some(AudioFormat::Flac)
    } else if at(0, b"OggS") {
        Some(AudioFormat::Ogg)
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(AudioFormat::Webm)
    } else if at(4, b"ftyp") {
        Some(AudioFormat::Mp4)
    } else if at(0, b"ID3") {
        Some(AudioFormat::Mp3)
    } else if head[0] == 0xFF && head[1] & 0xF6 == 0xF0 {
        // ADTS: 12-bit sync, then layer bits that are always 00.
        Some(AudioFormat::Aac)
    } else if head[0] == 0xFF
        && head[1] & 0xE0 == 0xE0
        && head[1] & 0x06 != 0
        && head[2] & 0xF0 != 0xF0
    {
        // MPEG audio frame: 11-bit sync, a real layer, and not the "bad" bitrate index.
        Some(AudioFormat::Mp3)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded(prefix: &[u8]) -> Vec<u8> {
        let mut v = prefix.to_vec();
        v.resize(16, 0);
        v
    }

    #[test]
    fn recognises_common_containers() {
        let cases: &[(&[u8], AudioFormat)] = &[
            (b"RIFF\x24\x00\x00\x00WAVEfmt ", AudioFormat::Wav),
            (b"fLaC\x00\x00\x00\x22", AudioFormat::Flac),
            (b"OggS\x00\x02", AudioFormat::Ogg),
            (&[0x1A, 0x45, 0xDF, 0xA3, 0x9F], AudioFormat::Webm),
            (b"\x00\x00\x00\x20ftypM4A ", AudioFormat::Mp4),
            (b"ID3\x04\x00", AudioFormat::Mp3),
            (&[0xFF, 0xFB, 0x90, 0x64], AudioFormat::Mp3),
            (&[0xFF, 0xF1, 0x50, 0x80], AudioFormat::Aac),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff_audio_format(&padded(bytes)), Some(*want), "{bytes:?}");
        }
    }

    #[test]
    fn declared_content_types_map_to_formats() {
        assert_eq!(
            AudioFormat::from_content_type("audio/webm;codecs=opus"),
            Some(AudioFormat::Webm)
        );
        assert_eq!(
            AudioFormat::from_content_type("Audio/X-WAV"),
            Some(AudioFormat::Wav)
        );
        assert_eq!(AudioFormat::from_content_type("text/plain"), None);
        assert_eq!(AudioFormat::from_content_type(""), None);
    }

    #[test]
    fn rejects_what_is_not_audio() {
        for bytes in [
            &b"%PDF-1.7\n%"[..],
            b"<!DOCTYPE html>",
            b"\x89PNG\r\n\x1a\n\0\0\0\0",
            b"MZ\x90\0\x03\0\0\0\x04\0\0\0",
        ] {
            assert_eq!(sniff_audio_format(&padded(bytes)), None);
        }
        assert_eq!(sniff_audio_format(b"RIFF"), None, "too short to judge");
        assert_eq!(
            sniff_audio_format(b"RIFF\0\0\0\0AVI LIST"),
            None,
            "RIFF but not WAVE"
        );
    }
}
