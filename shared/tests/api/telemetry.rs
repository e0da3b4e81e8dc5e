//! Everything that leaves the real `mmt` binary as telemetry — its log lines, its error reports
//! (to a receiver speaking Sentry's envelope endpoint), its spans (OTLP/HTTP) and `/metrics` —
//! while a recording whose transcript and file name carry a patient's name goes through upload,
//! transcription and an EHR push, and a second one fails. None of it may carry the name, the
//! transcript or a credential; the correlation ids and the caller's trace must run through it.

use std::time::{Duration, Instant};

use mmt_testkit::{
    Failure, OpenAiContractServer, openemr::FakeOpenEmr, telemetry::TelemetryReceiver,
};
use serde_json::{Value, json};

use crate::{
    helpers::{JWT_SECRET, OPENAI_KEY, test_env},
    process::start,
};

const FIRST_NAME: &str = "Thaddeus";
const SURNAME: &str = "Quimbleworth";
const TRANSCRIPT: &str = "Patient Thaddeus Quimbleworth reports chest pain since Tuesday.";
const PASSWORD: &str = "correct horse battery staple";
const CLIENT_ID: &str = "mmt-client";
const REFRESH_TOKEN: &str = "refresh-from-the-one-time-login";
const PATIENT: &str = "946da619-c631-431a-a282-487cd6fb7802";
const ENCOUNTER: &str = "946da61d-6b95-4f8e-abe5-534a25913b71";
/// The client's own id for this visit, sent as the correlation id of its requests.
const VISIT: &str = "visit-7f3a";
/// The trace the client is already in.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

struct Caller {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Caller {
    async fn upload(&self, file_name: &str, correlation_id: &str) -> String {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(mmt_testkit::tone_wav(1.0, 16_000))
                    .file_name(file_name.to_owned()),
            )
            .text("prompt", format!("{FIRST_NAME} {SURNAME}, nitroglycerin"));
        let response = self
            .http
            .post(format!("{}/v1/transcriptions", self.base))
            .bearer_auth(&self.token)
            .header("x-correlation-id", correlation_id)
            .header(
                "traceparent",
                format!("00-{CALLER_TRACE}-00f067aa0ba902b7-01"),
            )
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn wait_for(&self, path: &str, pointer: &str, wanted: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let body = self.get(path).await;
            if body.pointer(pointer).and_then(Value::as_str) == Some(wanted) {
                return body;
            }
            assert!(Instant::now() < deadline, "{path}: still {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn log_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn lines_with<'a>(lines: &'a [Value], correlation_id: &str, message: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["correlation_id"] == correlation_id && l["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_patient_data_or_credential_leaves_through_telemetry_and_the_ids_run_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let openai = OpenAiContractServer::start(OPENAI_KEY).await.unwrap();
    openai.set_transcript(TRANSCRIPT);
    let emr = FakeOpenEmr::start(CLIENT_ID, REFRESH_TOKEN).await.unwrap();
    emr.add_patient(PATIENT, 7, &[(ENCOUNTER, 42)]);
    let sentry = TelemetryReceiver::start().await.unwrap();
    let collector = TelemetryReceiver::start().await.unwrap();
    let users = format!(
        "dr-ash:{}",
        mmt_core::auth::hash_password(PASSWORD).unwrap()
    );
    let (dsn, otlp, emr_url) = (sentry.sentry_dsn(), collector.base_url(), emr.base_url());
    let env = test_env(
        &dir,
        &openai,
        &[
            ("LOG_FORMAT", "json"),
            ("SENTRY_DSN", dsn.as_str()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("ALLOW_LOCAL_LOGIN", "true"),
            ("LOCAL_LOGIN_USERS", users.as_str()),
            ("EHR_TARGET", "openemr"),
            ("OPENEMR_BASE_URL", emr_url.as_str()),
            ("OPENEMR_CLIENT_ID", CLIENT_ID),
            ("OPENEMR_REFRESH_TOKEN", REFRESH_TOKEN),
        ],
    );
    let log = dir.path().join("server.log");
    let mut server = start(&env, &log).await;
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/auth/login", server.base))
        .json(&json!({"username": "dr-ash", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let caller = Caller {
        http,
        base: server.base.clone(),
        token: login["access_token"].as_str().unwrap().to_owned(),
    };

    // Upload → transcript → EHR push: the client's visit id as the correlation id of both
    // requests, both in the client's trace.
    let id = caller
        .upload(&format!("{FIRST_NAME}-{SURNAME}-intake.wav"), VISIT)
        .await;
    let record = caller
        .wait_for(&format!("/v1/transcriptions/{id}"), "/status", "completed")
        .await;
    assert_eq!(record["text"], TRANSCRIPT, "the name is in the transcript");
    let pushed = caller
        .http
        .post(format!("{}/v1/transcriptions/{id}/ehr", caller.base))
        .bearer_auth(&caller.token)
        .header("x-correlation-id", VISIT)
        .header(
            "traceparent",
            format!("00-{CALLER_TRACE}-b7ad6b7169203331-01"),
        )
        .json(&json!({"patient_id": PATIENT, "encounter_id": ENCOUNTER}))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 202);
    caller
        .wait_for(
            &format!("/v1/transcriptions/{id}/ehr"),
            "/deliveries/0/status",
            "delivered",
        )
        .await;
    let notes = emr.notes();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].fields.values().any(|v| v.contains(SURNAME)),
        "the name reached the EHR: {notes:?}"
    );

    // A second recording fails for good (the cloud engine refuses the key): an error report.
    openai.always(Some(Failure::Unauthorized));
    let failing = caller
        .upload(&format!("{SURNAME}-follow-up.wav"), "follow-up-2")
        .await;
    caller
        .wait_for(
            &format!("/v1/transcriptions/{failing}"),
            "/status",
            "failed",
        )
        .await;

    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("mmt_jobs_total"), "{metrics}");

    // A clean stop sends what is still buffered.
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).await.success());

