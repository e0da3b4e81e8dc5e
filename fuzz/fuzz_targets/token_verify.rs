//! Token parsing and verification on arbitrary bearer strings, HS256 and RS256: never a
//! panic, and never a success (a token the fuzzer made up is a forgery by definition).
#![no_main]

use std::{sync::LazyLock, time::Duration};

use libfuzzer_sys::fuzz_target;
use mmt_core::auth::{RsaPrivateKey, TokenKeys, TokenService, generate_rsa_pems};

static SERVICES: LazyLock<[TokenService; 2]> = LazyLock::new(|| {
    let ttl = Duration::from_secs(600);
    let hs = TokenService::with_old_secrets(
        b"fuzz-secret-fuzz-secret-fuzz-secret-0001",
        &[b"fuzz-secret-fuzz-secret-fuzz-secret-0000"],
        "mmt",
        "mmt-api",
        ttl,
    );
    let (private, _) = generate_rsa_pems().expect("an RSA key");
    let signing = RsaPrivateKey::from_pem(&private).expect("a parsable key");
    let rs = TokenService::from_keys(
        TokenKeys::Rsa {
            public: signing.public_key().clone(),
            signing: Some(signing),
            old_public: vec![],
            hmac_secrets: vec![b"fuzz-secret-fuzz-secret-fuzz-secret-0001"],
        },
        "mmt",
        "mmt-api",
        ttl,
    );
    [hs, rs]
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    for service in SERVICES.iter() {
        assert!(service.verify(token).is_err(), "a made-up token verified");
    }
});
