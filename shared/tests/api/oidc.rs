//! Sign-in with the clinic's identity provider, against a real, OpenID-certified provider
//! (oidc-provider from npm, `mmt_testkit::oidc`): discovery, the JWKS and its rotation,
//! expired and wrong-audience tokens, an issuer that is not configured, Keycloak- and
//! Entra-style role claims, and records kept apart from MMT's own users.

use std::time::Duration;

use mmt_core::domain::TranscriptionId;
use mmt_testkit::oidc::{OidcClient, OidcProvider, signing_key};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

fn keycloak_clients() -> Vec<OidcClient> {
    vec![
        OidcClient::new(
            "ana",
            json!({"realm_access": {"roles": ["clinician", "offline_access"]}}),
        ),
        OidcClient::new(
            "porter",
            json!({"realm_access": {"roles": ["offline_access"]}}),
        ),
    ]
}

fn issuer(name: &str, provider: &OidcProvider, roles_claim: &str) -> Value {
    json!({"name": name, "issuer": provider.issuer(), "audience": "mmt-api",
           "roles_claim": roles_claim, "jwks_cache_secs": 2, "clock_skew_secs": 0})
}

async fn app_trusting(issuers: &[Value]) -> TestApp {
    let config = Value::Array(issuers.to_vec()).to_string();
    spawn_app_with(&[("OIDC_ISSUERS", config.as_str())]).await
}

async fn owner_of(app: &TestApp, id: &str) -> String {
    let id: TranscriptionId = id.parse().unwrap();
    app.state
        .records
        .get(&id)
        .await
        .unwrap()
        .unwrap()
        .owner
        .as_str()
        .to_owned()
}

