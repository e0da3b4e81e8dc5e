//! The OpenEMR client against a fake OpenEMR that answers as OpenEMR 7.0.x and 8.x do (see
//! `mmt_testkit::openemr` for the source of each answer): token rotation, id resolution, the
//! SOAP-note rules, and the faults a network produces.

use std::{sync::Arc, time::Duration};

use mmt_core::{
    adapters::{
        Database, SqliteEhrConnectionStore,
        openemr::{CONNECTION, OpenEmrClient, OpenEmrConfig},
    },
    domain::{
        EhrError, EhrLogin, MAX_NOTE_BYTES, NoteDelivery, NoteSection, TranscriptionId,
        delivery_marker, note_fields,
    },
    ports::{ConnectionState, EhrClient, EhrConnectionStore},
};
use mmt_testkit::openemr::{EmrFault, FakeOpenEmr, OpenEmrVersion};
use secrecy::SecretString;

const CLIENT_ID: &str = "mmt-client";
const FIRST_REFRESH: &str = "refresh-from-the-one-time-login";
const PATIENT: &str = "946da619-c631-431a-a282-487cd6fb7802";
const ENCOUNTER: &str = "946da61d-6b95-4f8e-abe5-534a25913b71";
const OTHER_PATIENT: &str = "946da619-0000-431a-a282-487cd6fb7803";
const OTHER_ENCOUNTER: &str = "946da61d-0000-4f8e-abe5-534a25913b72";
/// The patient's encounter that already holds a note written in OpenEMR.
const SECOND_ENCOUNTER: &str = "946da61d-2222-4f8e-abe5-534a25913b73";

struct Setup {
    emr: FakeOpenEmr,
    store: Arc<SqliteEhrConnectionStore>,
    _dir: tempfile::TempDir,
}

const VERSIONS: [OpenEmrVersion; 2] = [OpenEmrVersion::V7, OpenEmrVersion::V8];
/// A patient with no encounters at all (OpenEMR answers their encounter list with 404).
const NEW_PATIENT: &str = "946da619-1111-431a-a282-487cd6fb7804";

async fn setup() -> Setup {
    setup_as(OpenEmrVersion::V7).await
}

async fn setup_as(version: OpenEmrVersion) -> Setup {
    let emr = FakeOpenEmr::start_as(version, CLIENT_ID, FIRST_REFRESH)
        .await
        .unwrap();
    emr.add_patient(PATIENT, 7, &[(ENCOUNTER, 42), (SECOND_ENCOUNTER, 44)]);
    emr.add_patient(OTHER_PATIENT, 8, &[(OTHER_ENCOUNTER, 43)]);
    emr.add_patient(NEW_PATIENT, 9, &[]);
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
        redirect_uri: None,
        timeout,
    }
}

fn client(s: &Setup, timeout: Duration) -> OpenEmrClient {
    OpenEmrClient::new(config(&s.emr, timeout), s.store.clone()).unwrap()
}

fn note(delivery: &str, encounter: &str, check_existing: bool) -> NoteDelivery {
    note_of(
        delivery,
        encounter,
        check_existing,
        &[(
            NoteSection::Subjective,
            "Patient reports two days of headache.",
        )],
    )
}