    let logs = std::fs::read_to_string(&log).unwrap();
    let reports = sentry.everything_received();
    let spans_sent = collector.everything_received();
    let events: Vec<Value> = sentry
        .sentry_items()
        .into_iter()
        .filter(|(kind, _)| kind == "event")
        .map(|(_, event)| event)
        .collect();
    let spans = collector.otlp_spans();
    // Something was sent, or "nothing leaked" would prove nothing.
    assert!(
        events
            .iter()
            .any(|e| e.to_string().contains("transcription failed")),
        "the failure was reported: {reports}"
    );
    assert!(!spans.is_empty(), "spans were exported");

    for (what, sent) in [
        ("logs", &logs),
        ("error reports", &reports),
        ("spans", &spans_sent),
        ("metrics", &metrics),
    ] {
        for secret in [
            FIRST_NAME,
            SURNAME,
            "chest pain",
            "nitroglycerin",
            caller.token.as_str(),
            PASSWORD,
            OPENAI_KEY,
            JWT_SECRET,
            REFRESH_TOKEN,
        ] {
            assert!(!sent.contains(secret), "{what} carry {secret:?}");
        }
    }
    // The DSN's key goes to Sentry (that is its purpose) and nowhere else.
    for sent in [&logs, &spans_sent, &metrics] {
        assert!(!sent.contains("mmt-test-key"));
    }

    // The visit's correlation id is on the request lines, the worker's and the EHR push's,
    // all in the caller's trace.
    let lines = log_lines(&logs);
    for line in &lines {
        assert_eq!(line["function"], "serve", "{line}");
        assert!(
            line["level"].is_string() && line["target"].is_string(),
            "{line}"
        );
    }
    let requests = lines_with(&lines, VISIT, "request completed");
    let routes: Vec<&str> = requests
        .iter()
        .filter_map(|l| l["route"].as_str())
        .collect();
    assert_eq!(
        routes,
        ["/v1/transcriptions", "/v1/transcriptions/{id}/ehr"],
        "{logs}"
    );
    for message in ["transcription completed", "EHR note delivered"] {
        let worker = lines_with(&lines, VISIT, message);
        assert_eq!(worker.len(), 1, "{message}: {logs}");
        assert_eq!(
            worker[0]["trace_id"], CALLER_TRACE,
            "{message}: not in the caller's trace"
        );
    }
    assert_eq!(
        lines_with(&lines, "follow-up-2", "transcription failed").len(),
        1,
        "{logs}"
    );

    // The exported spans: request, upload, job, engine and the EHR calls, in the caller's trace.
    let in_caller_trace: Vec<&str> = spans
        .iter()
        .filter(|s| {
            s["traceId"]
                .as_str()
                .map(str::to_ascii_lowercase)
                .as_deref()
                == Some(CALLER_TRACE)
        })
        .filter_map(|s| s["name"].as_str())
        .collect();
    for name in ["request", "upload", "job", "engine", "ehr_call"] {
        assert!(
            in_caller_trace.contains(&name),
            "{name} not in {in_caller_trace:?}"
        );
    }

    // The error report names the release and environment, and nothing from the request.
    let failed = events
        .iter()
        .find(|e| e.to_string().contains("transcription failed"))
        .unwrap();
    assert_eq!(
        failed["release"],
        concat!("mmt@", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(failed["environment"], "test");
}
