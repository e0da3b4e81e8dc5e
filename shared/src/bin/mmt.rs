//! `mmt`: the one-process MMT server (`mmt serve`, the default) and its small tools.

use std::process::ExitCode;

use mmt_core::{
    AppState, Config,
    entrypoints::local::{Application, shutdown_on_signal},
    telemetry::{self, error_chain},
};

const USAGE: &str = "usage: mmt [serve | hash-password | help]
  serve          run the API, the transcribe workers and the retention sweep (default)
  hash-password  read a password on stdin, print an argon2 hash for LOCAL_LOGIN_USERS";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    match command.as_str() {
        "serve" => serve().await,
        "hash-password" => hash_password(),
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

async fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("mmt: configuration error: {err}");
            return ExitCode::from(78);
        }
    };
    telemetry::init(config.log_format);
    let state = match AppState::from_config(config) {
        Ok(state) => state,
        Err(err) => {
            tracing::error!(error = %error_chain(&err), "start-up failed");
            return ExitCode::FAILURE;
        }
    };
    let app = match Application::bind(state).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %err, "cannot bind the listening socket");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped(shutdown_on_signal()).await {
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