fn note_of(
    delivery: &str,
    encounter: &str,
    check_existing: bool,
    content: &[(NoteSection, &str)],
) -> NoteDelivery {
    let marker = delivery_marker(delivery);
    let content: Vec<(NoteSection, String)> = content
        .iter()
        .map(|(section, text)| (*section, (*text).to_owned()))
        .collect();
    NoteDelivery {
        delivery_id: uuid::Uuid::now_v7(),
        transcription_id: TranscriptionId::new(),
        patient_ref: PATIENT.into(),
        encounter_ref: encounter.into(),
        fields: note_fields(&content, &TranscriptionId::new(), &marker).unwrap(),
        marker,
        check_existing,
        login: EhrLogin::Shared,
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
async fn a_revoked_refresh_token_marks_the_connection_as_needing_a_login() {
    for version in VERSIONS {
        let s = setup_as(version).await;
        let emr_client = client(&s, Duration::from_secs(5));
        emr_client
            .deliver(&note("d1", ENCOUNTER, false))
            .await
            .unwrap();
        s.emr.revoke_refresh_token();
        s.emr.expire_access_tokens();
        // OpenEMR's OAuth server answers 401 invalid_request here, not 400 invalid_grant.
        let err = emr_client
            .deliver(&note("d2", ENCOUNTER, false))
            .await
            .unwrap_err();
        assert!(
            matches!(err, EhrError::NeedsLogin(ref r) if r.contains("revoked or expired")),
            "{version:?}: {err:?}"
        );
        let (_, state) = s.store.load(CONNECTION).await.unwrap().unwrap();
        assert!(
            matches!(state, ConnectionState::NeedsLogin { .. }),
            "{state:?}"
        );
        assert_eq!(
            emr_client
                .connection_state(&EhrLogin::Shared)
                .await
                .unwrap(),
            Some(state)
        );
        assert_eq!(s.emr.notes().len(), 1);
    }
}

#[tokio::test]
async fn a_lost_answer_after_commit_is_found_by_its_marker_not_written_twice() {
    // Both versions; an encounter without notes (the note list answers 404) and one that
    // already holds a note written in OpenEMR; the encounter named by uuid and by number.
    for version in VERSIONS {
        for (encounter, number, earlier) in [(ENCOUNTER, 42, false), (SECOND_ENCOUNTER, 44, true)] {
            for encounter_ref in [encounter.to_owned(), number.to_string()] {
                let s = setup_as(version).await;
                if earlier {
                    s.emr
                        .add_note(7, number, &[("subjective", "Seen by the nurse.")]);
                }
                let before = s.emr.notes().len();
                let emr_client = client(&s, Duration::from_secs(1));
                s.emr
                    .fail_next_posts([EmrFault::CommitThenStall(Duration::from_secs(3))]);
                let err = emr_client
                    .deliver(&note("once", &encounter_ref, false))
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, EhrError::Transient { ref reason, .. } if reason.contains("may have been written")),
                    "{err:?}"
                );
                assert_eq!(s.emr.notes().len(), before + 1, "OpenEMR stored it anyway");
                // The retry looks first, and finds it.
                let receipt = emr_client
                    .deliver(&note("once", &encounter_ref, true))
                    .await
                    .unwrap();
                let case = format!("{version:?}, encounter {encounter_ref}, earlier {earlier}");
                assert!(receipt.found_existing, "{case}");
                let notes = s.emr.notes();
                assert_eq!(notes.len(), before + 1, "{case}");
                assert_eq!(receipt.note_id, notes[before].id.to_string(), "{case}");
                assert_eq!((notes[before].pid, notes[before].encounter), (7, number));
            }
        }
    }
}

#[tokio::test]
async fn a_first_attempt_that_checks_an_encounter_without_notes_still_writes() {
    // The 404 an encounter without notes answers is "none yet", not a failure.
    for version in VERSIONS {
        let s = setup_as(version).await;
        let receipt = client(&s, Duration::from_secs(5))
            .deliver(&note("first", ENCOUNTER, true))
            .await
            .unwrap();
        assert!(!receipt.found_existing, "{version:?}");
        assert_eq!(s.emr.notes().len(), 1, "{version:?}");
    }
}

#[tokio::test]
async fn a_structured_note_fills_each_soap_field_and_a_retry_finds_it_by_the_last() {
    for version in VERSIONS {
        let s = setup_as(version).await;
        let emr_client = client(&s, Duration::from_secs(5));
        let content = [
            (NoteSection::Subjective, "Headache for two days."),
            (NoteSection::Objective, "Blood pressure 120 over 80."),
            (NoteSection::Assessment, "Tension headache."),
            (NoteSection::Plan, "Ibuprofen, review in a week."),
        ];
        emr_client
            .deliver(&note_of("soap", ENCOUNTER, false, &content))
            .await
            .unwrap();
        let notes = s.emr.notes();
        assert_eq!(notes.len(), 1);
        for (field, text) in &content[..3] {
            assert_eq!(notes[0].fields[field.as_str()], *text, "{version:?}");
        }
        assert!(notes[0].fields["plan"].starts_with("Ibuprofen, review in a week."));
        assert!(notes[0].fields["plan"].ends_with("[MMT delivery soap]"));
        let again = emr_client
            .deliver(&note_of("soap", ENCOUNTER, true, &content))
            .await
            .unwrap();
        assert!(again.found_existing);
        assert_eq!(s.emr.notes().len(), 1);
    }
}

