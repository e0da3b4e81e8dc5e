//! The FHIR R4 target: a DocumentReference per delivery, created conditionally so a retry
//! after a lost answer never duplicates it, and valid FHIR R4 by the fhir.resources models.

use std::time::Duration;

use mmt_core::jobs::run_ehr_once;
use mmt_testkit::fhir::FakeFhirServer;
use serde_json::{Value, json};

use crate::helpers::{spawn_app_with, tone};

const PATIENT: &str = "pat-123";
const ENCOUNTER: &str = "enc-456";
const PHRASE: &str = "Patient reports intermittent chest tightness";

/// Runs the FHIR R4 validator on `resources`; `(passed, output)`.
fn validate_r4(resources: &Value) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resources.json");
    std::fs::write(&file, resources.to_string()).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/validate-fhir.py");
    let out = std::process::Command::new(crate::helpers::tool_python("validators"))
        .arg(script)
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
async fn a_retried_create_does_not_duplicate_and_the_document_is_valid_fhir_r4() {
    let fhir = FakeFhirServer::start().await.unwrap();
    let base = fhir.base_url();
    let app = spawn_app_with(&[
        ("EHR_TARGET", "fhir"),
        ("FHIR_BASE_URL", base.as_str()),
        ("EHR_TIMEOUT_SECS", "1"),
    ])
    .await;
    app.openai.set_transcript(PHRASE);
    let token = app.clinician_token("ana");
    let response = app.upload(&token, tone(), "visit.wav", &[]).await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_jobs().await;

    // The first create is stored but its answer is lost.
    fhir.stall_next_create(Duration::from_secs(3));
    let response = app
        .client
        .post(app.url(&format!("/v1/transcriptions/{id}/ehr")))
        .bearer_auth(&token)
        .json(&json!({"patient_id": PATIENT, "encounter_id": ENCOUNTER, "target": "fhir"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let mut rounds = 0;
    loop {
        match run_ehr_once(&app.state).await {
            Some(mmt_core::jobs::Disposition::Ack) => break,
            Some(_) | None => {
                rounds += 1;
                assert!(rounds < 100, "the delivery did not settle");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let resources = fhir.resources();
    assert_eq!(resources.len(), 1, "the retry found the first document");
    let (_, list) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}/ehr"))
        .await;
    let delivery = &list["deliveries"][0];
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["ehr"]["found_existing"], true);
    assert_eq!(delivery["ehr"]["note_id"], resources[0]["id"]);

    // What was sent: the transcript, the patient and encounter, MMT's identifiers.
    let doc = &resources[0];
    assert_eq!(doc["subject"]["reference"], format!("Patient/{PATIENT}"));
    assert_eq!(
        doc["context"]["encounter"][0]["reference"],
        format!("Encounter/{ENCOUNTER}")
    );
    assert_eq!(doc["identifier"][0]["value"], id);
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD
        .decode(doc["content"][0]["attachment"]["data"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8(text).unwrap().starts_with(PHRASE));

    let (valid, output) = validate_r4(&json!(resources));
    assert!(valid, "{output}");

    // The control: the validator refuses a broken DocumentReference.
    let mut broken = doc.clone();
    broken["status"] = json!("finished-ish");
    broken.as_object_mut().unwrap().remove("content");
    let (valid, output) = validate_r4(&json!([broken]));
    assert!(!valid, "{output}");
}
