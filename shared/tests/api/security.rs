//! Tokens, scopes, the admin key and the audit trail, through the HTTP API.

use serde_json::Value;

use crate::helpers::{TestApp, spawn_app_with, tone};

pub(crate) const ADMIN_KEY: &str = "admin-key-admin-key-admin-key-admin-key-0123";
const FILE_NAME: &str = "ortega-neurology-followup.wav";
const PHRASE: &str = "Valentina Ortega has had no seizures since March";

async fn post_json(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn admin_token(app: &TestApp) -> String {
    let (status, body) = post_json(
        app,
        "/auth/admin",
        serde_json::json!({"api_key": ADMIN_KEY}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "admin");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn rsa_tokens_verify_and_the_jwks_publishes_the_public_key_only() {
    let (private, _) = mmt_core::auth::generate_rsa_pems().unwrap();
    let app = spawn_app_with(&[
        ("USE_RSA_INTERNAL_JWT", "1"),
        ("INTERNAL_JWT_PRIVATE_KEY_PEM", &private),
    ])
    .await;
    let token = app.guest_token().await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let (status, _) = app.get_json(&token, "/v1/transcriptions").await;
    assert_eq!(status, 200);

    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"].as_str(), header.kid.as_deref());
    assert_eq!(
        (keys[0]["kty"].as_str(), keys[0]["alg"].as_str()),
        (Some("RSA"), Some("RS256"))
    );
    for private_part in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(
            keys[0].get(private_part).is_none(),
            "{private_part} published"
        );
    }
    // The key published verifies the token: what a relying party would do.
    let n = keys[0]["n"].as_str().unwrap();
    let e = keys[0]["e"].as_str().unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["mmt-api"]);
    jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_rsa_components(n, e).unwrap(),
        &validation,
    )
    .unwrap();

    // Algorithm confusion over HTTP: HS256 signed with the published key material.
    let mut forged_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    forged_header.kid = header.kid.clone();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode::<Value>(&token)
        .unwrap()
        .claims;
    for secret in [n.as_bytes(), jwks.to_string().as_bytes()] {
        let forged = jsonwebtoken::encode(
            &forged_header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap();
        let response = app.get(&forged, "/v1/transcriptions").await;
        assert_eq!(response.status(), 401);
        let body = response.text().await.unwrap();
        assert!(!body.contains("HS256") && !body.contains("kid"), "{body}");
    }
}

#[tokio::test]
async fn with_hs256_the_jwks_is_empty() {
    let app = spawn_app_with(&[]).await;
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, serde_json::json!({"keys": []}));
}

