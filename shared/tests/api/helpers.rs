//! Black-box harness: the real router on a random port, a temp SQLite file and audio
//! directory, and an OpenAI-contract server for the cloud engine.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use mmt_core::{
    AppState, AwsSdkConfig, Config,
    http::full_router,
    jobs::{Disposition, run_once},
};
use mmt_testkit::OpenAiContractServer;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tempfile::TempDir;

pub const OPENAI_KEY: &str = "sk-test-key";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub openai: OpenAiContractServer,
    pub dir: TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The environment a test app starts with; `overrides` win.
pub fn test_env(
    dir: &TempDir,
    openai: &OpenAiContractServer,
    overrides: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("ENV", "test"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("INTERNAL_JWT_SECRET", JWT_SECRET),
        ("ALLOW_GUEST_AUTH", "true"),
        ("ENABLE_CLOUD_TRANSCRIPTION", "true"),
        ("OPENAI_API_KEY", OPENAI_KEY),
        ("OPENAI_RETRY_BASE_MS", "10"),
        ("OPENAI_MAX_RETRIES", "2"),
        ("OPENAI_TIMEOUT_SECS", "5"),
        ("JOB_RETRY_BASE_DELAY_MS", "0"),
        ("QUEUE_POLL_INTERVAL_MS", "50"),
        ("LOG_FORMAT", "text"),
        // Tests upload more than a visitor would; the quota test sets its own.
        ("GUEST_UPLOADS_PER_DAY", "0"),
        ("GUEST_UPLOADS_PER_ADDRESS_PER_DAY", "0"),
        // The audio decoder child is the server's binary; this test binary is not one.
        ("AUDIO_DECODER_PROGRAM", env!("CARGO_BIN_EXE_mmt")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert("DATA_DIR".into(), dir.path().display().to_string());
    env.insert("OPENAI_BASE_URL".into(), openai.base_url());
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Serves the full router; workers are not started: tests drive jobs with [`TestApp::drain_jobs`].
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_customised(overrides, |_| {}).await
}

pub async fn spawn_app_customised(
    overrides: &[(&str, &str)],
    customise: impl FnOnce(&mut AppState),
) -> TestApp {
    spawn(overrides, None, None, customise).await
}

/// An app that tells time by `clock` everywhere, the embedded queue included: a test moves
/// time instead of sleeping.
pub async fn spawn_app_on_clock(
    overrides: &[(&str, &str)],
    clock: std::sync::Arc<mmt_core::ports::ManualClock>,
    customise: impl FnOnce(&mut AppState),
) -> TestApp {
    spawn(overrides, None, Some(clock), customise).await
}

/// An app whose AWS clients talk to `aws` (the emulator); `overrides` choose the backends.
#[cfg(feature = "aws")]
pub async fn spawn_app_on_aws(overrides: &[(&str, &str)], aws: AwsSdkConfig) -> TestApp {
    spawn(overrides, Some(aws), None, |_| {}).await
}

async fn spawn(
    overrides: &[(&str, &str)],
    aws: Option<AwsSdkConfig>,
    clock: Option<std::sync::Arc<mmt_core::ports::ManualClock>>,
    customise: impl FnOnce(&mut AppState),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let openai = OpenAiContractServer::start(OPENAI_KEY).await.unwrap();
    let config = Config::from_map(&test_env(&dir, &openai, overrides)).expect("test config");
    if std::env::var("TEST_LOG").is_ok() {
        // Nothing is exported in tests: the guard has nothing to flush.
        std::mem::forget(mmt_core::telemetry::init(&config.telemetry, "test"));
    }
    let clock: std::sync::Arc<dyn mmt_core::ports::Clock> = match clock {
        Some(manual) => manual,
        None => std::sync::Arc::new(mmt_core::ports::SystemClock),
    };
    let mut state = AppState::build(config, aws, clock)
        .await
        .expect("app state");
    customise(&mut state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let router = full_router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        state,
        openai,
        dir,
        server,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Fails the test unless the server still answers its liveness check.
    pub async fn assert_live(&self) {
        let live = self
            .client
            .get(self.url("/health/live"))
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), 200, "the server stopped serving");
    }

    pub async fn guest_token(&self) -> String {
        let response = self
            .client
            .post(self.url("/auth/guest"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn upload(
        &self,
        token: &str,
        audio: Vec<u8>,
        file_name: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = Form::new().part("file", Part::bytes(audio).file_name(file_name.to_owned()));
        for (k, v) in fields {
            form = form.text((*k).to_owned(), (*v).to_owned());
        }
        self.client
            .post(self.url("/v1/transcriptions"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// A signed-in user's token with the EHR scope (guests may not push).
    pub fn clinician_token(&self, name: &str) -> String {
        use mmt_core::auth::Scope;
        self.state
            .tokens
            .issue(
                &mmt_core::domain::OwnerId::for_user(name).unwrap(),
                &[Scope::Read, Scope::Write, Scope::EhrPush],
            )
            .unwrap()
            .access_token
    }

    /// Uploads a short WAV and returns the new id.
    pub async fn upload_wav(&self, token: &str) -> String {
        self.upload_wav_as(token, "visit.wav").await
    }

    /// Uploads a short WAV under `file_name` and returns the new id.
    pub async fn upload_wav_as(&self, token: &str, file_name: &str) -> String {
        let response = self.upload(token, tone(), file_name, &[]).await;
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self.get(token, path).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A JSON request with the token; the status and the JSON answer (`Null` when none).
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: &Value,
    ) -> (u16, Value) {
        let response = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Runs queued jobs until none is visible.
    pub async fn drain_jobs(&self) -> Vec<Disposition> {
        let mut done = Vec::new();
        while let Some(d) = run_once(&self.state).await {
            done.push(d);
            assert!(done.len() < 100, "jobs keep coming back");
        }
        done
    }

    pub fn audio_files(&self) -> Vec<PathBuf> {
        files_under(&self.dir.path().join("audio"))
    }
}

pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// 1.5 s of tone at 16 kHz: a real, small WAV.
pub fn tone() -> Vec<u8> {
    mmt_testkit::tone_wav(1.5, 16_000)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The Python of a tool environment `make setup` installs (`MMT_TOOLS_DIR`, by default
/// `~/.cache/mmt-tools/<name>`).
pub fn tool_python(name: &str) -> PathBuf {
    let base = std::env::var_os("MMT_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("mmt-tools")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mmt-tools")))
        .expect("HOME is set");
    let python = base.join(name).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make setup` (scripts/setup.sh installs it)",
        python.display()
    );
    python
}

/// Runs a tool the tests need (espeak-ng, ffmpeg, sox: `make setup` installs them); fails the
/// test with its stderr if it fails.
pub fn run_tool(cmd: &mut std::process::Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (make setup installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What this thread logs from now until the returned value is dropped (a current-thread
/// test runtime keeps every task of a test on its thread). One subscriber serves the whole
/// test binary and writes each thread's lines to that thread's capture, if any: a subscriber
/// per test would share tracing's global per-callsite cache with the tests beside it.
pub fn capture_logs() -> CapturedLogs {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadCapture)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        // Fails only when TEST_LOG installed the service's own subscriber first.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
    let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(buffer.clone()));
    CapturedLogs { buffer }
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

pub struct CapturedLogs {
    buffer: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

impl Drop for CapturedLogs {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}

/// Writes to the current thread's capture; lines of threads without one are dropped.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(buffer) = capture.borrow().as_ref() {
                buffer.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
