//! Production refusals added with the second security pass: unsealed storage, no rate limit,
//! plain-HTTP services, and staging held to the same rules.

use super::tests::{assert_refused, config, safe_production};

#[test]
fn production_refuses_unsealed_storage_no_limit_and_plain_http_services() {
    let safe = safe_production();
    let refused = |change: &[(&'static str, &'static str)], removed: &[&str], key: &str| {
        assert_refused(&safe, change, removed, key)
    };
    // The transcript is PHI whatever STORE_PHI says: encryption stays required.
    refused(
        &[("STORE_PHI", "false")],
        &["ENABLE_FIELD_ENCRYPTION"],
        "ENABLE_FIELD_ENCRYPTION",
    );
    refused(
        &[("RATE_LIMIT_PER_MINUTE", "0")],
        &[],
        "RATE_LIMIT_PER_MINUTE",
    );
    // A token lives a shift at most (sign-out revokes it sooner).
    refused(
        &[("ACCESS_TOKEN_TTL_SECS", "86400")],
        &[],
        "ACCESS_TOKEN_TTL_SECS",
    );
    refused(
        &[
            ("ENABLE_CLOUD_TRANSCRIPTION", "true"),
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", "http://llm-proxy.internal/v1"),
        ],
        &[],
        "OPENAI_BASE_URL",
    );
    refused(
        &[
            ("EHR_TARGET", "fhir"),
            ("FHIR_BASE_URL", "http://fhir.clinic.example/r4"),
        ],
        &[],
        "FHIR_BASE_URL",
    );
    refused(
        &[("BLOB_STORE", "s3"), ("S3_BUCKET", "recordings")],
        &[],
        "S3_KMS_KEY_ID",
    );
    refused(
        &[
            ("ENABLE_LOCAL_TRANSCRIPTION", "true"),
            ("AUDIO_DECODER", "in-process"),
        ],
        &[],
        "AUDIO_DECODER",
    );
    // Staging is held to the same rules.
    let mut staging = safe.clone();
    staging[0] = ("ENV", "staging");
    staging.push(("RATE_LIMIT_PER_MINUTE", "0"));
    assert!(
        config(&staging)
            .unwrap_err()
            .to_string()
            .contains("RATE_LIMIT_PER_MINUTE")
    );
    // What passes: TLS everywhere, a service beside MMT on loopback, S3 with its KMS key.
    let mut passes = safe.clone();
    passes.extend([
        ("ENABLE_CLOUD_TRANSCRIPTION", "true"),
        ("OPENAI_API_KEY", "sk-test"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
        ("EHR_TARGET", "fhir"),
        ("FHIR_BASE_URL", "https://fhir.clinic.example/r4"),
        ("EHR_LOGIN", "shared"),
        ("BLOB_STORE", "s3"),
        ("S3_BUCKET", "recordings"),
        ("S3_KMS_KEY_ID", "alias/mmt"),
        ("ENABLE_LOCAL_TRANSCRIPTION", "true"),
    ]);
    if let Err(err) = config(&passes) {
        panic!("a safe production configuration was refused: {err}");
    }
}

/// One shared EHR login writes every clinician's note under one name: production must say so
/// (`EHR_LOGIN=shared`) or link each clinician's own login (`per-clinician`).
#[test]
fn production_names_whose_ehr_login_writes_notes() {
    let mut ehr = safe_production();
    ehr.extend([
        ("EHR_TARGET", "openemr"),
        ("OPENEMR_BASE_URL", "https://emr.clinic.example"),
        ("OPENEMR_CLIENT_ID", "mmt"),
    ]);
    assert!(config(&ehr).unwrap_err().to_string().contains("EHR_LOGIN"));
    let mut per_clinician = ehr.clone();
    per_clinician.push(("EHR_LOGIN", "per-clinician"));
    assert!(
        config(&per_clinician)
            .unwrap_err()
            .to_string()
            .contains("OPENEMR_REDIRECT_URI"),
        "linking needs the page's address"
    );
    per_clinician.push(("OPENEMR_REDIRECT_URI", "https://mmt.clinic.example/"));
    config(&per_clinician).unwrap();
    let mut shared = ehr;
    shared.push(("EHR_LOGIN", "shared"));
    config(&shared).unwrap();
}

#[test]
fn production_serves_no_api_description_or_health_details_unless_asked() {
    let safe = safe_production();
    let config_of = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = safe.clone();
        pairs.extend_from_slice(extra);
        config(&pairs).unwrap()
    };
    let plain = config_of(&[]);
    assert!(!plain.http.docs_enabled && !plain.http.health_details);
    let opted_in = config_of(&[("ENABLE_DOCS", "true"), ("HEALTH_DETAILS", "true")]);
    assert!(opted_in.http.docs_enabled && opted_in.http.health_details);
    // Development keeps both.
    let dev = config(&[]).unwrap();
    assert!(dev.http.docs_enabled && dev.http.health_details);
}

