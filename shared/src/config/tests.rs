//! The configuration as a whole: defaults, production refusals, and keys never echoed.
use std::time::Duration;

use super::*;
use crate::domain::EngineKind;

pub(super) fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_map(&map)
}

#[test]
fn defaults_are_a_working_demo() {
    let c = config(&[]).unwrap();
    assert_eq!(c.environment, Environment::Dev);
    assert!(c.demo_mode && c.auth.allow_guest_auth);
    assert_eq!(c.http.port, 8080);
    assert_eq!(c.retention.retention_days, 30);
    assert!(c.engines.cloud.is_none());
}

#[test]
fn bad_values_name_the_key() {
    let err = config(&[("PORT", "eighty")]).unwrap_err().to_string();
    assert!(err.contains("PORT"), "{err}");
    let err = config(&[("ALLOW_GUEST_AUTH", "maybe")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ALLOW_GUEST_AUTH"), "{err}");
    let err = config(&[("ENABLE_CLOUD_TRANSCRIPTION", "1")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("OPENAI_API_KEY"), "{err}");
}

#[test]
fn field_encryption_needs_a_valid_key_ring_and_never_echoes_it() {
    let err = config(&[("ENABLE_FIELD_ENCRYPTION", "1")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ENCRYPTION_KEYS"), "{err}");
    let bad = "k1:c2hvcnQ=";
    let err = config(&[
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        ("ENCRYPTION_KEYS", bad),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("ENCRYPTION_KEYS") && !err.contains("c2hvcnQ"),
        "{err}"
    );
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let ok = config(&[
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        ("ENCRYPTION_KEYS", &format!("k1:{key}")),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
    ])
    .unwrap();
    assert_eq!(
        ok.storage.field_encryption.as_ref().unwrap().primary_id(),
        "k1"
    );
    assert!(
        !format!("{ok:?}").contains(key),
        "Debug never shows key material"
    );
}

#[test]
fn short_old_jwt_secrets_are_refused_without_echoing_them() {
    let long = "l".repeat(40);
    let err = config(&[("INTERNAL_JWT_OLD_SECRETS", &format!("{long},tooshort"))])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("INTERNAL_JWT_OLD_SECRETS") && !err.contains("tooshort"),
        "{err}"
    );
    let ok = config(&[("INTERNAL_JWT_OLD_SECRETS", &format!("{long}, {long}"))]).unwrap();
    assert_eq!(ok.auth.jwt_old_secrets.len(), 2);
}

#[test]
fn short_jwt_secret_is_refused_without_echoing_it() {
    let err = config(&[("INTERNAL_JWT_SECRET", "hunter2")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("INTERNAL_JWT_SECRET"));
    assert!(!err.contains("hunter2"));
}

#[test]
fn production_refuses_demo_defaults() {
    let err = config(&[("ENV", "prod")]).unwrap_err().to_string();
    assert!(err.contains("INTERNAL_JWT_SECRET"), "{err}");
    let secret = "x".repeat(40);
    let err = config(&[
        ("ENV", "prod"),
        ("INTERNAL_JWT_SECRET", &secret),
        ("DEMO_MODE", "1"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("DEMO_MODE"), "{err}");
    let keys = format!(
        "k1:{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32])
    );
    let sealed = [
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        ("ENCRYPTION_KEYS", keys.as_str()),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
    ];
    let mut pairs = vec![("ENV", "prod"), ("INTERNAL_JWT_SECRET", secret.as_str())];
    pairs.extend(sealed);
    let ok = config(&pairs).unwrap();
    assert!(
        !ok.auth.allow_guest_auth,
        "guests are off by default in production"
    );
    for login in ["ALLOW_GUEST_AUTH", "ALLOW_LOCAL_LOGIN"] {
        let err = config(&[
            ("ENV", "prod"),
            ("INTERNAL_JWT_SECRET", &secret),
            (login, "true"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains(login), "{err}");
        let mut with_override = pairs.clone();
        with_override.extend([(login, "true"), ("ALLOW_DEMO_AUTH_IN_PRODUCTION", "true")]);
        assert!(
            config(&with_override).is_ok(),
            "{login} with the explicit override"
        );
    }
}

/// The signing secret of [`safe_production`].
pub(super) const PRODUCTION_SECRET: &str = "pppppppppppppppppppppppppppppppppppppppp";

/// A production configuration that starts: the base each refusal changes one thing of.
pub(super) fn safe_production() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ENV", "prod"),
        ("INTERNAL_JWT_SECRET", PRODUCTION_SECRET),
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        (
            "ENCRYPTION_KEYS",
            "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
    ]
}

/// `base` with `change` added and `removed` taken out is refused, naming `key` and never the
/// secret.
pub(super) fn assert_refused(
    base: &[(&'static str, &'static str)],
    change: &[(&'static str, &'static str)],
    removed: &[&str],
    key: &str,
) {
    let mut pairs: Vec<(&str, &str)> = base
        .iter()
        .copied()
        .filter(|(k, _)| !removed.contains(k))
        .collect();
    pairs.extend_from_slice(change);
    let err = config(&pairs).unwrap_err().to_string();
    assert!(err.contains(key), "expected a refusal naming {key}: {err}");
    assert!(!err.contains(PRODUCTION_SECRET), "{err}");
}

/// Each production refusal, from a configuration that passes, one unsafe setting at a time.
#[test]
fn production_refuses_each_unsafe_setting_by_name() {
    let safe = safe_production();
    assert!(config(&safe).is_ok());
    let refused = |change: &[(&'static str, &'static str)], removed: &[&str], key: &str| {
        assert_refused(&safe, change, removed, key)
    };
    refused(&[], &["INTERNAL_JWT_SECRET"], "INTERNAL_JWT_SECRET");
    refused(
        &[("INTERNAL_JWT_SECRET", "short")],
        &["INTERNAL_JWT_SECRET"],
        "INTERNAL_JWT_SECRET",
    );
    refused(
        &[("USE_RSA_INTERNAL_JWT", "1")],
        &[],
        "INTERNAL_JWT_PRIVATE_KEY_PEM",
    );
    refused(&[("ALLOW_GUEST_AUTH", "true")], &[], "ALLOW_GUEST_AUTH");
    refused(&[("ALLOW_LOCAL_LOGIN", "true")], &[], "ALLOW_LOCAL_LOGIN");
    refused(&[("CORS_ALLOW_ORIGINS", "*")], &[], "CORS_ALLOW_ORIGINS");
    refused(&[("DEMO_MODE", "true")], &[], "DEMO_MODE");
    refused(&[], &["ENABLE_FIELD_ENCRYPTION"], "ENABLE_FIELD_ENCRYPTION");
    refused(&[("ADMIN_API_KEY", "too-short")], &[], "ADMIN_API_KEY");
    refused(
        &[("SENTRY_DSN", "http://public@sentry.example.com/1")],
        &[],
        "SENTRY_DSN",
    );
    refused(
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector.example.com:4318",
        )],
        &[],
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    );
    for sidecar in [
        "http://localhost:4318",
        "http://127.0.0.1:4318/",
        "https://otlp.example.com",
    ] {
        let mut pairs = safe.clone();
        pairs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", sidecar));
        assert!(config(&pairs).is_ok(), "{sidecar}");
    }
}

#[test]
fn rsa_keys_are_checked_and_a_public_key_alone_only_verifies() {
    let (private, public) = crate::auth::generate_rsa_pems().unwrap();
    let (_, other_public) = crate::auth::generate_rsa_pems().unwrap();
    let one_line = private.replace('\n', "\\n");
    let c = config(&[
        ("USE_RSA_INTERNAL_JWT", "1"),
        ("INTERNAL_JWT_PRIVATE_KEY_PEM", &one_line),
        (
            "INTERNAL_JWT_OLD_PUBLIC_KEYS_PEM",
            &format!("{other_public}||"),
        ),
    ])
    .unwrap();
    let rsa = c.auth.jwt_rsa.unwrap();
    assert_eq!(rsa.old_public.len(), 1);
    assert_eq!(rsa.signing.unwrap().public_key(), &rsa.public);

    let err = config(&[
        ("USE_RSA_INTERNAL_JWT", "1"),
        ("INTERNAL_JWT_PRIVATE_KEY_PEM", &private),
        ("INTERNAL_JWT_PUBLIC_KEY_PEM", &other_public),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("INTERNAL_JWT_PUBLIC_KEY_PEM") && err.contains("does not match"),
        "{err}"
    );
    let err = config(&[
        ("USE_RSA_INTERNAL_JWT", "1"),
        (
            "INTERNAL_JWT_PRIVATE_KEY_PEM",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("INTERNAL_JWT_PRIVATE_KEY_PEM") && !err.contains("AAAA"),
        "{err}"
    );

    // A verifying function holds the public key only; production accepts that when it
    // issues no tokens, and refuses it where sign-in is on.
    let verify_only = [
        ("ENV", "prod"),
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        (
            "ENCRYPTION_KEYS",
            "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
        ("USE_RSA_INTERNAL_JWT", "1"),
        ("INTERNAL_JWT_PUBLIC_KEY_PEM", public.as_str()),
    ];
    assert!(
        config(&verify_only)
            .unwrap()
            .auth
            .jwt_rsa
            .unwrap()
            .signing
            .is_none()
    );
    let mut signing_in = verify_only.to_vec();
    signing_in.extend([
        ("ALLOW_LOCAL_LOGIN", "true"),
        ("ALLOW_DEMO_AUTH_IN_PRODUCTION", "true"),
    ]);
    let err = config(&signing_in).unwrap_err().to_string();
    assert!(err.contains("INTERNAL_JWT_PRIVATE_KEY_PEM"), "{err}");
}

#[test]
fn without_stored_phi_records_live_for_the_delivery_window() {
    let c = config(&[
        ("STORE_PHI", "false"),
        ("PHI_DELIVERY_WINDOW_MINUTES", "20"),
    ])
    .unwrap();
    assert_eq!(c.retention.keep_for(), Some(chrono::Duration::minutes(20)));
    assert_eq!(c.retention.sweep_every(), Duration::from_secs(300));
    let kept = config(&[("RETENTION_DAYS", "7")]).unwrap();
    assert_eq!(kept.retention.keep_for(), Some(chrono::Duration::days(7)));
}

#[test]
fn default_engine_must_be_enabled() {
    let err = config(&[("DEFAULT_ENGINE", "cloud")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("DEFAULT_ENGINE"));
    let c = config(&[
        ("ENABLE_CLOUD_TRANSCRIPTION", "true"),
        ("OPENAI_API_KEY", "sk-test"),
    ])
    .unwrap();
    assert_eq!(c.engines.default_engine, Some(EngineKind::Cloud));
}

#[test]
fn production_lambda_functions_refuse_embedded_stores() {
    let secret = "s".repeat(40);
    let lambda = [
        ("ENV", "prod"),
        ("INTERNAL_JWT_SECRET", secret.as_str()),
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        (
            "ENCRYPTION_KEYS",
            "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
        ("AWS_LAMBDA_FUNCTION_NAME", "mmt-prod-upload"),
    ];
    let err = config(&lambda).unwrap_err().to_string();
    assert!(err.contains("BLOB_STORE"), "{err}");
    let mut aws = lambda.to_vec();
    aws.extend([
        ("BLOB_STORE", "s3"),
        ("S3_BUCKET", "b"),
        ("S3_KMS_KEY_ID", "alias/mmt"),
        ("RECORD_STORE", "dynamodb"),
        ("DYNAMODB_TABLE", "t"),
    ]);
    let err = config(&aws).unwrap_err().to_string();
    assert!(
        err.contains("AUDIT_TABLE"),
        "the audit trail needs its own table: {err}"
    );
    aws.push(("AUDIT_TABLE", "audit"));
    let err = config(&aws).unwrap_err().to_string();
    assert!(err.contains("JOB_QUEUE"), "{err}");
    aws.extend([
        ("JOB_QUEUE", "sqs"),
        ("SQS_TRANSCRIBE_QUEUE_URL", "https://sqs/q"),
        ("SQS_TRANSCRIBE_DLQ_URL", "https://sqs/dlq"),
    ]);
    assert!(config(&aws).unwrap().in_lambda);
    // Outside production (cargo lambda watch, the smoke tests) embedded stores are fine.
    assert!(config(&[("AWS_LAMBDA_FUNCTION_NAME", "upload")]).is_ok());
}

#[test]
fn the_local_engine_can_live_on_a_worker() {
    let c = config(&[
        ("ENABLE_CLOUD_TRANSCRIPTION", "true"),
        ("OPENAI_API_KEY", "sk-test"),
        ("LOCAL_ENGINE_ON_WORKER", "true"),
        ("DEFAULT_ENGINE", "local"),
    ])
    .unwrap();
    assert!(c.engines.enabled(EngineKind::Local));
    assert!(
        !c.engines.local_engine_enabled,
        "no model is loaded in this process"
    );
    let err = config(&[("DEFAULT_ENGINE", "local")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("LOCAL_ENGINE_ON_WORKER"), "{err}");
}
