use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::OwnerId;

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read own transcriptions.
    Read,
    /// Upload and delete own transcriptions.
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "transcriptions:read",
            Self::Write => "transcriptions:write",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "transcriptions:read" => Some(Self::Read),
            "transcriptions:write" => Some(Self::Write),
            _ => None,
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub owner: OwnerId,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    scope: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    /// The subject the token speaks for (`guest:<uuid>` or `user:<name>`).
    pub subject: String,
}

/// Token problems. Deliberately coarse: a caller learns "not valid", never why.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("token could not be signed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// The id of a signing secret, put in the token's `kid` header: derived from the secret, so
/// every process holding the same secret agrees on it, and revealing nothing about it.
fn key_id(secret: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest([b"mmt-jwt-kid:".as_slice(), secret].concat());
    format!("hs-{}", hex::encode(&digest[..6]))
}

/// Issues and verifies HS256 access tokens with `iss`, `aud`, `sub`, `iat`, `nbf`, `exp`, `jti`
/// and `scope`. Verification pins the algorithm: `alg: none` and other algorithms fail.
///
/// Rotation: tokens are signed with the current secret and name it in `kid`; secrets listed as
/// old (`INTERNAL_JWT_OLD_SECRETS`) still verify the tokens they signed until they are removed.
/// An unknown `kid` is refused; a token without one (issued before `kid`) is checked against
/// the current secret only.
pub struct TokenService {
    current_kid: String,
    encoding: EncodingKey,
    /// `kid` → key, the current secret first.
    decoding: Vec<(String, DecodingKey)>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl TokenService {
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl: Duration) -> Self {
        Self::with_old_secrets(secret, &[], issuer, audience, ttl)
    }

