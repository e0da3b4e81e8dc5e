//! Any recording a browser, phone or dictation device makes → 16 kHz mono f32, in chunks.
//!
//! Containers and codecs come from symphonia (WAV/PCM of every width and float, MP3, FLAC,
//! AAC in MP4/M4A, Ogg Vorbis; Ogg and WebM/Matroska demuxing). symphonia has no Opus decoder,
//! so Opus packets — what browsers record, in Ogg or WebM — go to libopus. Channels are mixed
//! down and the result resampled to 16 kHz as it streams: the caller receives bounded chunks
//! and never has to hold the whole recording.

use std::{fs::File, io::ErrorKind};

use rubato::{FftFixedIn, Resampler};
use symphonia::core::{
    audio::SampleBuffer,
    codecs::{CODEC_TYPE_NULL, CODEC_TYPE_OPUS, CodecParameters, DecoderOptions},
    errors::Error as SymphoniaError,
    formats::{FormatOptions, FormatReader},
    io::MediaSourceStream,
    meta::MetadataOptions,
    probe::Hint,
};

/// Whisper's sample rate.
pub const TARGET_RATE: u32 = 16_000;
/// Packets that fail to decode are skipped; this many in a row means the file is broken.
const MAX_CONSECUTIVE_BAD_PACKETS: usize = 50;
/// Headers claiming more channels are refused: no recorder MMT serves makes them, and each
/// channel multiplies what one packet decodes to.
pub const MAX_CHANNELS: usize = 32;
/// No recording decodes to more than this, whatever its size.
pub const MAX_DECODED_SECONDS: u64 = 6 * 3600;
/// Nor to more than a minute plus a second for every this many bytes: 1.6 kbit/s, well under
/// the leanest speech codec MMT reads (Opus at 6 kbit/s). A file over it is a decompression
/// bomb (hours of FLAC "silence" in a few kilobytes), not a recording.
pub const MIN_BYTES_PER_DECODED_SECOND: u64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("the file is not in an audio format MMT can decode")]
    Unsupported,
    #[error("the audio is corrupt: {0}")]
    Corrupt(String),
    #[error("the file holds no audio")]
    Empty,
    #[error(
        "the audio decodes to more than {limit_s} s, the most a file of its size may hold: it \
         is not a recording MMT accepts"
    )]
    TooLong { limit_s: u64 },
    #[error("audio could not be read: {0}")]
    Io(#[from] std::io::Error),
    /// The consumer asked to stop (e.g. it failed).
    #[error("{0}")]
    Stopped(String),
}

/// What the container says about the audio, before decoding.
#[derive(Debug, Clone, Copy)]
pub struct AudioInfo {
    pub sample_rate: u32,
    pub channels: usize,
    /// Known for most files; absent for streamed WebM and the like.
    pub duration_s: Option<f64>,
}

enum PacketDecoder {
    Symphonia(Box<dyn symphonia::core::codecs::Decoder>),
    Opus {
        decoder: opus::Decoder,
        channels: usize,
        /// Samples per channel still to drop at the start (the encoder's pre-skip).
        skip: usize,
    },
}

/// The most seconds a file of `bytes` may decode to.
pub fn decoded_seconds_limit(bytes: u64) -> u64 {
    (60 + bytes / MIN_BYTES_PER_DECODED_SECOND).min(MAX_DECODED_SECONDS)
}

/// Decodes `file`, calling `sink` with 16 kHz mono samples in chunks of at most a few
/// thousand. Returns the number of 16 kHz samples produced. Whatever the headers claim, the
/// channels are bounded ([`MAX_CHANNELS`]), the sample rate too, and decoding stops with
/// [`AudioError::TooLong`] past [`decoded_seconds_limit`] of the file's size.
///
/// The container readers are third-party parsers of hostile bytes, and some of them assert
/// on malformed input (`make fuzz` found symphonia's Matroska reader panicking on a damaged
/// Cues element): such a panic is caught here and reported as a corrupt file, so one upload
/// can neither take a worker down nor be retried forever.
pub fn decode_file(
    file: File,
    extension: Option<&str>,
    on_info: impl FnMut(AudioInfo),
    sink: impl FnMut(&[f32]) -> Result<(), AudioError>,
) -> Result<u64, AudioError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_unguarded(file, extension, on_info, sink)
    }))
    .unwrap_or_else(|_| {
        Err(AudioError::Corrupt(
            "its container could not be parsed".into(),
        ))
    })
}

