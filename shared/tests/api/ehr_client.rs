//! The OpenEMR client against a fake OpenEMR that behaves like the real one: token rotation,
//! id resolution, the SOAP-note rules, and the faults a network produces.

use std::{sync::Arc, time::Duration};

use mmt_core::{
    adapters::{
        Database, SqliteEhrConnectionStore,
        openemr::{CONNECTION, OpenEmrClient, OpenEmrConfig},
    },
    domain::{EhrError, NoteDelivery, NoteSection, TranscriptionId, delivery_marker, note_text},
    ports::{ConnectionState, EhrClient, EhrConnectionStore},
};
use mmt_testkit::openemr::{EmrFault, FakeOpenEmr};
use secrecy::SecretString;

const CLIENT_ID: &str = "mmt-client";
const FIRST_REFRESH: &str = "refresh-from-the-one-time-login";
const PATIENT: &str = "946da619-c631-431a-a282-487cd6fb7802";
const ENCOUNTER: &str = "946da61d-6b95-4f8e-abe5-534a25913b71";
const OTHER_PATIENT: &str = "946da619-0000-431a-a282-487cd6fb7803";
const OTHER_ENCOUNTER: &str = "946da61d-0000-4f8e-abe5-534a25913b72";

struct Setup {
    emr: FakeOpenEmr,
    store: Arc<SqliteEhrConnectionStore>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let emr = FakeOpenEmr::start(CLIENT_ID, FIRST_REFRESH).await.unwrap();
    emr.add_patient(PATIENT, 7, &[(ENCOUNTER, 42)]);
    emr.add_patient(OTHER_PATIENT, 8, &[(OTHER_ENCOUNTER, 43)]);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEhrConnectionStore::new(
        Database::open(&dir.path().join("mmt.db")).unwrap(),
        None,
    ));
    Setup {
        emr,
        store,
        _dir: dir,
    }
}

fn config(emr: &FakeOpenEmr, timeout: Duration) -> OpenEmrConfig {
    OpenEmrConfig {
        base_url: emr.base_url(),
        site: "default".into(),
        client_id: CLIENT_ID.into(),
        client_secret: None,
        scopes: "openid offline_access api:oemr user/soap_note.crus".into(),
        initial_refresh_token: Some(SecretString::from(FIRST_REFRESH)),
        password_login: None,
        timeout,
    }
}

fn client(s: &Setup, timeout: Duration) -> OpenEmrClient {
    OpenEmrClient::new(config(&s.emr, timeout), s.store.clone()).unwrap()
}

fn note(delivery: &str, encounter: &str, check_existing: bool) -> NoteDelivery {
    let marker = delivery_marker(delivery);
    NoteDelivery {
        delivery_id: uuid::Uuid::now_v7(),
        transcription_id: TranscriptionId::new(),
        patient_ref: PATIENT.into(),
        encounter_ref: encounter.into(),
        section: NoteSection::Subjective,
        text: note_text(
            "Patient reports two days of headache.",
            &TranscriptionId::new(),
            &marker,
        ),
        marker,
        check_existing,
    }
}

async fn stored_token(store: &SqliteEhrConnectionStore) -> Option<String> {
    store
        .load(CONNECTION)
        .await
        .unwrap()
        .map(|(token, _)| token)
}

#[tokio::test]
async fn the_rotated_refresh_token_is_stored_before_use_and_survives_a_restart() {
    let s = setup().await;
    let emr_client = client(&s, Duration::from_secs(5));
    let receipt = emr_client
        .deliver(&note("d1", ENCOUNTER, false))
        .await
        .unwrap();
    assert!(!receipt.found_existing);
    let notes = s.emr.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (notes[0].pid, notes[0].encounter),
        (7, 42),
        "uuids resolved to numeric ids"
    );
    assert_eq!(receipt.note_id, notes[0].id.to_string());
    assert!(notes[0].fields["subjective"].ends_with("[MMT delivery d1]"));

    // OpenEMR rotated the token; MMT holds exactly the one OpenEMR now honours.
    let rotated = stored_token(&s.store).await.unwrap();
    assert_ne!(rotated, FIRST_REFRESH);
    assert_eq!(Some(rotated.clone()), s.emr.current_refresh_token());

    // The access token is cached: a second note needs no new token.
    emr_client.deliver(&note("d2", "42", false)).await.unwrap();
    assert_eq!(s.emr.token_requests(), 1);

    // An expired access token: 401, one refresh, one retry.
    s.emr.expire_access_tokens();
    emr_client
        .deliver(&note("d3", ENCOUNTER, false))
        .await
        .unwrap();
    assert_eq!(s.emr.token_requests(), 2);
    assert_eq!(stored_token(&s.store).await, s.emr.current_refresh_token());

    // A restart: the stale token in the configuration is not used; the stored one is.
    let restarted = client(&s, Duration::from_secs(5));
    restarted
        .deliver(&note("d4", ENCOUNTER, false))
        .await
        .unwrap();
    assert_eq!(s.emr.notes().len(), 4);
    assert_eq!(stored_token(&s.store).await, s.emr.current_refresh_token());
}

