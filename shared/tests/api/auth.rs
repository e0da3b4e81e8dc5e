use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::{
    helpers::{spawn_app, spawn_app_with},
    security::{ADMIN_KEY, admin_token},
};

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn guest_tokens_carry_the_standard_claims() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/auth/guest"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["iss"], "mmt");
    assert_eq!(c["aud"], "mmt-api");
    assert!(c["sub"].as_str().unwrap().starts_with("guest:"));
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, 3600);
    assert_eq!(c["scope"], "transcriptions:read transcriptions:write");
    // Two guests are two subjects.
    let other = app.guest_token().await;
    assert_ne!(claims(&other)["sub"], c["sub"]);
}

#[tokio::test]
async fn guest_sign_in_can_be_turned_off() {
    let app = spawn_app_with(&[("ALLOW_GUEST_AUTH", "false")]).await;
    let response = app
        .client
        .post(app.url("/auth/guest"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "guest_auth_disabled");
}

#[tokio::test]
async fn local_login_checks_argon2_hashes() {
    let hash = mmt_core::auth::hash_password("correct horse battery").unwrap();
    let users = format!("alice:{hash}");
    let app = spawn_app_with(&[("ALLOW_LOCAL_LOGIN", "true"), ("LOCAL_LOGIN_USERS", &users)]).await;
    let login = |username: &str, password: &str| {
        app.client
            .post(app.url("/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
    };
    let ok = login("alice", "correct horse battery").await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["sub"],
        "user:alice"
    );

    for (user, password) in [("alice", "wrong"), ("mallory", "correct horse battery")] {
        let response = login(user, password).await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_credentials");
    }

    let malformed = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
}

#[tokio::test]
async fn local_login_is_off_unless_enabled() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "a", "password": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn protected_routes_need_a_valid_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/v1/transcriptions"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    for bad in ["garbage", "a.b.c", &"x".repeat(5000)] {
        let response = app.get(bad, "/v1/transcriptions").await;
        assert_eq!(response.status(), 401, "{bad:.20}");
    }

    // A token signed with another secret is refused.
    let other = spawn_app_with(&[(
        "INTERNAL_JWT_SECRET",
        "another-secret-another-secret-another-1",
    )])
    .await;
    let foreign = other.guest_token().await;
    assert_eq!(app.get(&foreign, "/v1/transcriptions").await.status(), 401);
}

#[tokio::test]
async fn a_rotated_secret_keeps_its_tokens_valid_until_it_is_retired() {
    const NEW: &str = "a-new-signing-secret-for-rotation-0123456789";
    let before = spawn_app().await;
    let token = before.guest_token().await;

    let rotated = spawn_app_with(&[
        ("INTERNAL_JWT_SECRET", NEW),
        ("INTERNAL_JWT_OLD_SECRETS", crate::helpers::JWT_SECRET),
    ])
    .await;
    assert_eq!(
        rotated.get(&token, "/v1/transcriptions").await.status(),
        200
    );
    let fresh = rotated.guest_token().await;
    assert_eq!(
        before.get(&fresh, "/v1/transcriptions").await.status(),
        401,
        "a process without the new secret refuses its tokens"
    );

    let retired = spawn_app_with(&[("INTERNAL_JWT_SECRET", NEW)]).await;
    assert_eq!(
        retired.get(&token, "/v1/transcriptions").await.status(),
        401
    );
    assert_eq!(
        retired.get(&fresh, "/v1/transcriptions").await.status(),
        200
    );
}