fn decode_unguarded(
    file: File,
    extension: Option<&str>,
    mut on_info: impl FnMut(AudioInfo),
    mut sink: impl FnMut(&[f32]) -> Result<(), AudioError>,
) -> Result<u64, AudioError> {
    let limit_s = decoded_seconds_limit(file.metadata()?.len());
    let max_samples = limit_s * u64::from(TARGET_RATE);
    let mut format = open_container(file, extension)?;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(AudioError::Empty)?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let (mut decoder, source_rate, channels) = make_decoder(&params)?;
    on_info(AudioInfo {
        sample_rate: source_rate,
        channels,
        duration_s: params
            .n_frames
            .zip(params.sample_rate)
            .map(|(frames, rate)| frames as f64 / f64::from(rate)),
    });

    let mut resampler = MonoResampler::new(source_rate)?;
    let mut produced: u64 = 0;
    let mut bad_in_a_row = 0usize;
    let mut mono = Vec::new();
    loop {
        let packet = match next_packet(format.as_mut()) {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(err) if produced > 0 || !mono.is_empty() => {
                // A truncated tail: keep what decoded.
                tracing::debug!(error.cause_chain = %crate::telemetry::error_chain(&err), "audio stream ended early");
                break;
            }
            Err(err) => return Err(err),
        };
        if packet.track_id() != track_id {
            continue;
        }
        mono.clear();
        match decoder.decode_into_mono(&packet.data, &packet, &mut mono) {
            Ok(()) => {
                bad_in_a_row = 0;
                keep_in_range(&mut mono);
            }
            Err(err) => {
                bad_in_a_row += 1;
                if bad_in_a_row >= MAX_CONSECUTIVE_BAD_PACKETS {
                    return Err(AudioError::Corrupt(err));
                }
                continue;
            }
        }
        let out = resampler.push(&mono)?;
        emit(&out, &mut sink, &mut produced)?;
        if produced > max_samples {
            return Err(AudioError::TooLong { limit_s });
        }
    }
    let tail = resampler.finish()?;
    emit(&tail, &mut sink, &mut produced)?;
    if produced == 0 {
        return Err(AudioError::Empty);
    }
    Ok(produced)
}

/// The container in `file`, probed by its content (the extension is only a hint).
fn open_container(
    file: File,
    extension: Option<&str>,
) -> Result<Box<dyn symphonia::core::formats::FormatReader>, AudioError> {
    if file.metadata()?.len() == 0 {
        return Err(AudioError::Empty);
    }
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymphoniaError::Unsupported(_) => AudioError::Unsupported,
            SymphoniaError::IoError(e) if e.kind() == ErrorKind::UnexpectedEof => AudioError::Empty,
            other => AudioError::Corrupt(other.to_string()),
        })?;
    Ok(probed.format)
}

fn emit(
    samples: &[f32],
    sink: &mut impl FnMut(&[f32]) -> Result<(), AudioError>,
    produced: &mut u64,
) -> Result<(), AudioError> {
    *produced += samples.len() as u64;
    if samples.is_empty() {
        Ok(())
    } else {
        sink(samples)
    }
}

fn next_packet(
    format: &mut dyn FormatReader,
) -> Result<Option<symphonia::core::formats::Packet>, AudioError> {
    loop {
        match format.next_packet() {
            Ok(packet) => return Ok(Some(packet)),
            Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                return Ok(None);
            }
            Err(SymphoniaError::ResetRequired) => continue,
            Err(SymphoniaError::DecodeError(e)) => return Err(AudioError::Corrupt(e.to_string())),
            Err(SymphoniaError::IoError(e)) => return Err(AudioError::Io(e)),
            Err(other) => return Err(AudioError::Corrupt(other.to_string())),
        }
    }
}

