//! The patient picker: `GET /v1/ehr/patients?q=` and `GET /v1/ehr/patients/{id}/encounters`
//! against OpenEMR 7.0.x and 8.x (its FHIR patient search, its standard encounter list) and a
//! plain FHIR R4 server; scoped, audited by count, rate-limited.

use chrono::{Duration, Utc};
use mmt_core::{
    auth::Scope,
    domain::{AuditAction, AuditQuery, OwnerId},
};
use mmt_testkit::openemr::{FakeEncounter, FakeOpenEmr, FakePatient, OpenEmrVersion};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app_with};

const VALENTINA: &str = "946da619-c631-431a-a282-487cd6fb7802";

fn encounter(uuid: &str, eid: u64, date: &str, reason: &str) -> FakeEncounter {
    FakeEncounter {
        uuid: uuid.into(),
        eid,
        date: date.into(),
        reason: reason.into(),
    }
}

async fn emr(version: OpenEmrVersion) -> FakeOpenEmr {
    let emr = FakeOpenEmr::start_as(version, "mmt-client", "refresh-1")
        .await
        .unwrap();
    emr.add(FakePatient {
        uuid: VALENTINA.into(),
        pid: 7,
        fname: "Valentina".into(),
        lname: "Ortega".into(),
        dob: "1984-03-02".into(),
        pubpid: "MRN-1042".into(),
        encounters: vec![
            encounter(
                "946da61d-0001-4f8e-abe5-534a25913b71",
                40,
                "2026-10-02 09:15:00",
                "Migraine",
            ),
            encounter(
                "946da61d-0002-4f8e-abe5-534a25913b71",
                45,
                "2026-12-05 14:30:00",
                "Follow-up headache",
            ),
            encounter(
                "946da61d-0003-4f8e-abe5-534a25913b71",
                41,
                "2026-11-12 08:00:00",
                "Blood pressure check",
            ),
        ],
    });
    emr.add(FakePatient {
        uuid: "946da619-0000-431a-a282-487cd6fb7803".into(),
        pid: 8,
        fname: "Maria".into(),
        lname: "Ortiz".into(),
        dob: "1990-07-21".into(),
        pubpid: "MRN-2077".into(),
        encounters: Vec::new(),
    });
    emr.add(FakePatient {
        uuid: "946da619-1111-431a-a282-487cd6fb7804".into(),
        pid: 9,
        fname: "John".into(),
        lname: "Smith".into(),
        dob: "1955-01-30".into(),
        pubpid: "MRN-3001".into(),
        encounters: Vec::new(),
    });
    emr
}

