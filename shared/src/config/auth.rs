//! Who may call: sign-in methods, the token keys, the admin key.

use std::{fmt, time::Duration};

use secrecy::{ExposeSecret, SecretString};

use super::source::{ConfigError, Source};

/// Sign-in and tokens.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub allow_guest_auth: bool,
    /// `GUEST_CLOUD_ENGINE`: guests may send recordings to the paid cloud engine (default:
    /// outside production only).
    pub guest_cloud_engine: bool,
    pub allow_local_login: bool,
    /// The explicit override that lets production run guest or local sign-in (public demos).
    pub allow_demo_auth_in_production: bool,
    pub local_users: Vec<LocalUser>,
    /// `None` means "generate an ephemeral secret at start-up" (dev and test only).
    pub jwt_secret: Option<SecretString>,
    /// Retired signing secrets whose tokens are still accepted during a rotation.
    pub jwt_old_secrets: Vec<SecretString>,
    /// `USE_RSA_INTERNAL_JWT`: RS256 keys, published at `/.well-known/jwks.json`.
    pub jwt_rsa: Option<RsaJwtConfig>,
    /// `JWT_HS256_ACCEPTED_UNTIL` (RFC 3339): the end of the move from HS256 to RS256, until
    /// which HS256 tokens (and so the HS256 secret) are still accepted beside RS256 ones.
    pub hs256_accepted_until: Option<chrono::DateTime<chrono::Utc>>,
    /// `ADMIN_API_KEY`: exchanged at `POST /auth/admin` for an admin-scoped token.
    pub admin_api_key: Option<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    /// Brute force, floods of password checks, guests' uploads.
    pub limits: super::limits::SignInLimits,
}

/// A user allowed to sign in with `POST /auth/login`: the name and an argon2 PHC hash.
#[derive(Clone)]
pub struct LocalUser {
    pub username: String,
    pub password_hash: String,
}

impl fmt::Debug for LocalUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalUser")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// RS256 signing: the key that signs (absent in a verify-only process), the public key that
/// verifies, and retired public keys still accepted during a rotation.
#[derive(Debug, Clone)]
pub struct RsaJwtConfig {
    pub signing: Option<crate::auth::RsaPrivateKey>,
    pub public: crate::auth::RsaPublicKey,
    pub old_public: Vec<crate::auth::RsaPublicKey>,
}

/// The longest an access token may live in production. Sign-out revokes a token at once;
/// this bounds one that was stolen and never signed out.
const MAX_PRODUCTION_TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

impl AuthConfig {
    pub(super) fn parse(src: &Source, is_prod: bool) -> Result<Self, ConfigError> {
        let local_users = match src.raw("LOCAL_LOGIN_USERS") {
            None => Vec::new(),
            Some(v) => parse_local_users(&v)?,
        };
        let jwt_secret = src.secret("INTERNAL_JWT_SECRET");
        if jwt_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < 32)
        {
            return Err(ConfigError::Invalid {
                key: "INTERNAL_JWT_SECRET",
                reason: "must be at least 32 bytes (generate one with `openssl rand -base64 48`)"
                    .into(),
            });
        }

        let jwt_old_secrets: Vec<SecretString> = src
            .raw("INTERNAL_JWT_OLD_SECRETS")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| SecretString::from(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if jwt_old_secrets.iter().any(|s| s.expose_secret().len() < 32) {
            return Err(ConfigError::Invalid {
                key: "INTERNAL_JWT_OLD_SECRETS",
                reason: "each secret must be at least 32 bytes".into(),
            });
        }

        let jwt_rsa = if src.flag("USE_RSA_INTERNAL_JWT", false)? {
            Some(parse_rsa_jwt(src)?)
        } else {
            None
        };
        let hs256_accepted_until = super::limits::parse_time(src, "JWT_HS256_ACCEPTED_UNTIL")?;
        let admin_api_key = src.secret("ADMIN_API_KEY");
        if admin_api_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().len() < 32)
        {
            return Err(ConfigError::Invalid {
                key: "ADMIN_API_KEY",
                reason: "must be at least 32 bytes (generate one with `mmt secrets`)".into(),
            });
        }