fn make_decoder(params: &CodecParameters) -> Result<(PacketDecoder, u32, usize), AudioError> {
    let channels = params.channels.map(|c| c.count()).unwrap_or(1).max(1);
    if channels > MAX_CHANNELS {
        return Err(AudioError::Corrupt(format!(
            "the header claims {channels} channels; at most {MAX_CHANNELS} are accepted"
        )));
    }
    if params.codec == CODEC_TYPE_OPUS {
        // Opus always decodes at 48 kHz, whatever rate the header says the input had.
        let layout = if channels >= 2 {
            opus::Channels::Stereo
        } else {
            opus::Channels::Mono
        };
        let decoder =
            opus::Decoder::new(48_000, layout).map_err(|e| AudioError::Corrupt(e.to_string()))?;
        let skip = params.delay.unwrap_or(0) as usize;
        return Ok((
            PacketDecoder::Opus {
                decoder,
                channels: channels.min(2),
                skip,
            },
            48_000,
            channels.min(2),
        ));
    }
    let decoder = symphonia::default::get_codecs()
        .make(params, &DecoderOptions::default())
        .map_err(|_| AudioError::Unsupported)?;
    let rate = params
        .sample_rate
        .ok_or_else(|| AudioError::Corrupt("no sample rate".into()))?;
    Ok((PacketDecoder::Symphonia(decoder), rate, channels))
}

impl PacketDecoder {
    /// Decodes one packet and appends its samples, channels averaged, to `mono`.
    fn decode_into_mono(
        &mut self,
        data: &[u8],
        packet: &symphonia::core::formats::Packet,
        mono: &mut Vec<f32>,
    ) -> Result<(), String> {
        match self {
            PacketDecoder::Symphonia(decoder) => {
                let decoded = decoder.decode(packet).map_err(|e| e.to_string())?;
                let spec = *decoded.spec();
                let channels = spec.channels.count().max(1);
                let mut buffer = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
                buffer.copy_interleaved_ref(decoded);
                mix_down(buffer.samples(), channels, mono);
                Ok(())
            }
            PacketDecoder::Opus {
                decoder,
                channels,
                skip,
            } => {
                // 120 ms at 48 kHz is the longest Opus frame.
                let mut pcm = vec![0f32; 5760 * *channels];
                let frames = decoder
                    .decode_float(data, &mut pcm, false)
                    .map_err(|e| e.to_string())?;
                let dropped = (*skip).min(frames);
                *skip -= dropped;
                mix_down(
                    &pcm[dropped * *channels..frames * *channels],
                    *channels,
                    mono,
                );
                Ok(())
            }
        }
    }
}

/// Float formats carry whatever the file says, NaN and 1e38 included: one NaN would spread
/// through the resampler's FFT to a whole block, and a huge value would overflow it to
/// infinity. Decoded audio lies in [-1, 1]; anything else is clipped, non-numbers silenced.
fn keep_in_range(samples: &mut [f32]) {
    for sample in samples {
        *sample = if sample.is_finite() {
            sample.clamp(-1.0, 1.0)
        } else {
            0.0
        };
    }
}