#[test]
fn production_keeps_guests_off_the_cloud_engine_unless_configured() {
    let mut guests = safe_production();
    guests.extend([
        ("ALLOW_GUEST_AUTH", "true"),
        ("ALLOW_DEMO_AUTH_IN_PRODUCTION", "true"),
    ]);
    assert!(!config(&guests).unwrap().auth.guest_cloud_engine);
    guests.push(("GUEST_CLOUD_ENGINE", "true"));
    assert!(config(&guests).unwrap().auth.guest_cloud_engine);
    assert!(
        config(&[]).unwrap().auth.guest_cloud_engine,
        "the demo keeps it"
    );
    // Guests in production come with upload quotas.
    let mut unlimited = guests.clone();
    unlimited.push(("GUEST_UPLOADS_PER_DAY", "0"));
    let err = config(&unlimited).unwrap_err().to_string();
    assert!(err.contains("GUEST_UPLOADS_PER_DAY"), "{err}");
}

/// Security review, item 3: with HS256 the verifying key is the signing key. Once RS256 is
/// configured, production refuses the HS256 secret except during a dated migration window;
/// and a process that serves no PHI (`SERVES_PHI=false`: health, demo status, docs, sign-in)
/// starts with the public key alone and no field keys.
#[test]
fn production_retires_the_hs256_secret_and_lets_phi_free_functions_hold_no_keys() {
    let (private, public) = crate::auth::generate_rsa_pems().unwrap();
    let mut both = safe_production();
    both.extend([
        ("USE_RSA_INTERNAL_JWT", "1"),
        ("INTERNAL_JWT_PRIVATE_KEY_PEM", private.as_str()),
    ]);
    let err = config(&both).unwrap_err().to_string();
    assert!(
        err.contains("INTERNAL_JWT_SECRET") && err.contains("migration window"),
        "{err}"
    );
    let soon = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let mut migrating = both.clone();
    migrating.push(("JWT_HS256_ACCEPTED_UNTIL", soon.as_str()));
    let during = config(&migrating).unwrap();
    assert!(during.auth.jwt_rsa.is_some() && during.auth.jwt_secret.is_some());
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let mut ended = both.clone();
    ended.push(("JWT_HS256_ACCEPTED_UNTIL", past.as_str()));
    let err = config(&ended).unwrap_err().to_string();
    assert!(err.contains("has ended"), "{err}");
    let far = (chrono::Utc::now() + chrono::Duration::days(90)).to_rfc3339();
    let mut forever = both.clone();
    forever.push(("JWT_HS256_ACCEPTED_UNTIL", far.as_str()));
    assert!(config(&forever).is_err(), "a window of months is no window");

    // The health function's configuration in the Terraform deployment: public key only, no
    // field keys, SERVES_PHI=false.
    let phi_free = [
        ("ENV", "prod"),
        ("SERVES_PHI", "false"),
        ("USE_RSA_INTERNAL_JWT", "1"),
        ("INTERNAL_JWT_PUBLIC_KEY_PEM", public.as_str()),
    ];
    let phi_free = config(&phi_free).unwrap();
    assert!(phi_free.storage.field_encryption.is_none() && !phi_free.serves_phi);
    // Without SERVES_PHI=false the same settings are refused: records need field keys.
    let serving = [
        ("ENV", "prod"),
        ("USE_RSA_INTERNAL_JWT", "1"),
        ("INTERNAL_JWT_PUBLIC_KEY_PEM", public.as_str()),
    ];
    let err = config(&serving).unwrap_err().to_string();
    assert!(err.contains("ENABLE_FIELD_ENCRYPTION"), "{err}");
}

#[test]
fn live_dictation_leaves_the_machine_only_over_tls_and_needs_the_local_engine() {
    let safe = safe_production();
    assert_refused(
        &safe,
        &[("LIVE_DICTATION_URL", "ws://live.clinic.example/v1/stream")],
        &[],
        "LIVE_DICTATION_URL",
    );
    assert_refused(
        &safe,
        &[(
            "LIVE_DICTATION_URL",
            "https://live.clinic.example/v1/stream",
        )],
        &[],
        "LIVE_DICTATION_URL",
    );
    assert_refused(
        &safe,
        &[("ENABLE_LIVE_DICTATION", "true")],
        &[],
        "ENABLE_LIVE_DICTATION",
    );
    let mut with_url = safe.clone();
    with_url.push(("LIVE_DICTATION_URL", "wss://live.clinic.example/v1/stream"));
    let live = super::tests::config(&with_url)
        .expect("wss:// is accepted")
        .live;
    assert!(
        live.offered() && !live.enabled,
        "offered there, not run here"
    );
}