#[tokio::test]
async fn a_providers_tokens_are_verified_by_its_keys_and_mapped_by_its_roles() {
    let keycloak = OidcProvider::start(&[signing_key("kc-1").await.unwrap()], &keycloak_clients())
        .await
        .unwrap();
    let entra = OidcProvider::start(
        &[signing_key("entra-1").await.unwrap()],
        &[OidcClient::new("ana", json!({"roles": ["clinician"]}))],
    )
    .await
    .unwrap();
    let stranger = OidcProvider::start(&[signing_key("x-1").await.unwrap()], &keycloak_clients())
        .await
        .unwrap();
    let app = app_trusting(&[
        issuer("kc", &keycloak, "realm_access.roles"),
        issuer("entra", &entra, "roles"),
    ])
    .await;

    // Keycloak's layout: realm roles → a clinician's scopes; the owner is the issuer's.
    let ana = keycloak.token("ana", "urn:mmt:api").await.unwrap();
    let id = app.upload_wav(&ana).await;
    assert_eq!(owner_of(&app, &id).await, "oidc:kc:ana");
    assert_eq!(
        app.get(&ana, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        200
    );
    // Entra's layout: app roles in `roles`; the same `sub` at another issuer is someone else.
    let entra_ana = entra.token("ana", "urn:mmt:api").await.unwrap();
    let entra_id = app.upload_wav(&entra_ana).await;
    assert_eq!(owner_of(&app, &entra_id).await, "oidc:entra:ana");
    assert_eq!(
        app.get(&entra_ana, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        404
    );
    // MMT's own user "ana" is a third person: neither sees the other's records.
    let local_ana = app.clinician_token("ana");
    assert_eq!(
        app.get(&local_ana, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        404
    );
    let local_id = app.upload_wav(&local_ana).await;
    assert_eq!(
        app.get(&ana, &format!("/v1/transcriptions/{local_id}"))
            .await
            .status(),
        404
    );

    // A user without a mapped role is known but may do nothing.
    let porter = keycloak.token("porter", "urn:mmt:api").await.unwrap();
    assert_eq!(app.get(&porter, "/v1/transcriptions").await.status(), 403);
    // A token for another API, a token from an issuer not configured: refused.
    let elsewhere = keycloak.token("ana", "urn:other:api").await.unwrap();
    assert_eq!(
        app.get(&elsewhere, "/v1/transcriptions").await.status(),
        401
    );
    let foreign = stranger.token("ana", "urn:mmt:api").await.unwrap();
    assert_eq!(app.get(&foreign, "/v1/transcriptions").await.status(), 401);
    // Cognito's layout: no `aud` in access tokens, the app client in `client_id`.
    let cognito = app_trusting(&[json!({"name": "cognito", "issuer": keycloak.issuer(),
        "audience": "ana", "audience_claim": "client_id", "roles_claim": "realm_access.roles"})])
    .await;
    assert_eq!(cognito.get(&ana, "/v1/transcriptions").await.status(), 200);
    let other_client = keycloak.token("porter", "urn:mmt:api").await.unwrap();
    assert_eq!(
        cognito
            .get(&other_client, "/v1/transcriptions")
            .await
            .status(),
        401
    );
    // A token one issuer signed, presented as another's (its `iss` rewritten): refused.
    let forged = {
        let parts: Vec<&str> = ana.split('.').collect();
        use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["iss"] = json!(entra.issuer());
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        )
    };
    assert_eq!(app.get(&forged, "/v1/transcriptions").await.status(), 401);
    // An expired token (one-second lifetime, no clock skew allowed here).
    let short = keycloak.token("ana", "urn:mmt:api:short").await.unwrap();
    assert_eq!(app.get(&short, "/v1/transcriptions").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.get(&short, "/v1/transcriptions").await.status(), 401);
}

#[tokio::test]
async fn a_key_rotation_is_followed_without_a_restart() {
    let (old, new) = (
        signing_key("k-old").await.unwrap(),
        signing_key("k-new").await.unwrap(),
    );
    let mut provider = OidcProvider::start(std::slice::from_ref(&old), &keycloak_clients())
        .await
        .unwrap();
    let app = app_trusting(&[issuer("kc", &provider, "realm_access.roles")]).await;
    let before = provider.token("ana", "urn:mmt:api").await.unwrap();
    assert_eq!(app.get(&before, "/v1/transcriptions").await.status(), 200);

    // The new key is published beside the old one and signs from now on.
    provider
        .restart_with_keys(&[new.clone(), old])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = provider.token("ana", "urn:mmt:api").await.unwrap();
    assert_eq!(
        app.get(&after, "/v1/transcriptions").await.status(),
        200,
        "an unknown kid fetches the keys again"
    );
    assert_eq!(
        app.get(&before, "/v1/transcriptions").await.status(),
        200,
        "old tokens verify while the old key is published"
    );

    // The old key is withdrawn: once the cached set ages out, its tokens stop verifying.
    provider.restart_with_keys(&[new]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.get(&before, "/v1/transcriptions").await.status(), 401);
    assert_eq!(app.get(&after, "/v1/transcriptions").await.status(), 200);

    // The provider goes down: the keys it published keep verifying from the cache after it
    // has aged out, rather than every user being refused during the outage.
    provider.stop().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.get(&after, "/v1/transcriptions").await.status(), 200);
}

#[tokio::test]
async fn issuers_are_checked_at_start_up() {
    let bad = [
        r#"[{"name":"kc","issuer":"not a url","audience":"a"}]"#,
        r#"[{"name":"KC!","issuer":"https://id.example.org","audience":"a"}]"#,
        r#"[{"name":"kc","issuer":"https://id.example.org","audience":"a","algorithms":["HS256"]}]"#,
        r#"[{"name":"kc","issuer":"https://id.example.org","audience":"a","role_scopes":{"x":["root"]}}]"#,
        r#"[{"name":"kc","issuer":"https://a.example.org","audience":"a"},{"name":"kc","issuer":"https://b.example.org","audience":"a"}]"#,
    ];
    for raw in bad {
        let config = mmt_core::config::Config::from_map(
            &[("OIDC_ISSUERS", raw)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        );
        assert!(
            config.unwrap_err().to_string().contains("OIDC_ISSUERS"),
            "{raw}"
        );
    }
}