fn mix_down(interleaved: &[f32], channels: usize, mono: &mut Vec<f32>) {
    if channels == 1 {
        mono.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    mono.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

/// Streaming conversion of mono audio at any rate to 16 kHz.
///
/// An FFT resampler: exact for rational ratios and cheap. Its anti-aliasing filter is as long
/// as its FFT block, and the filter's cutoff rises towards 8 kHz as the block grows; a short
/// block (171 output samples at 48 kHz) cut at 7.4 kHz, and the band it removed is one tiny.en
/// relies on (issue 16: 48 kHz recordings transcribed worse than the same speech at 16 kHz).
/// Blocks of at least [`Self::MIN_BLOCK`] samples on both sides put the cutoff near 7.9 kHz,
/// as ffmpeg's and soxr's default resamplers do.
struct MonoResampler {
    inner: Option<FftFixedIn<f32>>,
    pending: Vec<f32>,
    /// Output samples still to drop: the filter's delay, so timestamps stay exact.
    delay: usize,
    source_rate: u32,
    frames_in: u64,
    frames_out: u64,
}

impl MonoResampler {
    /// The smallest FFT block, in samples, on the input and on the output side.
    const MIN_BLOCK: usize = 1024;
    /// The range of rates recorders use (telephony's 8 kHz to studio 384 kHz, with margin); a
    /// header outside it lies, and would size the filter from its lie.
    const SOURCE_RATES: std::ops::RangeInclusive<u32> = 4_000..=384_000;

    fn new(source_rate: u32) -> Result<Self, AudioError> {
        if !Self::SOURCE_RATES.contains(&source_rate) {
            return Err(AudioError::Corrupt(format!(
                "sample rate {source_rate} Hz is not a recording's"
            )));
        }
        if source_rate == TARGET_RATE {
            return Ok(Self {
                inner: None,
                pending: Vec::new(),
                delay: 0,
                source_rate,
                frames_in: 0,
                frames_out: 0,
            });
        }
        let block_in = Self::block_in(source_rate);
        let inner =
            FftFixedIn::<f32>::new(source_rate as usize, TARGET_RATE as usize, block_in, 1, 1)
                .map_err(|e| {
                    AudioError::Corrupt(format!("cannot resample from {source_rate} Hz: {e}"))
                })?;
        let delay = inner.output_delay();
        Ok(Self {
            inner: Some(inner),
            pending: Vec::new(),
            delay,
            source_rate,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// The input block: a whole, even number of the ratio's smallest units (so the filter's
    /// delay is a whole number of output samples and trimming it leaves no fractional
    /// offset), with both sides at least [`Self::MIN_BLOCK`] long.
    fn block_in(source_rate: u32) -> usize {
        let common = gcd(source_rate, TARGET_RATE);
        let (unit_in, unit_out) = (
            (source_rate / common) as usize,
            (TARGET_RATE / common) as usize,
        );
        let units = Self::MIN_BLOCK.div_ceil(unit_in.min(unit_out));
        (units + units % 2) * unit_in
    }

    fn trim(&mut self, mut out: Vec<f32>) -> Vec<f32> {
        let drop = self.delay.min(out.len());
        self.delay -= drop;
        out.drain(..drop);
        self.frames_out += out.len() as u64;
        out
    }

    fn push(&mut self, samples: &[f32]) -> Result<Vec<f32>, AudioError> {
        self.frames_in += samples.len() as u64;
        let Some(inner) = self.inner.as_mut() else {
            return Ok(samples.to_vec());
        };
        self.pending.extend_from_slice(samples);
        let mut out = Vec::new();
        let mut consumed = 0;
        while self.pending.len() - consumed >= inner.input_frames_next() {
            let need = inner.input_frames_next();
            let block = &self.pending[consumed..consumed + need];
            let resampled = inner
                .process(&[block], None)
                .map_err(|e| AudioError::Corrupt(e.to_string()))?;
            out.extend_from_slice(&resampled[0]);
            consumed += need;
        }
        self.pending.drain(..consumed);
        Ok(self.trim(out))
    }

    fn finish(&mut self) -> Result<Vec<f32>, AudioError> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            let resampled = inner
                .process_partial(Some(&[pending.as_slice()]), None)
                .map_err(|e| AudioError::Corrupt(e.to_string()))?;
            out.extend_from_slice(&resampled[0]);
        }
        // Flush the filter so the last few milliseconds are not lost.
        let flushed = inner
            .process_partial(None::<&[&[f32]]>, None)
            .map_err(|e| AudioError::Corrupt(e.to_string()))?;
        out.extend_from_slice(&flushed[0]);
        let mut out = self.trim(out);
        // The last block was zero-padded to the filter's size: keep exactly the input's length.
        let expected =
            (self.frames_in * u64::from(TARGET_RATE)).div_ceil(u64::from(self.source_rate));
        let excess = self.frames_out.saturating_sub(expected) as usize;
        out.truncate(out.len().saturating_sub(excess));
        self.frames_out -= excess.min(self.frames_out as usize) as u64;
        Ok(out)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A PCM WAV with `channels` channels of a `freq` Hz tone at `rate`.
    fn wav(rate: u32, channels: u16, seconds: f64, freq: f64) -> Vec<u8> {
        let frames = (seconds * f64::from(rate)) as u32;
        let data_len = frames * u32::from(channels) * 2;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        out.extend_from_slice(&(channels * 2).to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for i in 0..frames {
            let v =
                ((f64::from(i) / f64::from(rate)) * freq * std::f64::consts::TAU).sin() * 16000.0;
            for _ in 0..channels {
                out.extend_from_slice(&(v as i16).to_le_bytes());
            }
        }
        out
    }

    fn decode_bytes(bytes: &[u8], ext: &str) -> Result<(Vec<f32>, AudioInfo), AudioError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        let mut info = None;
        let mut samples = Vec::new();
        decode_file(
            file.reopen().unwrap(),
            Some(ext),
            |i| info = Some(i),
            |chunk| {
                samples.extend_from_slice(chunk);
                Ok(())
            },
        )?;
        Ok((samples, info.unwrap()))
    }

    #[test]
    fn stereo_44k_becomes_16k_mono_of_the_same_length() {
        let (samples, info) = decode_bytes(&wav(44_100, 2, 2.0, 440.0), "wav").unwrap();
        assert_eq!((info.sample_rate, info.channels), (44_100, 2));
        assert!((info.duration_s.unwrap() - 2.0).abs() < 1e-3);
        assert!(
            (samples.len() as i64 - 32_000).abs() < 200,
            "{}",
            samples.len()
        );
        // The tone survives: energy in the middle is close to a full-scale-ish sine's.
        let mid = &samples[8000..24000];
        let rms = (mid.iter().map(|s| s * s).sum::<f32>() / mid.len() as f32).sqrt();
        assert!((rms - 0.345).abs() < 0.05, "rms {rms}");
    }

    #[test]
    fn eight_khz_is_upsampled() {
        let (samples, _) = decode_bytes(&wav(8_000, 1, 1.0, 300.0), "wav").unwrap();
        assert!(
            (samples.len() as i64 - 16_000).abs() < 200,
            "{}",
            samples.len()
        );
    }

    #[test]
    fn sixteen_khz_mono_passes_through_untouched() {
        let (samples, _) = decode_bytes(&wav(16_000, 1, 0.5, 300.0), "wav").unwrap();
        assert_eq!(samples.len(), 8000);
    }

    #[test]
    fn a_header_claiming_an_impossible_rate_is_refused() {
        for rate in [1, 3_999, 384_001, 4_000_000] {
            let err = decode_bytes(&wav(rate, 1, 0.01, 300.0), "wav").unwrap_err();
            assert!(
                matches!(&err, AudioError::Corrupt(m) if m.contains("sample rate")),
                "{rate} Hz: {err:?}"
            );
        }
        // Odd but real rates share few factors with 16 kHz: still converted, to the right length.
        for rate in [4_000, 11_127, 44_101, 383_999] {
            let (samples, _) = decode_bytes(&wav(rate, 1, 0.5, 300.0), "wav").unwrap();
            assert!(
                samples.len().abs_diff(8_000) <= 1,
                "{rate} Hz: {}",
                samples.len()
            );
        }
    }

    #[test]
    fn broken_inputs_fail_cleanly() {
        assert!(matches!(decode_bytes(b"", "wav"), Err(AudioError::Empty)));
        assert!(matches!(
            decode_bytes(b"%PDF-1.7 definitely not audio at all", "wav"),
            Err(AudioError::Unsupported)
        ));
        // A WAV header that promises data that is not there.
        let header_only = &wav(16_000, 1, 1.0, 300.0)[..44];
        assert!(decode_bytes(header_only, "wav").is_err());
        // Truncated mid-stream: what decoded is kept.
        let full = wav(16_000, 1, 1.0, 300.0);
        let (samples, _) = decode_bytes(&full[..full.len() / 2], "wav").unwrap();
        assert!(
            samples.len() > 7000 && samples.len() < 8100,
            "{}",
            samples.len()
        );
    }

    #[test]
    fn the_decoded_length_is_bounded_by_the_file_size_and_absolutely() {
        assert_eq!(decoded_seconds_limit(0), 60);
        // 1 MB may hold a little under 1.4 h; Opus at 6 kbit/s fills it in about 22 min.
        assert_eq!(decoded_seconds_limit(1_000_000), 5_060);
        assert_eq!(decoded_seconds_limit(u64::MAX), MAX_DECODED_SECONDS);
    }
}