#[tokio::test]
async fn two_processes_refreshing_at_once_both_succeed() {
    let s = setup().await;
    let (a, b) = (
        client(&s, Duration::from_secs(5)),
        client(&s, Duration::from_secs(5)),
    );
    let (note_a, note_b) = (note("a", ENCOUNTER, false), note("b", ENCOUNTER, false));
    let (first, second) = tokio::join!(a.deliver(&note_a), b.deliver(&note_b));
    first.unwrap();
    second.unwrap();
    assert_eq!(s.emr.notes().len(), 2);
    assert_eq!(stored_token(&s.store).await, s.emr.current_refresh_token());
}

#[tokio::test]
async fn invalid_grant_marks_the_connection_as_needing_a_login() {
    let s = setup().await;
    let emr_client = client(&s, Duration::from_secs(5));
    emr_client
        .deliver(&note("d1", ENCOUNTER, false))
        .await
        .unwrap();
    s.emr.revoke_refresh_token();
    s.emr.expire_access_tokens();
    let err = emr_client
        .deliver(&note("d2", ENCOUNTER, false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EhrError::NeedsLogin(ref r) if r.contains("invalid_grant")),
        "{err:?}"
    );
    let (_, state) = s.store.load(CONNECTION).await.unwrap().unwrap();
    assert!(
        matches!(state, ConnectionState::NeedsLogin { .. }),
        "{state:?}"
    );
    assert_eq!(emr_client.connection_state().await.unwrap(), Some(state));
    assert_eq!(s.emr.notes().len(), 1);
}

#[tokio::test]
async fn a_lost_answer_after_commit_is_found_by_its_marker_not_written_twice() {
    let s = setup().await;
    let emr_client = client(&s, Duration::from_secs(1));
    s.emr
        .fail_next_posts([EmrFault::CommitThenStall(Duration::from_secs(3))]);
    let err = emr_client
        .deliver(&note("once", ENCOUNTER, false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EhrError::Transient { ref reason, .. } if reason.contains("may have been written")),
        "{err:?}"
    );
    assert_eq!(s.emr.notes().len(), 1, "OpenEMR stored it anyway");
    // The retry looks first, and finds it.
    let receipt = emr_client
        .deliver(&note("once", ENCOUNTER, true))
        .await
        .unwrap();
    assert!(receipt.found_existing);
    assert_eq!(receipt.note_id, s.emr.notes()[0].id.to_string());
    assert_eq!(s.emr.notes().len(), 1);
}

#[tokio::test]
async fn faults_before_commit_are_transient_and_leave_nothing() {
    let s = setup().await;
    let emr_client = client(&s, Duration::from_secs(5));
    s.emr.fail_next_posts([
        EmrFault::ServerError,
        EmrFault::RateLimited { retry_after_s: 7 },
        EmrFault::ConnectionReset,
    ]);
    for expected_retry_after in [None, Some(Duration::from_secs(7)), None] {
        match emr_client.deliver(&note("x", ENCOUNTER, true)).await {
            Err(EhrError::Transient { retry_after, .. }) => {
                assert_eq!(retry_after, expected_retry_after)
            }
            other => panic!("expected a transient failure, got {other:?}"),
        }
        assert!(s.emr.notes().is_empty());
    }
    let receipt = emr_client
        .deliver(&note("x", ENCOUNTER, true))
        .await
        .unwrap();
    assert!(!receipt.found_existing);
    assert_eq!(s.emr.notes().len(), 1);
}

