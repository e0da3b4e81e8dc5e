//! `mmt`: the one-process MMT server (`mmt serve`, the default) and its small tools.

use std::process::ExitCode;

use mmt_core::{
    AppState, Config,
    entrypoints::local::{Application, run_worker_until_stopped, shutdown_on_signal},
    telemetry::{self, error_chain},
};

const USAGE: &str = "usage: mmt [serve | worker | transcribe FILE | hash-password | help]
  serve            run the API, the transcribe workers and the retention sweep (default)
  worker           run only the transcribe workers (and /health/* on $PORT): the GPU worker
  transcribe FILE  transcribe one audio file with the local engine (WHISPER_* settings) and
                   print the transcript as JSON with timing and peak memory
  hash-password    read a password on stdin, print an argon2 hash for LOCAL_LOGIN_USERS";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    match command.as_str() {
        "serve" => serve(Mode::Server).await,
        "worker" => serve(Mode::Worker).await,
        "hash-password" => hash_password(),
        "transcribe" => match std::env::args().nth(2) {
            Some(file) => transcribe(&file),
            None => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        },
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

enum Mode {
    Server,
    Worker,
}

async fn serve(mode: Mode) -> ExitCode {
    let config = match Config::load().await {
        Ok(config) => config,
        Err(err) => {
            eprintln!("mmt: configuration error: {err}");
            return ExitCode::from(78);
        }
    };
    telemetry::init(config.log_format);
    let state = match AppState::from_config(config).await {
        Ok(state) => state,
        Err(err) => {
            tracing::error!(error = %error_chain(&err), "start-up failed");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = shutdown_on_signal();
    let outcome = match mode {
        Mode::Worker => run_worker_until_stopped(state, shutdown).await,
        Mode::Server => match Application::bind(state).await {
            Ok(app) => app.run_until_stopped(shutdown).await,
            Err(err) => {
                tracing::error!(error = %err, "cannot bind the listening socket");
                return ExitCode::FAILURE;
            }
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> ExitCode {
    let mut password = String::new();
    if std::io::stdin().read_line(&mut password).is_err()
        || password.trim_end_matches(['\r', '\n']).is_empty()
    {
        eprintln!("mmt: give the password on standard input");
        return ExitCode::from(2);
    }
    match mmt_core::auth::hash_password(password.trim_end_matches(['\r', '\n'])) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("mmt: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "whisper")]
fn transcribe(file: &str) -> ExitCode {
    use mmt_core::{
        adapters::whisper::WhisperTranscriber,
        domain::sniff_audio_format,
        ports::{Progress, TranscribeOptions},
    };
    use std::io::Read;

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("mmt: configuration error: {err}");
            return ExitCode::from(78);
        }
    };
    let path = std::path::Path::new(file);
    let mut head = [0u8; 16];
    let format = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .ok()
        .and_then(|n| sniff_audio_format(&head[..n]));
    let Some(format) = format else {
        eprintln!("mmt: {file} is not an audio file MMT can read");
        return ExitCode::from(65);
    };
    let started = std::time::Instant::now();
    let engine = match WhisperTranscriber::load(&config.local) {
        Ok(engine) => engine,
        Err(err) => {
            eprintln!("mmt: {err}");
            return ExitCode::FAILURE;
        }
    };
    let loaded_s = started.elapsed().as_secs_f64();
    let options = TranscribeOptions {
        language: config.local.language.clone(),
        prompt: None,
    };
    let started = std::time::Instant::now();
    match engine.transcribe_file(path, format, &options, &Progress::ignore()) {
        Ok(transcript) => {
            let elapsed_s = started.elapsed().as_secs_f64();
            let audio_s = transcript.duration_s.unwrap_or_default();
            let report = serde_json::json!({
                "model": config.local.model_path.display().to_string(),
                "threads": config.local.threads,
                "audio_s": audio_s,
                "load_s": loaded_s,
                "transcribe_s": elapsed_s,
                "real_time_factor": if audio_s > 0.0 { elapsed_s / audio_s } else { 0.0 },
                "peak_rss_mb": peak_rss_mb(),
                "language": transcript.language,
                "text": transcript.text,
                "segments": transcript.segments.len(),
            });
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("mmt: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "whisper"))]
fn transcribe(_file: &str) -> ExitCode {
    eprintln!("mmt: this build has no local engine (build with the `whisper` feature)");
    ExitCode::FAILURE
}

/// The process's peak resident memory (VmHWM), where /proc tells it.
#[cfg(feature = "whisper")]
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