#[tokio::test]
async fn callers_are_rate_limited_per_subject_with_headers_and_retry_after() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "4")]).await;
    let alice = app.guest_token().await; // 1 of 4 for this client address
    let mut remaining = Vec::new();
    for _ in 0..4 {
        let response = app.get(&alice, "/v1/transcriptions").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit"], "4");
        remaining.push(
            response.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["3", "2", "1", "0"]);
    let refused = app.get(&alice, "/v1/transcriptions").await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // Another subject has its own window; health checks are never limited.
    let bob = app.guest_token().await;
    assert_eq!(app.get(&bob, "/v1/transcriptions").await.status(), 200);
    for _ in 0..10 {
        app.assert_live().await;
    }

    // Anonymous calls count against the client address: two guest sign-ins used, two left.
    for _ in 0..2 {
        assert_eq!(
            app.client
                .post(app.url("/auth/guest"))
                .send()
                .await
                .unwrap()
                .status(),
            201
        );
    }
    let refused = app
        .client
        .post(app.url("/auth/guest"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn rate_limiting_is_off_when_set_to_zero() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "0")]).await;
    let token = app.guest_token().await;
    for _ in 0..30 {
        let response = app.get(&token, "/v1/transcriptions").await;
        assert_eq!(response.status(), 200);
        assert!(!response.headers().contains_key("x-ratelimit-limit"));
    }
}

/// Sign-out revokes (security review, item 5): the token is refused at once — by every
/// process sharing the store, the second app here — and `everywhere` revokes the subject's
/// other tokens too, while a token issued afterwards works.
#[tokio::test]
async fn sign_out_revokes_the_token_everywhere_at_once() {
    let hash = mmt_core::auth::hash_password("correct horse battery").unwrap();
    let users = format!("alice:{hash}");
    let settings = [
        ("ALLOW_LOCAL_LOGIN", "true"),
        ("LOCAL_LOGIN_USERS", users.as_str()),
        ("ADMIN_API_KEY", ADMIN_KEY),
    ];
    let app = spawn_app_with(&settings).await;
    // A second process on the same data directory: it reads the same revocations.
    let dir = app.dir.path().display().to_string();
    let mut other_settings = settings.to_vec();
    other_settings.push(("DATA_DIR", dir.as_str()));
    let other = spawn_app_with(&other_settings).await;
    let login = || async {
        let body: Value = app
            .client
            .post(app.url("/auth/login"))
            .json(&json!({"username": "alice", "password": "correct horse battery"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    };
    let status = |app: &crate::helpers::TestApp, token: String| {
        let request = app
            .client
            .get(app.url("/v1/transcriptions"))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let (first, second) = (login().await, login().await);
    assert_eq!(status(&other, first.clone()).await, 200);

    let signed_out = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 204);
    assert_eq!(
        status(&app, first.clone()).await,
        401,
        "refused where it signed out"
    );
    assert_eq!(
        status(&other, first.clone()).await,
        401,
        "and by the other process"
    );
    assert_eq!(
        status(&other, second.clone()).await,
        200,
        "other sessions go on"
    );

    let everywhere = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(&second)
        .json(&json!({"everywhere": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(everywhere.status(), 204);
    assert_eq!(status(&other, second).await, 401);
    // Tokens carry whole seconds: the next sign-in, a second later, is a new session.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(status(&app, login().await).await, 200);

    let (_, audit) = app
        .get_json(&admin_token(&app).await, "/v1/admin/audit?action=logout")
        .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "{audit}");
}

/// An admin token reads the whole audit trail: it lives 15 minutes at most, whatever
/// ACCESS_TOKEN_TTL_SECS says.
#[tokio::test]
async fn admin_tokens_are_short_lived() {
    let app = spawn_app_with(&[
        ("ACCESS_TOKEN_TTL_SECS", "28800"),
        ("ADMIN_API_KEY", ADMIN_KEY),
    ])
    .await;
    let guest = claims(&app.guest_token().await);
    assert_eq!(
        guest["exp"].as_u64().unwrap() - guest["iat"].as_u64().unwrap(),
        28800
    );
    let admin = claims(&admin_token(&app).await);
    assert_eq!(
        admin["exp"].as_u64().unwrap() - admin["iat"].as_u64().unwrap(),
        900
    );
}

/// Brute force against one account (security review, item 4): after LOGIN_MAX_FAILURES
/// wrong passwords the account refuses sign-in — even with the right password — until its
/// window ends, on every process sharing the store; other accounts sign in as usual.
#[tokio::test]
async fn an_account_is_locked_after_repeated_failures_and_others_are_not() {
    let hash = mmt_core::auth::hash_password("correct horse battery").unwrap();
    let users = format!("alice:{hash};bob:{hash}");
    let settings = [
        ("ALLOW_LOCAL_LOGIN", "true"),
        ("LOCAL_LOGIN_USERS", users.as_str()),
        ("LOGIN_MAX_FAILURES", "3"),
        ("RATE_LIMIT_PER_MINUTE", "1000"),
    ];
    let app = spawn_app_with(&settings).await;
    let dir = app.dir.path().display().to_string();
    let mut other_settings = settings.to_vec();
    other_settings.push(("DATA_DIR", dir.as_str()));
    let other = spawn_app_with(&other_settings).await;
    let login = |app: &crate::helpers::TestApp, user: &str, password: &str| {
        app.client
            .post(app.url("/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
    };
    // Three failures, spread over two processes.
    for target in [&app, &other, &app] {
        assert_eq!(login(target, "alice", "guess").await.unwrap().status(), 401);
    }
    for target in [&app, &other] {
        let locked = login(target, "alice", "correct horse battery")
            .await
            .unwrap();
        assert_eq!(locked.status(), 429);
        let retry_after: u64 = locked.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((800..=900).contains(&retry_after), "{retry_after}");
        let body: Value = locked.json().await.unwrap();
        assert_eq!(body["error"]["code"], "account_locked");
    }
    let bob = login(&other, "bob", "correct horse battery").await.unwrap();
    assert_eq!(bob.status(), 200, "another account is not affected");
}

/// The rate limit is counted in the shared store (security review, item 4): two processes
/// on one data directory together allow RATE_LIMIT_PER_MINUTE, not twice that.
#[tokio::test]
async fn the_rate_limit_holds_across_processes_sharing_a_store() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "10")]).await;
    let dir = app.dir.path().display().to_string();
    let other =
        spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "10"), ("DATA_DIR", dir.as_str())]).await;
    let token = app.guest_token().await;
    let mut statuses = Vec::new();
    for round in 0..6 {
        for target in [&app, &other] {
            let status = target
                .get(&token, "/v1/transcriptions")
                .await
                .status()
                .as_u16();
            statuses.push((round, status));
        }
    }
    let allowed = statuses.iter().filter(|(_, s)| *s == 200).count();
    assert_eq!(allowed, 10, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|(_, s)| *s == 429).count(), 2);
}