#[tokio::test]
async fn a_long_non_ascii_transcript_is_cut_within_openemrs_byte_limit() {
    // 40,000 characters, mostly two-byte letters: under 65,535 characters, over 65,535
    // bytes, which is what OpenEMR counts.
    let long: String = "Пациентка жалуется на головную боль — ℞ ибупрофен. "
        .chars()
        .cycle()
        .take(40_000)
        .collect();
    assert!(long.len() > MAX_NOTE_BYTES);
    for version in VERSIONS {
        let s = setup_as(version).await;
        let receipt = client(&s, Duration::from_secs(5))
            .deliver(&note_of(
                "long",
                ENCOUNTER,
                false,
                &[(NoteSection::Plan, &long)],
            ))
            .await
            .unwrap();
        let notes = s.emr.notes();
        assert_eq!(notes.len(), 1, "{version:?}");
        assert_eq!(receipt.note_id, notes[0].id.to_string());
        let stored = &notes[0].fields["plan"];
        assert!(stored.len() <= MAX_NOTE_BYTES, "{} bytes", stored.len());
        assert!(stored.contains("Cut by MMT"), "the cut is announced");
        assert!(stored.ends_with("[MMT delivery long]"));
    }
}

#[tokio::test]
async fn faults_before_commit_are_transient_and_leave_nothing() {
    for version in VERSIONS {
        for (encounter, number, earlier) in [(ENCOUNTER, 42, false), (SECOND_ENCOUNTER, 44, true)] {
            let s = setup_as(version).await;
            if earlier {
                s.emr
                    .add_note(7, number, &[("subjective", "Seen by the nurse.")]);
            }
            let before = s.emr.notes().len();
            let emr_client = client(&s, Duration::from_secs(5));
            s.emr.fail_next_posts([
                EmrFault::ServerError,
                EmrFault::RateLimited { retry_after_s: 7 },
                EmrFault::ConnectionReset,
            ]);
            for expected_retry_after in [None, Some(Duration::from_secs(7)), None] {
                match emr_client.deliver(&note("x", encounter, true)).await {
                    Err(EhrError::Transient { retry_after, .. }) => {
                        assert_eq!(retry_after, expected_retry_after)
                    }
                    other => panic!("expected a transient failure, got {other:?}"),
                }
                assert_eq!(s.emr.notes().len(), before);
            }
            let receipt = emr_client
                .deliver(&note("x", encounter, true))
                .await
                .unwrap();
            assert!(!receipt.found_existing);
            assert_eq!(
                s.emr.notes().len(),
                before + 1,
                "{version:?}, earlier {earlier}"
            );
        }
    }
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
    // A patient without encounters (OpenEMR: 404 to the list).
    let mut newcomer = note("d", ENCOUNTER, false);
    newcomer.patient_ref = NEW_PATIENT.into();
    assert!(matches!(
        emr_client.deliver(&newcomer).await,
        Err(EhrError::Permanent(ref r)) if r.contains("does not belong")
    ));
    assert!(s.emr.notes().is_empty());
}

#[tokio::test]
async fn a_refused_note_is_a_permanent_failure_on_both_versions() {
    // A field under OpenEMR's 2-byte minimum: 7.0.x answers 400, 8.x 200 with the messages;
    // neither may count as delivered.
    for version in VERSIONS {
        let s = setup_as(version).await;
        let emr_client = client(&s, Duration::from_secs(5));
        let mut tiny = note("d", ENCOUNTER, false);
        tiny.fields = vec![(NoteSection::Subjective, "a".into())];
        let err = emr_client.deliver(&tiny).await.unwrap_err();
        assert!(
            matches!(err, EhrError::Permanent(ref r) if r.contains("subjective") && !r.contains(" a ")),
            "{version:?}: {err:?}"
        );
        assert!(s.emr.notes().is_empty());
    }
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