#[tokio::test]
async fn scopes_guests_cannot_administer_and_the_admin_key_is_checked() {
    let app = spawn_app_with(&[("ADMIN_API_KEY", ADMIN_KEY)]).await;
    let guest = app.guest_token().await;
    let (status, body) = app.get_json(&guest, "/v1/admin/audit").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );

    let (status, body) =
        post_json(&app, "/auth/admin", serde_json::json!({"api_key": "guess"})).await;
    assert_eq!(status, 401);
    assert!(!body.to_string().contains(ADMIN_KEY));
    let admin = admin_token(&app).await;
    // The admin sees the trail, and no one's transcriptions.
    let (status, _) = app.get_json(&admin, "/v1/admin/audit").await;
    assert_eq!(status, 200);
    let (status, _) = app.get_json(&admin, "/v1/transcriptions").await;
    assert_eq!(status, 403);

    // Without a configured key, the route is closed.
    let closed = spawn_app_with(&[]).await;
    let (status, _) = post_json(
        &closed,
        "/auth/admin",
        serde_json::json!({"api_key": ADMIN_KEY}),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_audit_trail_records_who_did_what_and_never_the_content() {
    let app = spawn_app_with(&[("ADMIN_API_KEY", ADMIN_KEY)]).await;
    app.openai.set_transcript(PHRASE);
    let owner = app.guest_token().await;
    let stranger = app.guest_token().await;
    let response = app
        .upload(
            &owner,
            tone(),
            FILE_NAME,
            &[("prompt", "levetiracetam Ortega")],
        )
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_jobs().await;
    assert_eq!(
        app.get(&owner, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        200
    );
    let download = format!("/v1/transcriptions/{id}/transcript?format=txt");
    assert_eq!(app.get(&owner, &download).await.status(), 200);
    assert_eq!(
        app.get(&stranger, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.delete(&owner, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        204
    );
    let (status, _) = post_json(&app, "/auth/admin", serde_json::json!({"api_key": "wrong"})).await;
    assert_eq!(status, 401);

    let admin = admin_token(&app).await;
    let (status, body) = app
        .get_json(&admin, &format!("/v1/admin/audit?record_id={id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().unwrap();
    let seen: Vec<(String, String, String)> = events
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
                e["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let subject = |token: &str| -> String {
        jsonwebtoken::dangerous::insecure_decode::<Value>(token)
            .unwrap()
            .claims["sub"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (o, s) = (subject(&owner), subject(&stranger));
    let expected = [
        ("create", "success", &o),
        ("read", "success", &o),
        ("download", "success", &o),
        ("read", "denied", &s),
        ("delete", "success", &o),
    ]
    .map(|(a, r, who)| (a.to_owned(), r.to_owned(), who.clone()));
    assert_eq!(seen, expected);
    for event in events {
        assert!(
            event["correlation_id"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        );
        assert!(event["at"].as_str().is_some());
    }

    // Logins, by outcome; the admin's own queries are on the trail too.
    let (_, logins) = app
        .get_json(&admin, "/v1/admin/audit?action=login&limit=1000")
        .await;
    let logins = logins["events"].as_array().unwrap();
    let count = |subject: &str, outcome: &str| {
        logins
            .iter()
            .filter(|e| e["subject"] == subject && e["outcome"] == outcome)
            .count()
    };
    assert_eq!(count(&o, "success"), 1);
    assert_eq!(count("admin", "denied"), 1);
    assert_eq!(count("admin", "success"), 1);
    let (_, queries) = app
        .get_json(&admin, "/v1/admin/audit?action=audit_query")
        .await;
    assert!(!queries["events"].as_array().unwrap().is_empty());

    // The whole trail, as text, holds none of the content.
    let (_, all) = app.get_json(&admin, "/v1/admin/audit?limit=1000").await;
    let text = all.to_string();
    for secret in [
        "Ortega",
        "levetiracetam",
        "seizures",
        "neurology",
        owner.as_str(),
        ADMIN_KEY,
    ] {
        assert!(!text.contains(secret), "the audit trail holds {secret:?}");
    }

    // Bad filters are 400s, not 500s.
    for query in [
        "since=yesterday",
        "limit=0",
        "action=dance",
        "record_id=../../etc",
        "since=2020-01-01T00:00:00Z",
    ] {
        let (status, _) = app
            .get_json(&admin, &format!("/v1/admin/audit?{query}"))
            .await;
        assert_eq!(status, 400, "{query}");
    }
}

#[tokio::test]
async fn the_trail_survives_the_deletion_of_the_records_database() {
    let app = spawn_app_with(&[("ADMIN_API_KEY", ADMIN_KEY)]).await;
    let token = app.guest_token().await;
    app.upload_wav(&token).await;
    let audit_file = app.dir.path().join("audit.db");
    assert!(audit_file.exists(), "the trail has its own file");
    assert_ne!(audit_file, app.dir.path().join("mmt.db"));
    let admin = admin_token(&app).await;
    let (_, body) = app.get_json(&admin, "/v1/admin/audit?action=create").await;
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn without_stored_phi_the_transcript_goes_after_the_delivery_window() {
    use std::sync::Arc;

    use chrono::{Duration, Utc};
    use mmt_core::ports::ManualClock;

    let clock = Arc::new(ManualClock::new(Utc::now()));
    let app = {
        let clock = clock.clone();
        crate::helpers::spawn_app_customised(
            &[
                ("STORE_PHI", "false"),
                ("PHI_DELIVERY_WINDOW_MINUTES", "30"),
            ],
            move |state| state.clock = clock,
        )
        .await
    };
    app.openai.set_transcript(PHRASE);
    let token = app.guest_token().await;
    let response = app.upload(&token, tone(), FILE_NAME, &[]).await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.drain_jobs().await;
    // Delivered: the transcript is there, the audio and the file name are not.
    let (status, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!((status, record["text"].as_str()), (200, Some(PHRASE)));
    assert!(record["file_name"].is_null());
    assert!(app.audio_files().is_empty());

    clock.advance(Duration::minutes(29));
    assert_eq!(
        app.state.retention().sweep().await.unwrap().deleted_records,
        0
    );
    clock.advance(Duration::minutes(2));
    assert_eq!(
        app.state.retention().sweep().await.unwrap().deleted_records,
        1
    );
    assert_eq!(
        app.get(&token, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        404
    );
}

/// An audit trail that refuses every event (its table throttled, its disk full).
struct BrokenAuditLog;

#[async_trait::async_trait]
impl mmt_core::ports::AuditLog for BrokenAuditLog {
    async fn append(
        &self,
        _event: &mmt_core::domain::AuditEvent,
    ) -> Result<(), mmt_core::ports::AuditError> {
        Err(mmt_core::ports::AuditError::Unavailable(
            "audit store throttled".into(),
        ))
    }

    async fn query(
        &self,
        _query: &mmt_core::domain::AuditQuery,
    ) -> Result<Vec<mmt_core::domain::AuditEvent>, mmt_core::ports::AuditError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn no_transcript_is_shown_when_its_reading_cannot_be_audited() {
    let app = crate::helpers::spawn_app_customised(&[], |state| {
        state.audit = std::sync::Arc::new(BrokenAuditLog);
    })
    .await;
    app.openai.set_transcript(PHRASE);
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    app.drain_jobs().await;
    for path in [
        format!("/v1/transcriptions/{id}"),
        format!("/v1/transcriptions/{id}/transcript?format=txt"),
        "/v1/transcriptions".to_owned(),
    ] {
        let response = app.get(&token, &path).await;
        assert_eq!(response.status(), 503, "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("Valentina"), "{path}: {body}");
    }
}

#[tokio::test]
async fn listings_are_audited_by_count() {
    let app = spawn_app_with(&[]).await;
    let token = app.guest_token().await;
    app.upload_wav(&token).await;
    let (status, _) = app.get_json(&token, "/v1/transcriptions").await;
    assert_eq!(status, 200);
    let events = app
        .state
        .audit
        .query(&mmt_core::domain::AuditQuery {
            since: chrono::Utc::now() - chrono::Duration::minutes(5),
            until: chrono::Utc::now() + chrono::Duration::minutes(1),
            subject: None,
            record_id: None,
            action: Some(mmt_core::domain::AuditAction::Read),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].detail.as_deref(), Some("listed 1 records"));
    assert_eq!(events[0].record_id, None);
}

/// The trail is tamper-evident (security review, item 9): each process links what it writes
/// into a hash chain, and `GET /v1/admin/audit/verify` finds an event changed, removed or
/// inserted by someone with write access to the store (here, to the SQLite file, triggers
/// dropped).
#[tokio::test]
async fn a_changed_or_removed_audit_event_breaks_the_chain_where_it_happened() {
    let app = spawn_app_with(&[("ADMIN_API_KEY", ADMIN_KEY)]).await;
    for _ in 0..3 {
        let token = app.guest_token().await;
        assert_eq!(app.get(&token, "/v1/transcriptions").await.status(), 200);
    }
    let admin = admin_token(&app).await;
    let (status, report) = app.get_json(&admin, "/v1/admin/audit/verify").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert!(report["events"].as_u64().unwrap() >= 6, "{report}");
    assert_eq!(report["writers"], 1);

    // Someone with the file: the triggers go, one event is rewritten, another removed.
    let audit = rusqlite::Connection::open(app.dir.path().join("audit.db")).unwrap();
    audit
        .execute_batch(
            "DROP TRIGGER audit_events_no_update;
             DROP TRIGGER audit_events_no_delete;
             UPDATE audit_events SET subject = 'user:someone-else'
                 WHERE seq = (SELECT min(seq) FROM audit_events WHERE action = 'login');
             DELETE FROM audit_events WHERE seq = (SELECT max(seq) - 1 FROM audit_events);",
        )
        .unwrap();
    drop(audit);
    let (_, report) = app.get_json(&admin, "/v1/admin/audit/verify").await;
    let problems: Vec<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("does not match its hash")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("missing")),
        "{problems:?}"
    );
}