/// Behind a proxy (TRUSTED_PROXY_HOPS=1, as on Railway) the client is the address the proxy
/// appended, not the proxy's own and not what the client wrote further left.
#[tokio::test]
async fn behind_a_trusted_proxy_callers_are_told_apart_by_the_address_it_saw() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "3"), ("TRUSTED_PROXY_HOPS", "1")]).await;
    let guest = |forwarded: &'static str| {
        app.client
            .post(app.url("/auth/guest"))
            .header("x-forwarded-for", forwarded)
            .send()
    };
    for forged in [
        "1.1.1.1, 203.0.113.7",
        "2.2.2.2, 203.0.113.7",
        "203.0.113.7",
    ] {
        assert_eq!(guest(forged).await.unwrap().status(), 201);
    }
    // The same client, whatever it puts in front: its window is used up.
    assert_eq!(guest("9.9.9.9, 203.0.113.7").await.unwrap().status(), 429);
    // Another client behind the same proxy has its own.
    assert_eq!(guest("203.0.113.8").await.unwrap().status(), 201);

    // Without trusted proxies the header is ignored: every caller here is 127.0.0.1.
    let direct = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "2")]).await;
    for (forwarded, expected) in [
        ("203.0.113.1", 201),
        ("203.0.113.2", 201),
        ("203.0.113.3", 429),
    ] {
        let response = direct
            .client
            .post(direct.url("/auth/guest"))
            .header("x-forwarded-for", forwarded)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{forwarded}");
    }
}