    /// `old_secrets`: retired secrets whose tokens are still accepted (never used to sign).
    pub fn with_old_secrets(
        secret: &[u8],
        old_secrets: &[&[u8]],
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let decoding = std::iter::once(secret)
            .chain(old_secrets.iter().copied())
            .map(|s| (key_id(s), DecodingKey::from_secret(s)))
            .collect();
        Self {
            current_kid: key_id(secret),
            encoding: EncodingKey::from_secret(secret),
            decoding,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    fn decoding_key(&self, token: &str) -> Result<&DecodingKey, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        if header.alg != Algorithm::HS256 {
            return Err(AuthError::InvalidToken);
        }
        let kid = header.kid.as_deref().unwrap_or(&self.current_kid);
        self.decoding
            .iter()
            .find(|(id, _)| id == kid)
            .map(|(_, key)| key)
            .ok_or(AuthError::InvalidToken)
    }

    pub fn issue(&self, owner: &OwnerId, scopes: &[Scope]) -> Result<IssuedToken, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let scope = scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: owner.as_str().to_owned(),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs(),
            jti: Uuid::new_v4().to_string(),
            scope: scope.clone(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current_kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(AuthError::Signing)?;
        Ok(IssuedToken {
            access_token: token,
            token_type: "Bearer",
            expires_in: self.ttl.as_secs(),
            scope,
            subject: owner.as_str().to_owned(),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let key = self.decoding_key(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|_| AuthError::InvalidToken)?;
        let owner = OwnerId::parse(&data.claims.sub).map_err(|_| AuthError::InvalidToken)?;
        let scopes = data
            .claims
            .scope
            .split_whitespace()
            .filter_map(Scope::parse)
            .collect();
        Ok(Principal { owner, scopes })
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn service() -> TokenService {
        TokenService::new(SECRET, "mmt", "mmt-api", Duration::from_secs(60))
    }

    #[test]
    fn issued_tokens_verify_with_scopes() {
        let owner = OwnerId::new_guest();
        let token = service()
            .issue(&owner, &[Scope::Read, Scope::Write])
            .unwrap();
        let principal = service().verify(&token.access_token).unwrap();
        assert_eq!(principal.owner, owner);
        assert!(principal.has(Scope::Read) && principal.has(Scope::Write));
    }

    #[test]
    fn rejects_other_secret_audience_and_issuer() {
        let owner = OwnerId::new_guest();
        let token = service()
            .issue(&owner, &[Scope::Read])
            .unwrap()
            .access_token;
        let other_secret = TokenService::new(
            b"another-secret-another-secret-32",
            "mmt",
            "mmt-api",
            Duration::from_secs(60),
        );
        assert!(other_secret.verify(&token).is_err());
        let other_aud = TokenService::new(SECRET, "mmt", "other-api", Duration::from_secs(60));
        assert!(other_aud.verify(&token).is_err());
        let other_iss =
            TokenService::new(SECRET, "someone-else", "mmt-api", Duration::from_secs(60));
        assert!(other_iss.verify(&token).is_err());
    }

    #[test]
    fn rejects_alg_none_and_expired_tokens() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = |exp: u64| serde_json::json!({"iss":"mmt","aud":"mmt-api","sub":"guest:x","iat":now,"nbf":now,"exp":exp,"jti":"j","scope":"transcriptions:read"});
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims(now + 600).to_string());
        assert!(service().verify(&format!("{header}.{body}.")).is_err());

        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(now - 3600),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(service().verify(&expired).is_err());
        assert!(service().verify("not.a.jwt").is_err());
    }

    fn claims(exp_in: i64) -> serde_json::Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        serde_json::json!({"iss":"mmt","aud":"mmt-api","sub":"guest:x","iat":now,"nbf":now,
                           "exp":now + exp_in,"jti":"j","scope":"transcriptions:read"})
    }

    #[test]
    fn old_secrets_verify_their_tokens_until_retired() {
        const NEW: &[u8] = b"the-new-secret-the-new-secret-0123456789";
        let owner = OwnerId::new_guest();
        let before = service()
            .issue(&owner, &[Scope::Read])
            .unwrap()
            .access_token;

        // Rotated: the new secret signs; the old one still verifies what it signed.
        let rotated = TokenService::with_old_secrets(
            NEW,
            &[SECRET],
            "mmt",
            "mmt-api",
            Duration::from_secs(60),
        );
        assert_eq!(rotated.verify(&before).unwrap().owner, owner);
        let after = rotated.issue(&owner, &[Scope::Read]).unwrap().access_token;
        let kid = jsonwebtoken::decode_header(&after).unwrap().kid.unwrap();
        assert_eq!(kid, key_id(NEW));
        assert!(
            !kid.contains("new-secret"),
            "the kid reveals nothing of the secret"
        );
        assert!(
            service().verify(&after).is_err(),
            "the old service does not know the new key"
        );

        // Retired: the old secret's tokens are refused.
        let retired = TokenService::new(NEW, "mmt", "mmt-api", Duration::from_secs(60));
        assert!(retired.verify(&before).is_err());
        assert!(retired.verify(&after).is_ok());
    }

    #[test]
    fn rejects_unknown_kid_forged_kid_and_other_hmac_algorithms() {
        let sign = |alg: Algorithm, kid: Option<String>, secret: &[u8]| {
            let mut header = Header::new(alg);
            header.kid = kid;
            jsonwebtoken::encode(&header, &claims(600), &EncodingKey::from_secret(secret)).unwrap()
        };
        let good = sign(Algorithm::HS256, Some(key_id(SECRET)), SECRET);
        assert!(service().verify(&good).is_ok());
        // A kid nobody issued.
        assert!(
            service()
                .verify(&sign(
                    Algorithm::HS256,
                    Some("hs-000000000000".into()),
                    SECRET
                ))
                .is_err()
        );
        // The right kid on a token signed with another secret.
        let forged = sign(
            Algorithm::HS256,
            Some(key_id(SECRET)),
            b"attacker-secret-attacker-secret-0000",
        );
        assert!(service().verify(&forged).is_err());
        // The same secret under another algorithm: the algorithm is pinned.
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            assert!(
                service()
                    .verify(&sign(alg, Some(key_id(SECRET)), SECRET))
                    .is_err(),
                "{alg:?}"
            );
        }
        // Not yet valid (nbf beyond the leeway).
        let mut early = claims(600);
        early["nbf"] = serde_json::json!(early["iat"].as_i64().unwrap() + 3600);
        let early = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &early,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(service().verify(&early).is_err());
        // Garbage in every part.
        for raw in [
            "",
            "a",
            "a.b",
            "a.b.c",
            "eyJhbGciOiJIUzI1NiJ9.e30.",
            ".....",
        ] {
            assert!(service().verify(raw).is_err(), "{raw:?}");
        }
    }
}