        Ok(Self {
            allow_guest_auth: src.flag("ALLOW_GUEST_AUTH", !is_prod)?,
            guest_cloud_engine: src.flag("GUEST_CLOUD_ENGINE", !is_prod)?,
            allow_local_login: src.flag("ALLOW_LOCAL_LOGIN", false)?,
            allow_demo_auth_in_production: src.flag("ALLOW_DEMO_AUTH_IN_PRODUCTION", false)?,
            local_users,
            jwt_secret,
            jwt_old_secrets,
            jwt_rsa,
            hs256_accepted_until,
            admin_api_key,
            jwt_issuer: src.raw("JWT_ISSUER").unwrap_or_else(|| "mmt".into()),
            jwt_audience: src.raw("JWT_AUDIENCE").unwrap_or_else(|| "mmt-api".into()),
            access_token_ttl: Duration::from_secs(src.parse("ACCESS_TOKEN_TTL_SECS", 3600u64)?),
            limits: super::limits::SignInLimits::parse(src)?,
        })
    }

    pub(super) fn check_for_production(&self) -> Result<(), ConfigError> {
        match &self.jwt_rsa {
            None if self.jwt_secret.is_none() => {
                return Err(ConfigError::unsafe_setting(
                    "INTERNAL_JWT_SECRET",
                    "must be set (or USE_RSA_INTERNAL_JWT=1 with RSA keys)",
                ));
            }
            // Only the process that issues tokens needs the private key; the others verify.
            Some(rsa)
                if rsa.signing.is_none()
                    && (self.allow_guest_auth
                        || self.allow_local_login
                        || self.admin_api_key.is_some()) =>
            {
                return Err(ConfigError::unsafe_setting(
                    "INTERNAL_JWT_PRIVATE_KEY_PEM",
                    "must be set where tokens are issued (sign-in is enabled)",
                ));
            }
            _ => {}
        }
        super::limits::check_hs256_retired(
            self.jwt_rsa.is_some(),
            self.jwt_secret.is_some() || !self.jwt_old_secrets.is_empty(),
            self.hs256_accepted_until,
        )?;
        self.limits.check_for_production(
            self.allow_local_login || self.admin_api_key.is_some(),
            self.allow_guest_auth,
        )?;
        if self.access_token_ttl > MAX_PRODUCTION_TOKEN_TTL {
            return Err(ConfigError::unsafe_setting(
                "ACCESS_TOKEN_TTL_SECS",
                "must be at most 28800 (a shift): a stolen token is good until it expires",
            ));
        }
        Ok(())
    }

    /// Anyone can become a guest, and local users live in configuration: both are demo
    /// conveniences a production deployment must opt into by name.
    pub(super) fn check_demo_sign_in(&self) -> Result<(), ConfigError> {
        if self.allow_demo_auth_in_production {
            return Ok(());
        }
        if self.allow_guest_auth {
            return Err(ConfigError::unsafe_setting(
                "ALLOW_GUEST_AUTH",
                "must be off (or set ALLOW_DEMO_AUTH_IN_PRODUCTION=true for a public demo)",
            ));
        }
        if self.allow_local_login {
            return Err(ConfigError::unsafe_setting(
                "ALLOW_LOCAL_LOGIN",
                "must be off (or set ALLOW_DEMO_AUTH_IN_PRODUCTION=true)",
            ));
        }
        Ok(())
    }
}