async fn app_for(emr: &FakeOpenEmr, extra: &[(&str, &str)]) -> TestApp {
    let base = emr.base_url();
    let mut env = vec![
        ("EHR_TARGET", "openemr"),
        ("OPENEMR_BASE_URL", base.as_str()),
        ("OPENEMR_CLIENT_ID", "mmt-client"),
        ("OPENEMR_REFRESH_TOKEN", "refresh-1"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

fn names(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = body["patients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_clinician_finds_the_patient_by_name_birth_date_or_record_number() {
    for version in [OpenEmrVersion::V7, OpenEmrVersion::V8] {
        let emr = emr(version).await;
        let app = app_for(&emr, &[]).await;
        let ana = app.clinician_token("ana");
        let (status, found) = app.get_json(&ana, "/v1/ehr/patients?q=ort").await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(names(&found), ["Ortega, Valentina", "Ortiz, Maria"]);
        let (_, one) = app.get_json(&ana, "/v1/ehr/patients?q=Val%20Ort").await;
        assert_eq!(names(&one), ["Ortega, Valentina"]);
        assert_eq!(one["patients"][0]["id"], VALENTINA);
        assert_eq!(one["patients"][0]["birth_date"], "1984-03-02");
        assert_eq!(one["patients"][0]["record_number"], "MRN-1042");
        let (_, by_date) = app.get_json(&ana, "/v1/ehr/patients?q=1955-01-30").await;
        assert_eq!(names(&by_date), ["Smith, John"]);
        let (_, by_number) = app.get_json(&ana, "/v1/ehr/patients?q=MRN-2077").await;
        assert_eq!(names(&by_number), ["Ortiz, Maria"]);
        let (_, none) = app.get_json(&ana, "/v1/ehr/patients?q=zz").await;
        assert_eq!(none["patients"], serde_json::json!([]));

        // Encounters newest first, with date and reason; the id is what the push takes.
        let (status, list) = app
            .get_json(&ana, &format!("/v1/ehr/patients/{VALENTINA}/encounters"))
            .await;
        assert_eq!(status, 200, "{list}");
        let reasons: Vec<&str> = list["encounters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["reason"].as_str().unwrap())
            .collect();
        assert_eq!(
            reasons,
            ["Follow-up headache", "Blood pressure check", "Migraine"]
        );
        assert_eq!(
            list["encounters"][0]["id"],
            "946da61d-0002-4f8e-abe5-534a25913b71"
        );
        assert_eq!(list["encounters"][0]["number"], "45");
        // A patient without encounters (OpenEMR answers 404): an empty list.
        let (status, empty) = app
            .get_json(
                &ana,
                "/v1/ehr/patients/946da619-0000-431a-a282-487cd6fb7803/encounters",
            )
            .await;
        assert_eq!(
            (status, &empty["encounters"]),
            (200, &serde_json::json!([]))
        );
        // A patient OpenEMR does not know.
        let (status, _) = app
            .get_json(
                &ana,
                "/v1/ehr/patients/00000000-0000-4000-8000-000000000000/encounters",
            )
            .await;
        assert_eq!(status, 404, "{version:?}");
    }
}

#[tokio::test]
async fn look_ups_are_scoped_checked_audited_by_count_and_limited() {
    let emr = emr(OpenEmrVersion::V7).await;
    let app = app_for(&emr, &[("EHR_LOOKUPS_PER_MINUTE", "4")]).await;
    // Without ehr:push (a reader), no directory.
    let reader = app
        .state
        .tokens
        .issue(&OwnerId::for_user("rea").unwrap(), &[Scope::Read])
        .unwrap()
        .access_token;
    assert_eq!(
        app.get(&reader, "/v1/ehr/patients?q=ort").await.status(),
        403
    );
    let ana = app.clinician_token("ana");
    for bad in ["", "o", "x%27%3B%20drop", "../etc"] {
        let response = app.get(&ana, &format!("/v1/ehr/patients?q={bad}")).await;
        assert_eq!(response.status(), 400, "{bad:?}");
    }
    assert_eq!(
        app.get(&ana, "/v1/ehr/patients/..%2F..%2Fadmin/encounters")
            .await
            .status(),
        400
    );
    for _ in 0..4 {
        assert_eq!(app.get(&ana, "/v1/ehr/patients?q=ort").await.status(), 200);
    }
    let limited = app.get(&ana, "/v1/ehr/patients?q=ort").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    // Another clinician has their own allowance.
    let bo = app.clinician_token("bo");
    assert_eq!(app.get(&bo, "/v1/ehr/patients?q=smi").await.status(), 200);

    let events = app
        .state
        .audit
        .query(&AuditQuery {
            since: Utc::now() - Duration::minutes(5),
            until: Utc::now() + Duration::minutes(1),
            subject: None,
            record_id: None,
            action: Some(AuditAction::EhrLookup),
            limit: 20,
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e.detail.as_deref() == Some("patient search: 2 found"))
    );
    let trail = format!("{events:?}");
    for phi in ["Ortega", "Ortiz", "ort", "MRN", "1984"] {
        assert!(!trail.contains(phi), "the trail names {phi}");
    }
}

#[tokio::test]
async fn a_fhir_server_answers_the_same_picker() {
    // OpenEMR's FHIR endpoint as a plain FHIR R4 server, with a token from its OAuth server.
    let emr = emr(OpenEmrVersion::V8).await;
    emr.allow_password_grant("admin", "pass");
    let token: Value = reqwest::Client::new()
        .post(format!("{}/oauth2/default/token", emr.base_url()))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "mmt-client"),
            ("username", "admin"),
            ("password", "pass"),
            (
                "scope",
                "openid api:fhir user/Patient.read user/Encounter.read",
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let base = format!("{}/apis/default/fhir", emr.base_url());
    let bearer = token["access_token"].as_str().unwrap().to_owned();
    let app = spawn_app_with(&[
        ("EHR_TARGET", "fhir"),
        ("FHIR_BASE_URL", base.as_str()),
        ("FHIR_BEARER_TOKEN", bearer.as_str()),
    ])
    .await;
    let ana = app.clinician_token("ana");
    let (status, found) = app.get_json(&ana, "/v1/ehr/patients?q=ortega").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(names(&found), ["Ortega, Valentina"]);
    let (_, list) = app
        .get_json(&ana, &format!("/v1/ehr/patients/{VALENTINA}/encounters"))
        .await;
    let dates: Vec<&str> = list["encounters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["date"].as_str().unwrap())
        .collect();
    assert_eq!(
        dates,
        [
            "2026-12-05T14:30:00",
            "2026-11-12T08:00:00",
            "2026-10-02T09:15:00"
        ]
    );
}