#[tokio::test]
async fn ids_are_checked_before_anything_is_written() {
    let s = setup().await;
    let emr_client = client(&s, Duration::from_secs(5));
    // Another patient's encounter.
    let err = emr_client
        .deliver(&note("d", OTHER_ENCOUNTER, false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EhrError::Permanent(ref r) if r.contains("does not belong")),
        "{err:?}"
    );
    // A numeric patient id cannot be checked.
    let mut numeric = note("d", "42", false);
    numeric.patient_ref = "7".into();
    assert!(matches!(
        emr_client.deliver(&numeric).await,
        Err(EhrError::Permanent(ref r)) if r.contains("uuid")
    ));
    // An unknown patient.
    let mut unknown = note("d", ENCOUNTER, false);
    unknown.patient_ref = "00000000-0000-4000-8000-000000000000".into();
    assert!(matches!(
        emr_client.deliver(&unknown).await,
        Err(EhrError::Permanent(_))
    ));
    // A field under OpenEMR's 2-character minimum is a permanent refusal (400).
    let mut tiny = note("d", ENCOUNTER, false);
    tiny.text = "a".into();
    assert!(
        matches!(emr_client.deliver(&tiny).await, Err(EhrError::Permanent(ref r)) if r.contains("400"))
    );
    assert!(s.emr.notes().is_empty());
}

#[tokio::test]
async fn without_a_login_the_connection_says_so() {
    let s = setup().await;
    let mut cfg = config(&s.emr, Duration::from_secs(5));
    cfg.initial_refresh_token = None;
    let emr_client = OpenEmrClient::new(cfg, s.store.clone()).unwrap();
    assert!(matches!(
        emr_client.deliver(&note("d", ENCOUNTER, false)).await,
        Err(EhrError::NeedsLogin(ref r)) if r.contains("OPENEMR_REFRESH_TOKEN")
    ));
}

#[tokio::test]
async fn the_password_grant_works_for_development() {
    let s = setup().await;
    s.emr.allow_password_grant("admin", "pass");
    let mut cfg = config(&s.emr, Duration::from_secs(5));
    cfg.initial_refresh_token = None;
    cfg.password_login = Some(("admin".into(), SecretString::from("pass")));
    let emr_client = OpenEmrClient::new(cfg.clone(), s.store.clone()).unwrap();
    emr_client
        .deliver(&note("d", ENCOUNTER, false))
        .await
        .unwrap();
    cfg.password_login = Some(("admin".into(), SecretString::from("wrong")));
    let refused = OpenEmrClient::new(cfg, s.store.clone()).unwrap();
    assert!(matches!(
        refused.deliver(&note("e", ENCOUNTER, false)).await,
        Err(EhrError::NeedsLogin(_))
    ));
}

/// Runs the OpenAPI check on `requests`; `(passed, output)`.
fn validate_against_openemr_spec(requests: &serde_json::Value) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("requests.json");
    std::fs::write(&file, requests.to_string()).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(crate::helpers::tool_python("validators"))
        .arg(root.join("../scripts/validate-openapi-requests.py"))
        .arg(root.join("tests/fixtures/openemr/openemr-api-subset.yaml"))
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn what_mmt_sends_validates_against_openemrs_published_openapi_description() {
    let s = setup().await;
    let emr_client = client(&s, Duration::from_secs(5));
    emr_client
        .deliver(&note("v1", ENCOUNTER, false))
        .await
        .unwrap();
    emr_client.deliver(&note("v1", "42", true)).await.unwrap();
    let captured = serde_json::to_value(s.emr.requests()).unwrap();
    let methods: Vec<&str> = captured
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert!(
        methods.contains(&"POST") && methods.contains(&"GET"),
        "{captured}"
    );
    let (passed, output) = validate_against_openemr_spec(&captured);
    assert!(passed, "{output}");
    assert!(output.lines().all(|l| l.starts_with("ok")), "{output}");

    // The control: the same check refuses what the description does not allow.
    let wrong = serde_json::json!([
        {"method": "POST", "path": "/api/patient/7/encounter/42/soap_note",
         "content_type": "application/json", "body": {"note": "free text"}},
        {"method": "POST", "path": "/api/patient/7/encounter/42/soap_note",
         "content_type": "text/plain", "body": null},
        {"method": "PUT", "path": "/api/patient/7/encounter/42/soap_note",
         "content_type": "application/json", "body": {"subjective": "x"}},
    ]);
    let (passed, output) = validate_against_openemr_spec(&wrong);
    assert!(!passed, "{output}");
    assert_eq!(
        output.lines().filter(|l| l.starts_with("FAIL")).count(),
        3,
        "{output}"
    );
}
