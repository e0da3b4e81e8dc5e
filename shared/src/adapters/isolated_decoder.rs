//! Decoding in a child process under a memory and CPU limit.
//!
//! The container readers and codecs (symphonia, libopus) are parsers of hostile bytes, and
//! some of them trust what a header claims: `make fuzz` found symphonia's FLAC reader
//! allocating a 4 GB buffer because a Vorbis comment said it was that long. No bound MMT puts
//! around [`decode_file`] can stop an allocation inside a dependency, so the decoder runs as
//! `<program> decode-audio` (the `mmt` binary itself): with a data-memory limit
//! (`RLIMIT_DATA`: heap and private mappings, whether touched or not; shared libraries such
//! as CUDA's on the GPU worker do not count), a CPU limit, no core dump, no environment (no
//! keys, no tokens) and the recording on its stdin.
//! What it decodes comes back on its stdout as frames; when it dies — out of memory, out of
//! time, a crash in C code — the job fails with that reason and the server carries on.
//!
//! Frames, little-endian: `I` rate:u32 channels:u32 duration_s:f64 (NaN when unknown);
//! `S` count:u32 then count f32 samples; `E` produced:u64 (the end); `X` kind:u8 limit_s:u64
//! length:u32 then a UTF-8 message (a decode error).

use std::{
    fs::File,
    io::{BufReader, BufWriter, ErrorKind, Read, Write},
    os::unix::process::{CommandExt, ExitStatusExt},
    path::Path,
    process::{Child, Command, ExitCode, Stdio},
    time::Duration,
};

use super::audio::{AudioError, AudioInfo, decode_file};
use crate::config::AudioDecoder;

/// The sub-command the child runs.
pub const SUBCOMMAND: &str = "decode-audio";
/// What `<program> decode-audio --probe` prints: start-up checks that the configured program
/// is a decoder of this protocol (and not, say, a test harness that would run its tests).
const PROBE_ANSWER: &str = "mmt-decode-audio 1";
/// Samples per `S` frame.
const FRAME_SAMPLES: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[error("the audio decoder {program} does not answer as one: {reason}")]
pub struct ProbeError {
    program: String,
    reason: String,
}

/// Checks once, at start-up, that the configured program speaks this protocol, and starts
/// at all under its memory limit (a build linked with large libraries, CUDA's for one, may
/// need a higher `AUDIO_DECODER_MEMORY_MB`: better to hear it now than from every job).
pub fn probe(decoder: &AudioDecoder) -> Result<(), ProbeError> {
    let AudioDecoder::Isolated {
        program,
        memory_limit_mb,
    } = decoder
    else {
        return Ok(());
    };
    let failed = |reason: String| ProbeError {
        program: program.display().to_string(),
        reason,
    };
    let mut command = Command::new(program);
    let memory = memory_limit_mb.saturating_mul(1 << 20);
    // SAFETY: between fork and exec only async-signal-safe calls are allowed; setrlimit is one.
    unsafe {
        command.pre_exec(move || set_limit(libc::RLIMIT_DATA, memory));
    }
    let output = command
        .args([SUBCOMMAND, "--probe"])
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| failed(e.to_string()))?;
    let answer = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && answer.trim() == PROBE_ANSWER {
        Ok(())
    } else {
        Err(failed(format!(
            "it answered {:?} under a {memory_limit_mb} MB limit",
            answer.trim()
        )))
    }
}

/// [`decode_file`], in the child process when isolated. `cpu_limit` bounds the child's
/// CPU time (the job's own deadline is checked by `sink`).
pub fn decode(
    decoder: &AudioDecoder,
    file: File,
    extension: Option<&str>,
    cpu_limit: Duration,
    on_info: impl FnMut(AudioInfo),
    sink: impl FnMut(&[f32]) -> Result<(), AudioError>,
) -> Result<u64, AudioError> {
    match decoder {
        AudioDecoder::InProcess => decode_file(file, extension, on_info, sink),
        AudioDecoder::Isolated {
            program,
            memory_limit_mb,
        } => {
            let child = spawn(program, *memory_limit_mb, cpu_limit, file, extension)?;
            Isolated { child }.run(on_info, sink)
        }
    }
}