/// `USE_RSA_INTERNAL_JWT=1`: the private key (PKCS#8 PEM) signs; the public key is derived
/// from it, or given alone (`INTERNAL_JWT_PUBLIC_KEY_PEM`) in a process that only verifies.
fn parse_rsa_jwt(src: &Source<'_>) -> Result<RsaJwtConfig, ConfigError> {
    use crate::auth::{RsaPrivateKey, RsaPublicKey};
    let invalid = |key: &'static str| {
        move |e: crate::auth::KeyError| ConfigError::Invalid {
            key,
            reason: e.to_string(),
        }
    };
    let signing = src
        .secret("INTERNAL_JWT_PRIVATE_KEY_PEM")
        .map(|pem| RsaPrivateKey::from_pem(pem.expose_secret()))
        .transpose()
        .map_err(invalid("INTERNAL_JWT_PRIVATE_KEY_PEM"))?;
    let given_public = src
        .raw("INTERNAL_JWT_PUBLIC_KEY_PEM")
        .map(|pem| RsaPublicKey::from_pem(&pem))
        .transpose()
        .map_err(invalid("INTERNAL_JWT_PUBLIC_KEY_PEM"))?;
    let public = match (&signing, given_public) {
        (Some(private), Some(public)) if *private.public_key() != public => {
            return Err(ConfigError::Invalid {
                key: "INTERNAL_JWT_PUBLIC_KEY_PEM",
                reason: crate::auth::KeyError::Mismatch.to_string(),
            });
        }
        (Some(private), _) => private.public_key().clone(),
        (None, Some(public)) => public,
        (None, None) => {
            return Err(ConfigError::Missing {
                key: "INTERNAL_JWT_PRIVATE_KEY_PEM",
                reason: "USE_RSA_INTERNAL_JWT is on (generate keys with `mmt secrets --rsa`)"
                    .into(),
            });
        }
    };
    let old_public = src
        .raw("INTERNAL_JWT_OLD_PUBLIC_KEYS_PEM")
        .map(|raw| {
            raw.split("||")
                .map(str::trim)
                .filter(|pem| !pem.is_empty())
                .map(RsaPublicKey::from_pem)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(invalid("INTERNAL_JWT_OLD_PUBLIC_KEYS_PEM"))?
        .unwrap_or_default();
    Ok(RsaJwtConfig {
        signing,
        public,
        old_public,
    })
}

fn parse_local_users(raw: &str) -> Result<Vec<LocalUser>, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        key: "LOCAL_LOGIN_USERS",
        reason: reason.to_owned(),
    };
    raw.split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (username, hash) = entry
                .split_once(':')
                .ok_or_else(|| invalid("expected name:argon2-hash entries separated by ';'"))?;
            if username.is_empty()
                || !username
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
            {
                return Err(invalid("user names may hold letters, digits and . _ - @"));
            }
            let parsed = argon2::PasswordHash::new(hash).map_err(|_| {
                invalid("password hashes must be argon2 PHC strings (see `mmt hash-password`)")
            })?;
            if !meets_owasp_minimum(&parsed) {
                return Err(invalid(
                    "password hashes must be argon2id at OWASP's minimum cost or more (19 MiB \
                     with 2 passes, or an equivalent pair such as 46 MiB with 1): hash again \
                     with `mmt hash-password`",
                ));
            }
            Ok(LocalUser {
                username: username.to_owned(),
                password_hash: hash.to_owned(),
            })
        })
        .collect()
}

/// OWASP's Password Storage Cheat Sheet: argon2id with one of m=47104 KiB/t=1,
/// m=19456/t=2, m=12288/t=3, m=9216/t=4, m=7168/t=5 (parallelism 1), i.e. at least
/// 7168 KiB and at least 35 840 KiB·passes.
fn meets_owasp_minimum(hash: &argon2::PasswordHash<'_>) -> bool {
    let Ok(params) = argon2::Params::try_from(hash) else {
        return false;
    };
    let (memory_kib, passes) = (u64::from(params.m_cost()), u64::from(params.t_cost()));
    hash.algorithm.as_str() == "argon2id" && memory_kib >= 7168 && memory_kib * passes >= 35_840
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;

    #[test]
    fn local_users_need_argon2_hashes() {
        let err = config(&[("LOCAL_LOGIN_USERS", "alice:plaintext")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LOCAL_LOGIN_USERS") && !err.contains("plaintext"),
            "{err}"
        );
        let hash = crate::auth::hash_password("correct horse").unwrap();
        let c = config(&[("LOCAL_LOGIN_USERS", &format!("alice:{hash}; bob:{hash}"))]).unwrap();
        assert_eq!(c.auth.local_users.len(), 2);
        assert_eq!(c.auth.local_users[1].username, "bob");
    }

    #[test]
    fn weak_argon2_hashes_are_refused() {
        use argon2::{
            Algorithm, Argon2, Params, PasswordHasher, Version, password_hash::SaltString,
        };
        let hash_with = |algorithm, memory_kib, passes| {
            let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
            Argon2::new(
                algorithm,
                Version::V0x13,
                Params::new(memory_kib, passes, 1, None).unwrap(),
            )
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string()
        };
        for (algorithm, memory_kib, passes) in [
            (Algorithm::Argon2id, 1024, 1),
            (Algorithm::Argon2id, 19_456, 1),
            (Algorithm::Argon2id, 4096, 10),
            (Algorithm::Argon2i, 19_456, 2),
            (Algorithm::Argon2d, 19_456, 2),
        ] {
            let hash = hash_with(algorithm, memory_kib, passes);
            let err = config(&[("LOCAL_LOGIN_USERS", &format!("alice:{hash}"))])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("OWASP"),
                "{algorithm:?} m={memory_kib} t={passes}: {err}"
            );
        }
        for (memory_kib, passes) in [(19_456, 2), (47_104, 1), (7168, 5), (65_536, 3)] {
            let hash = hash_with(Algorithm::Argon2id, memory_kib, passes);
            assert!(
                config(&[("LOCAL_LOGIN_USERS", &format!("alice:{hash}"))]).is_ok(),
                "m={memory_kib} t={passes}"
            );
        }
    }
}
