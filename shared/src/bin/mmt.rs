//! `mmt`: the one-process MMT server (`mmt serve`, the default) and its small tools.

use std::process::ExitCode;

use mmt_core::{
    AppState, Config,
    entrypoints::local::{Application, run_worker_until_stopped, shutdown_on_signal},
    telemetry::{self, error_chain},
};

const USAGE: &str =
    "usage: mmt [serve | worker | transcribe FILE | hash-password | keys rotate | secrets | help]
  serve            run the API, the transcribe workers and the retention sweep (default)
  worker           run only the transcribe workers (and /health/* on $PORT): the GPU worker
  transcribe FILE [--task translate] [--prompt TEXT]
                   transcribe (or translate into English) one audio file with the local engine
                   (WHISPER_* settings, VOCABULARY, then the prompt); print the transcript as
                   JSON with timing and peak memory
  hash-password    read a password on stdin, print an argon2 hash for LOCAL_LOGIN_USERS
  keys rotate [--batch N]
                   seal again, under PRIMARY_ENCRYPTION_KEY_ID, every record and audio file an
                   older key sealed (resumable; then the old key can leave ENCRYPTION_KEYS)
  secrets [--rsa] [--encryption N] [--all]
                   print a fresh .env block of secrets from the OS random generator";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The audio decoder child runs before any runtime or thread exists: one thread, under the
    // memory limit its parent set.
    #[cfg(feature = "whisper")]
    if args.first().map(String::as_str) == Some(mmt_core::adapters::isolated_decoder::SUBCOMMAND) {
        return mmt_core::adapters::isolated_decoder::run_child(&args[1..]);
    }
    drop(args);
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => {
            eprintln!("mmt: the async runtime could not start: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    match command.as_str() {
        "serve" => serve(Mode::Server).await,
        "worker" => serve(Mode::Worker).await,
        "hash-password" => hash_password(),
        "secrets" => secrets(),
        "keys" => match std::env::args().nth(2).as_deref() {
            Some("rotate") => rotate_keys().await,
            _ => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        },
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
    let component = match mode {
        Mode::Server => "serve",
        Mode::Worker => "worker",
    };
    let _telemetry = telemetry::init(&config.telemetry, component);
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
                tracing::error!(error.cause_chain = %mmt_core::telemetry::error_chain(&err), "cannot bind the listening socket");
                return ExitCode::FAILURE;
            }
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error.cause_chain = %mmt_core::telemetry::error_chain(&err), "server failed");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` from the command line, if given.
fn flag_value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn rotate_keys() -> ExitCode {
    let batch = match flag_value("--batch").map(|b| b.parse::<u32>()) {
        None => 100,
        Some(Ok(b)) if b > 0 => b,
        Some(_) => {
            eprintln!("mmt: --batch takes a positive number");
            return ExitCode::from(2);
        }
    };
    let mut config = match Config::load().await {
        Ok(config) => config,
        Err(err) => {
            eprintln!("mmt: configuration error: {err}");
            return ExitCode::from(78);
        }
    };
    let _telemetry = telemetry::init(&config.telemetry, "keys-rotate");
    // Rotation touches stores only: no engine to load.
    config.engines.local_engine_enabled = false;
    let state = match AppState::from_config(config).await {
        Ok(state) => state,
        Err(err) => {
            eprintln!("mmt: start-up failed: {}", error_chain(&err));
            return ExitCode::FAILURE;
        }
    };
    let Some(rotation) = state.key_rotation.clone() else {
        eprintln!("mmt: field encryption is off (ENABLE_FIELD_ENCRYPTION): nothing to rotate");
        return ExitCode::from(2);
    };
    let primary = state
        .config
        .storage
        .field_encryption
        .as_ref()
        .map(|keys| keys.primary_id().to_owned())
        .unwrap_or_default();
    let outcome = rotation
        .run(batch, |r| {
            eprintln!(
                "mmt: {} records looked at, {} resealed, {} audio files resealed",
                r.records_scanned, r.records_resealed, r.audio_resealed
            )
        })
        .await;
    match outcome {
        Ok(report) => {
            state
                .audit_trail()
                .record_key_rotation(&primary, &report)
                .await;
            println!(
                "rotation complete: {} records ({} resealed), {} audio files and {} \
                 vocabularies resealed; everything is now sealed with key {primary:?}, and the \
                 other keys can be removed from ENCRYPTION_KEYS",
                report.records_scanned,
                report.records_resealed,
                report.audio_resealed,
                report.vocabularies_resealed
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("mmt: rotation stopped: {err}. Run it again to continue.");
            ExitCode::FAILURE
        }
    }
}

fn secrets() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let all = args.iter().any(|a| a == "--all");
    let encryption_keys = match flag_value("--encryption").map(|n| n.parse::<u8>()) {
        None => u8::from(all),
        Some(Ok(n)) if (1..=10).contains(&n) => n,
        Some(_) => {
            eprintln!("mmt: --encryption takes a number of keys, 1 to 10");
            return ExitCode::from(2);
        }
    };
    let request = mmt_core::secrets::SecretsRequest {
        rsa: all || args.iter().any(|a| a == "--rsa"),
        encryption_keys,
    };
    match mmt_core::secrets::env_block(request) {
        Ok(block) => {
            print!("{block}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("mmt: could not generate keys: {err}");
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
        domain::{Task, Vocabulary, compose_prompt, sniff_audio_format},
        ports::{Progress, TranscribeOptions, Transcriber},
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
    let engine = match WhisperTranscriber::load(&config.engines.local) {
        Ok(engine) => engine,
        Err(err) => {
            eprintln!("mmt: {err}");
            return ExitCode::FAILURE;
        }
    };
    let loaded_s = started.elapsed().as_secs_f64();
    let task = match flag_value("--task").map(|t| t.parse::<Task>()).transpose() {
        Ok(task) => task.unwrap_or_default(),
        Err(err) => {
            eprintln!("mmt: {err}");
            return ExitCode::from(2);
        }
    };
    let prompt = compose_prompt(
        &config.engines.vocabulary,
        &Vocabulary::default(),
        flag_value("--prompt").as_deref(),
        &|text| engine.prompt_tokens(text),
    );
    let options = TranscribeOptions {
        task,
        language: config.engines.local.language.clone(),
        prompt: prompt.text,
    };
    let started = std::time::Instant::now();
    match engine.transcribe_file(path, format, &options, &Progress::ignore()) {
        Ok(transcript) => {
            let elapsed_s = started.elapsed().as_secs_f64();
            let audio_s = transcript.duration_s.unwrap_or_default();
            let report = serde_json::json!({
                "model": config.engines.local.model_path.display().to_string(),
                "threads": config.engines.local.threads,
                "audio_s": audio_s,
                "load_s": loaded_s,
                "transcribe_s": elapsed_s,
                "real_time_factor": if audio_s > 0.0 { elapsed_s / audio_s } else { 0.0 },
                "peak_rss_mb": peak_rss_mb(),
                "language": transcript.language,
                "language_probability": transcript.language_probability,
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
