//! The real `mmt` binary as a separate process: crash recovery, graceful shutdown, and what
//! its logs contain.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mmt_testkit::OpenAiContractServer;
use serde_json::Value;

use crate::helpers::{OPENAI_KEY, test_env};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    log: PathBuf,
}

/// The port a server started with `PORT=0` reports in its "listening" (or "running") line,
/// once it has bound it: text (`port=8080`) or JSON (`"port":8080`) logs. The offset skips
/// the lines of earlier runs appended to the same log.
fn reported_port(log: &Path, from: usize) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .get(from..)?
        .lines()
        .find(|l| l.contains("MMT listening") || l.contains("MMT worker running"))?;
    let after = &line[line.find("port")? + "port".len()..];
    let digits: String = after
        .trim_start_matches(['=', '"', ':', ' '])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub(crate) async fn start(env: &HashMap<String, String>, log: &Path) -> Server {
    start_mode("serve", env, log, None).await
}

/// `mmt serve` with its address space limited to `bytes`, as a container with a hard memory
/// limit and no overcommit runs it: an allocation past the limit fails instead of being
/// granted and never touched.
pub(crate) async fn start_with_address_space(
    env: &HashMap<String, String>,
    log: &Path,
    bytes: u64,
) -> Server {
    start_mode("serve", env, log, Some(bytes)).await
}

