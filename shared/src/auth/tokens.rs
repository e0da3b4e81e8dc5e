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

/// Issues and verifies HS256 access tokens with `iss`, `aud`, `sub`, `iat`, `nbf`, `exp`, `jti`
/// and `scope`. Verification pins the algorithm: `alg: none` and other algorithms fail.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl TokenService {
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
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
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AuthError::Signing)?;
        Ok(IssuedToken {
            access_token: token,
            token_type: "Bearer",
            expires_in: self.ttl.as_secs(),
            scope,
            subject: owner.as_str().to_owned(),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
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
}