fn spawn(
    program: &Path,
    memory_limit_mb: u64,
    cpu_limit: Duration,
    file: File,
    extension: Option<&str>,
) -> Result<Child, AudioError> {
    let mut command = Command::new(program);
    command.arg(SUBCOMMAND);
    if let Some(extension) = extension {
        command.args(["--extension", extension]);
    }
    let memory = memory_limit_mb.saturating_mul(1 << 20);
    let cpu_s = cpu_limit.as_secs().max(1);
    // SAFETY: between fork and exec only async-signal-safe calls are allowed; setrlimit is one.
    unsafe {
        command.pre_exec(move || {
            set_limit(libc::RLIMIT_DATA, memory)?;
            set_limit(libc::RLIMIT_CPU, cpu_s)?;
            set_limit(libc::RLIMIT_CORE, 0)
        });
    }
    command
        .env_clear()
        .stdin(Stdio::from(file))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            AudioError::Io(std::io::Error::new(
                e.kind(),
                format!("the audio decoder could not be started: {e}"),
            ))
        })
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: a plain system call on a value this function owns.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A running child; killed and reaped however its reading ends.
struct Isolated {
    child: Child,
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Isolated {
    fn run(
        mut self,
        mut on_info: impl FnMut(AudioInfo),
        mut sink: impl FnMut(&[f32]) -> Result<(), AudioError>,
    ) -> Result<u64, AudioError> {
        let stdout = self.child.stdout.take().expect("stdout is piped");
        let mut frames = BufReader::new(stdout);
        let mut samples = Vec::with_capacity(FRAME_SAMPLES);
        loop {
            let Some(kind) = read_kind(&mut frames)? else {
                return Err(self.died());
            };
            match kind {
                b'I' => on_info(AudioInfo {
                    sample_rate: read_u32(&mut frames)?,
                    channels: read_u32(&mut frames)? as usize,
                    duration_s: Some(f64::from_bits(read_u64(&mut frames)?))
                        .filter(|d| !d.is_nan()),
                }),
                b'S' => {
                    let count = read_u32(&mut frames)? as usize;
                    if count > FRAME_SAMPLES {
                        return Err(protocol_error());
                    }
                    samples.clear();
                    for _ in 0..count {
                        samples.push(f32::from_bits(read_u32(&mut frames)?));
                    }
                    sink(&samples)?;
                }
                b'E' => return read_u64(&mut frames),
                b'X' => return Err(read_error(&mut frames)?),
                _ => return Err(protocol_error()),
            }
        }
    }

    /// The reason a child that stopped answering gives the user.
    fn died(&mut self) -> AudioError {
        let status = self.child.wait();
        let signal = status.as_ref().ok().and_then(|s| s.signal());
        tracing::warn!(
            signal,
            exit_code = status.as_ref().ok().and_then(|s| s.code()),
            "the audio decoder stopped before the end of the recording"
        );
        AudioError::Corrupt(match signal {
            Some(libc::SIGXCPU) | Some(libc::SIGKILL) => {
                "decoding it ran past its time limit".into()
            }
            _ => "decoding it stopped (it needed more memory than a recording may, or the \
                  decoder failed on it)"
                .into(),
        })
    }
}

fn protocol_error() -> AudioError {
    AudioError::Corrupt("the audio decoder answered out of protocol".into())
}

fn read_kind(frames: &mut impl Read) -> Result<Option<u8>, AudioError> {
    let mut kind = [0u8; 1];
    match frames.read_exact(&mut kind) {
        Ok(()) => Ok(Some(kind[0])),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(AudioError::Io(e)),
    }
}

fn read_u32(frames: &mut impl Read) -> Result<u32, AudioError> {
    let mut bytes = [0u8; 4];
    frames
        .read_exact(&mut bytes)
        .map_err(|_| protocol_error())?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_u64(frames: &mut impl Read) -> Result<u64, AudioError> {
    let mut bytes = [0u8; 8];
    frames
        .read_exact(&mut bytes)
        .map_err(|_| protocol_error())?;
    Ok(u64::from_le_bytes(bytes))
}

fn read_error(frames: &mut impl Read) -> Result<AudioError, AudioError> {
    let mut kind = [0u8; 1];
    frames.read_exact(&mut kind).map_err(|_| protocol_error())?;
    let limit_s = read_u64(frames)?;
    let length = read_u32(frames)? as usize;
    if length > 4096 {
        return Err(protocol_error());
    }
    let mut message = vec![0u8; length];
    frames
        .read_exact(&mut message)
        .map_err(|_| protocol_error())?;
    let message = String::from_utf8_lossy(&message).into_owned();
    Ok(match kind[0] {
        0 => AudioError::Unsupported,
        1 => AudioError::Corrupt(message),
        2 => AudioError::Empty,
        3 => AudioError::TooLong { limit_s },
        _ => AudioError::Io(std::io::Error::other(message)),
    })
}

/// The child's side: `decode-audio [--extension EXT]` decodes its stdin onto its stdout;
/// `decode-audio --probe` names the protocol.
pub fn run_child(args: &[String]) -> ExitCode {
    // A panic is reported as a decode error frame; its message must not reach a log.
    std::panic::set_hook(Box::new(|_| {}));
    if args.iter().any(|a| a == "--probe") {
        println!("{PROBE_ANSWER}");
        return ExitCode::SUCCESS;
    }
    let extension = args
        .iter()
        .position(|a| a == "--extension")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let stdin = std::io::stdin();
    let file = match std::os::fd::AsFd::as_fd(&stdin).try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(_) => return ExitCode::FAILURE,
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let result = child_decode(file, extension, &mut out);
    match result.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn child_decode(file: File, extension: Option<&str>, out: &mut impl Write) -> std::io::Result<()> {
    // Both callbacks write frames to the one stdout.
    let out = std::cell::RefCell::new(out);
    let mut info_failed = None;
    let result = decode_file(
        file,
        extension,
        |info| {
            let mut frame = vec![b'I'];
            frame.extend(info.sample_rate.to_le_bytes());
            frame.extend((info.channels as u32).to_le_bytes());
            frame.extend(info.duration_s.unwrap_or(f64::NAN).to_bits().to_le_bytes());
            if let Err(e) = out.borrow_mut().write_all(&frame) {
                info_failed.get_or_insert(e);
            }
        },
        |samples| {
            let mut out = out.borrow_mut();
            for chunk in samples.chunks(FRAME_SAMPLES) {
                let mut frame = Vec::with_capacity(5 + chunk.len() * 4);
                frame.push(b'S');
                frame.extend((chunk.len() as u32).to_le_bytes());
                frame.extend(chunk.iter().flat_map(|s| s.to_bits().to_le_bytes()));
                out.write_all(&frame)
                    .map_err(|e| AudioError::Stopped(e.to_string()))?;
            }
            Ok(())
        },
    );
    if let Some(e) = info_failed {
        return Err(e);
    }
    let out = out.into_inner();
    match result {
        Ok(produced) => {
            out.write_all(b"E")?;
            out.write_all(&produced.to_le_bytes())
        }
        // The parent stopped reading: nothing to tell it.
        Err(AudioError::Stopped(reason)) => Err(std::io::Error::other(reason)),
        Err(error) => write_error(out, &error),
    }
}

fn write_error(out: &mut impl Write, error: &AudioError) -> std::io::Result<()> {
    let (kind, limit_s) = match error {
        AudioError::Unsupported => (0u8, 0),
        AudioError::Corrupt(_) => (1, 0),
        AudioError::Empty => (2, 0),
        AudioError::TooLong { limit_s } => (3, *limit_s),
        AudioError::Io(_) | AudioError::Stopped(_) => (4, 0),
    };
    // What the reader wraps again: the inner message where the variant carries one.
    let message = match error {
        AudioError::Corrupt(message) | AudioError::Stopped(message) => message.clone(),
        AudioError::Io(e) => e.to_string(),
        other => other.to_string(),
    };
    let message = &message.as_bytes()[..message.len().min(4096)];
    out.write_all(&[b'X', kind])?;
    out.write_all(&limit_s.to_le_bytes())?;
    out.write_all(&(message.len() as u32).to_le_bytes())?;
    out.write_all(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decode_error_crosses_the_pipe_as_itself() {
        let errors = [
            AudioError::Unsupported,
            AudioError::Corrupt("riff: block size is 0".into()),
            AudioError::Empty,
            AudioError::TooLong { limit_s: 1260 },
            AudioError::Io(std::io::Error::other("disk gone")),
        ];
        for error in errors {
            let mut pipe = Vec::new();
            write_error(&mut pipe, &error).unwrap();
            assert_eq!(pipe[0], b'X');
            let read = read_error(&mut &pipe[1..]).unwrap();
            assert_eq!(read.to_string(), error.to_string());
            assert_eq!(
                std::mem::discriminant(&read),
                std::mem::discriminant(&error)
            );
        }
    }

    #[test]
    fn a_message_longer_than_a_frame_is_cut_not_refused() {
        let mut pipe = Vec::new();
        write_error(&mut pipe, &AudioError::Corrupt("é".repeat(5000))).unwrap();
        let read = read_error(&mut &pipe[1..]).unwrap();
        assert!(matches!(read, AudioError::Corrupt(m) if m.len() <= 4096 && m.starts_with("éé")));
        // A frame claiming more than that is out of protocol.
        let mut lying = vec![1u8];
        lying.extend(0u64.to_le_bytes());
        lying.extend(1_000_000u32.to_le_bytes());
        assert!(read_error(&mut &lying[..]).is_err());
    }
}