/// Runs `mmt <mode>` and waits until its `/health/live` answers.
pub(crate) async fn start_mode(
    mode: &str,
    env: &HashMap<String, String>,
    log: &Path,
    address_space: Option<u64>,
) -> Server {
    let earlier = std::fs::metadata(log).map_or(0, |m| m.len() as usize);
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mmt"));
    if let Some(bytes) = address_space {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                match libc::setrlimit(libc::RLIMIT_AS, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
    }
    let child = command
        .arg(mode)
        .env_clear()
        .envs(env)
        .env("PORT", "0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut base = String::new();
    loop {
        if base.is_empty()
            && let Some(port) = reported_port(log, earlier)
        {
            base = format!("http://127.0.0.1:{port}");
        }
        if !base.is_empty()
            && let Ok(r) = client.get(format!("{base}/health/live")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            std::fs::read_to_string(log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        child,
        base,
        log: log.to_owned(),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub(crate) fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit: {}",
                std::fs::read_to_string(&self.log).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Client {
    http: reqwest::Client,
    token: String,
}

impl Client {
    async fn guest(base: &str) -> Self {
        let http = reqwest::Client::new();
        let body: Value = http
            .post(format!("{base}/auth/guest"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            http,
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn upload(&self, base: &str, file_name: &str, prompt: &str) -> (String, String) {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(mmt_testkit::tone_wav(1.0, 16_000))
                    .file_name(file_name.to_owned()),
            )
            .text("prompt", prompt.to_owned());
        let response = self
            .http
            .post(format!("{base}/v1/transcriptions"))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let correlation = response.headers()["x-correlation-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        (body["id"].as_str().unwrap().to_owned(), correlation)
    }

    async fn record(&self, base: &str, id: &str) -> Value {
        self.http
            .get(format!("{base}/v1/transcriptions/{id}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn wait_for(&self, base: &str, id: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let record = self.record(base, id).await;
            if record["status"] == status {
                return record;
            }
            assert!(Instant::now() < deadline, "still {record} after {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_interrupted_by_kill_9_completes_after_restart_and_logs_hold_no_phi() {
    let dir = tempfile::tempdir().unwrap();
    let openai = OpenAiContractServer::start(OPENAI_KEY).await.unwrap();
    openai.set_latency(Duration::from_secs(3));
    openai.set_transcript("Patient Jane Doe reports chest pain since Tuesday.");
    let env = test_env(
        &dir,
        &openai,
        &[
            ("QUEUE_VISIBILITY_TIMEOUT_SECS", "2"),
            ("LOG_FORMAT", "json"),
        ],
    );
    let log = dir.path().join("server.log");

    let mut server = start(&env, &log).await;
    let client = Client::guest(&server.base).await;
    let (id, correlation_id) = client
        .upload(
            &server.base,
            "Jane-Doe-intake.wav",
            "Jane Doe, nitroglycerin",
        )
        .await;
    client
        .wait_for(&server.base, &id, "processing", Duration::from_secs(20))
        .await;
    // Killed while the engine holds the request, not before it was sent.
    let sent = std::time::Instant::now();
    while openai.requests().is_empty() {
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "the request never left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap(); // SIGKILL: no chance to clean up
    server.child.wait().unwrap();

    openai.set_latency(Duration::ZERO);
    let server = start(&env, &log).await;
    let record = client
        .wait_for(&server.base, &id, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(
        record["text"],
        "Patient Jane Doe reports chest pain since Tuesday."
    );
    assert_eq!(
        record["attempts"], 2,
        "the interrupted attempt and the one that finished"
    );
    assert_eq!(openai.requests().len(), 2);
    drop(server);

    let logs = std::fs::read_to_string(&log).unwrap();
    for secret in [
        "Jane",
        "Doe",
        "chest pain",
        "nitroglycerin",
        &client.token,
        OPENAI_KEY,
        crate::helpers::JWT_SECRET,
    ] {
        assert!(!logs.contains(secret), "logs leak {secret:?}");
    }
    // The worker's lines carry the upload request's correlation id.
    let job_lines = logs
        .lines()
        .filter(|l| l.contains("transcription completed"))
        .collect::<Vec<_>>();
    assert_eq!(job_lines.len(), 1, "{logs}");
    assert!(job_lines[0].contains(&correlation_id), "{}", job_lines[0]);
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_job_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let openai = OpenAiContractServer::start(OPENAI_KEY).await.unwrap();
    openai.set_latency(Duration::from_millis(1500));
    let env = test_env(&dir, &openai, &[("SHUTDOWN_GRACE_SECS", "20")]);
    let log = dir.path().join("server.log");

    let mut server = start(&env, &log).await;
    let client = Client::guest(&server.base).await;
    let (id, _) = client.upload(&server.base, "a.wav", "x").await;
    client
        .wait_for(&server.base, &id, "processing", Duration::from_secs(20))
        .await;
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");

    // The job finished before exit: a fresh server has nothing left to do.
    openai.set_latency(Duration::ZERO);
    let server = start(&env, &log).await;
    let record = client.record(&server.base, &id).await;
    assert_eq!(record["status"], "completed");
    assert_eq!(
        openai.requests().len(),
        1,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_grace_period_releases_the_lease_for_an_immediate_retry() {
    let dir = tempfile::tempdir().unwrap();
    let openai = OpenAiContractServer::start(OPENAI_KEY).await.unwrap();
    openai.set_latency(Duration::from_secs(60));
    // A long lease: only an explicit release lets the restarted server take the job at once.
    let env = test_env(
        &dir,
        &openai,
        &[
            ("SHUTDOWN_GRACE_SECS", "1"),
            ("QUEUE_VISIBILITY_TIMEOUT_SECS", "600"),
        ],
    );
    let log = dir.path().join("server.log");

    let mut server = start(&env, &log).await;
    let client = Client::guest(&server.base).await;
    let (id, _) = client.upload(&server.base, "a.wav", "x").await;
    client
        .wait_for(&server.base, &id, "processing", Duration::from_secs(20))
        .await;
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(15)).await.success());

    openai.set_latency(Duration::ZERO);
    let server = start(&env, &log).await;
    let record = client
        .wait_for(&server.base, &id, "completed", Duration::from_secs(15))
        .await;
    assert_eq!(record["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_mode_consumes_the_queue_and_serves_no_api_routes() {
    // The API in this process (no workers), the worker as a separate process on the same data.
    let app = crate::helpers::spawn_app().await;
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;

    let env = test_env(&app.dir, &app.openai, &[]);
    let log = app.dir.path().join("worker.log");
    let mut worker = start_mode("worker", &env, &log, None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, record) = app
            .get_json(&token, &format!("/v1/transcriptions/{id}"))
            .await;
        if record["status"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{record}: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api = reqwest::get(format!("{}/v1/transcriptions", worker.base))
        .await
        .unwrap();
    assert_eq!(api.status(), 404, "the worker serves no API routes");

    worker.sigterm();
    assert!(worker.wait_exit(Duration::from_secs(20)).await.success());
}

/// The one-process server on AWS stores, by configuration alone (as on Railway with real AWS
/// storage): the SDK's standard chain finds the emulator, the JWT secret comes from SSM.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_on_aws_stores_by_configuration_alone() {
    let aws = crate::emulator::Emulator::start().await;
    let deployment = aws.deployment(3, 30).await;
    aws_sdk_ssm::Client::new(&aws.sdk)
        .put_parameter()
        .name("/mmt-process/jwt-secret")
        .value("a-jwt-secret-read-from-parameter-store-at-start-up-0123")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let openai = OpenAiContractServer::start(OPENAI_KEY).await.unwrap();
    let mut env = test_env(&dir, &openai, &[]);
    env.remove("INTERNAL_JWT_SECRET");
    env.extend(deployment.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    for (k, v) in [
        (
            "INTERNAL_JWT_SECRET_SSM_PARAMETER",
            "/mmt-process/jwt-secret",
        ),
        ("AWS_ENDPOINT_URL", aws.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        env.insert(k.to_owned(), v.to_owned());
    }
    let log = dir.path().join("server.log");
    let server = start(&env, &log).await;

    let client = Client::guest(&server.base).await;
    let (id, _) = client.upload(&server.base, "visit.wav", "").await;
    client
        .wait_for(&server.base, &id, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(
        aws.object_keys(&deployment.bucket).await,
        vec![format!("audio/{id}")],
        "the audio is in S3"
    );
    assert!(
        !dir.path().join("mmt.db").exists(),
        "no SQLite file: records and jobs live in DynamoDB and SQS"
    );
    let ready: Value = client
        .http
        .get(format!("{}/health/ready", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
}

#[test]
fn the_secrets_tool_prints_a_fresh_env_block_and_the_rotation_tool_runs_on_it() {
    let run = |args: &[&str], env: &HashMap<String, String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mmt"))
            .args(args)
            .env_clear()
            .envs(env)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, block, _) = run(&["secrets", "--all"], &HashMap::new());
    assert_eq!(code, Some(0));
    let mut env: HashMap<String, String> = block
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    // With RSA keys (`--all`) there is no HS256 secret: production refuses one beside them.
    assert!(!env.contains_key("INTERNAL_JWT_SECRET"), "{block}");
    for key in [
        "ADMIN_API_KEY",
        "INTERNAL_JWT_PRIVATE_KEY_PEM",
        "INTERNAL_JWT_PUBLIC_KEY_PEM",
        "ENCRYPTION_KEYS",
        "PRIMARY_ENCRYPTION_KEY_ID",
    ] {
        assert!(env.contains_key(key), "{key} missing from:\n{block}");
    }
    let (code, _, err) = run(&["secrets", "--encryption", "99"], &HashMap::new());
    assert_eq!(code, Some(2), "{err}");

    let dir = tempfile::tempdir().unwrap();
    env.insert("DATA_DIR".into(), dir.path().display().to_string());
    env.insert("ENV".into(), "prod".into());
    let (code, out, err) = run(&["keys", "rotate"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("rotation complete: 0 records"), "{out}");
    // Secrets never reach the output.
    assert!(!format!("{out}{err}").contains(&env["ADMIN_API_KEY"]));

    // (Production refuses to start without field encryption at all: outside it, the tool
    // says why it has nothing to do.)
    env.remove("ENABLE_FIELD_ENCRYPTION");
    env.insert("ENV".into(), "dev".into());
    let (code, _, err) = run(&["keys", "rotate"], &env);
    assert_eq!(code, Some(2));
    assert!(err.contains("field encryption is off"), "{err}");
}
