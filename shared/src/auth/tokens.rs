//! Access tokens and part grants: HS256 or RS256 signing, verification, JWKS, scopes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
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
    /// Push own transcripts into the EHR.
    EhrPush,
    /// Operate the deployment: read the audit trail. Never given to guests.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "transcriptions:read",
            Self::Write => "transcriptions:write",
            Self::EhrPush => "ehr:push",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Read, Self::Write, Self::EhrPush, Self::Admin]
            .into_iter()
            .find(|scope| scope.as_str() == s)
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub owner: OwnerId,
    pub scopes: Vec<Scope>,
    /// The token's `jti`, `iat` and `exp`: what sign-out revokes, and until when.
    pub token_id: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
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

/// Leave to send one part of one resumable upload: what the local store hands out where S3
/// would hand out a presigned URL. Signed like an access token but for another audience, so
/// neither can stand in for the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartGrant {
    /// The transcription the upload belongs to.
    pub upload: String,
    pub part: u32,
    /// The part's exact length in bytes.
    pub length: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct PartClaims {
    iss: String,
    aud: String,
    sub: String,
    nbf: u64,
    exp: u64,
    part: u32,
    len: u64,
}

#[derive(Debug, Clone, Serialize)]
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
    #[error("this process verifies tokens but holds no signing key")]
    NoSigningKey,
}

/// A key that cannot be used, named by what it is (never by its content).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("is not a PEM-encoded RSA private key (PKCS#8 or PKCS#1)")]
    BadPrivateKey,
    #[error("is not a PEM-encoded RSA public key (SPKI or PKCS#1)")]
    BadPublicKey,
    #[error("RSA keys must be at least 2048 bits")]
    TooShort,
    #[error("does not match the private key")]
    Mismatch,
}

/// The id of a signing secret, put in the token's `kid` header: derived from the secret, so
/// every process holding the same secret agrees on it, and revealing nothing about it.
fn key_id(secret: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest([b"mmt-jwt-kid:".as_slice(), secret].concat());
    format!("hs-{}", hex::encode(&digest[..6]))
}

/// PEM from an environment variable: `.env` files often carry it on one line with `\n`.
fn unescape_pem(pem: &str) -> String {
    pem.replace("\\n", "\n").trim().to_owned()
}

/// An RSA public key as the JWKS publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RsaPublicKey {
    kid: String,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl RsaPublicKey {
    fn from_aws_lc(key: &aws_lc_rs::rsa::PublicKey) -> Result<Self, KeyError> {
        use sha2::Digest;
        if key.modulus_len() < 256 {
            return Err(KeyError::TooShort);
        }
        let modulus = key.modulus().big_endian_without_leading_zero().to_vec();
        let exponent = key.exponent().big_endian_without_leading_zero().to_vec();
        let digest = sha2::Sha256::digest([modulus.as_slice(), &exponent].concat());
        Ok(Self {
            kid: format!("rs-{}", hex::encode(&digest[..6])),
            modulus,
            exponent,
        })
    }

    /// An SPKI (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`) PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let block = ::pem::parse(unescape_pem(pem)).map_err(|_| KeyError::BadPublicKey)?;
        let key = aws_lc_rs::rsa::PublicKey::from_der(block.contents())
            .map_err(|_| KeyError::BadPublicKey)?;
        Self::from_aws_lc(&key)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn decoding_key(&self) -> Result<DecodingKey, KeyError> {
        DecodingKey::from_rsa_components(
            &URL_SAFE_NO_PAD.encode(&self.modulus),
            &URL_SAFE_NO_PAD.encode(&self.exponent),
        )
        .map_err(|_| KeyError::BadPublicKey)
    }

    /// The key as a JSON Web Key (RFC 7517): public parts only.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.modulus),
            "e": URL_SAFE_NO_PAD.encode(&self.exponent),
        })
    }
}

/// An RSA signing key and its public half.
#[derive(Clone)]
pub struct RsaPrivateKey {
    encoding: EncodingKey,
    public: RsaPublicKey,
}

impl std::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPrivateKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl RsaPrivateKey {
    /// A PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pem = unescape_pem(pem);
        let block = ::pem::parse(&pem).map_err(|_| KeyError::BadPrivateKey)?;
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(block.contents())
            .or_else(|_| aws_lc_rs::rsa::KeyPair::from_der(block.contents()))
            .map_err(|_| KeyError::BadPrivateKey)?;
        let public = RsaPublicKey::from_aws_lc(aws_lc_rs::signature::KeyPair::public_key(&pair))?;
        let encoding =
            EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| KeyError::BadPrivateKey)?;
        Ok(Self { encoding, public })
    }

    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }
}

/// The keys a [`TokenService`] signs and verifies with.
pub enum TokenKeys<'a> {
    /// HS256 with a shared secret; `old` secrets still verify during a rotation.
    Hmac {
        secret: &'a [u8],
        old: Vec<&'a [u8]>,
    },
    /// RS256. `signing` is `None` in a process that only verifies. `old_public` keys still
    /// verify during a rotation; `hmac_secrets` still verify the HS256 tokens issued before
    /// the switch to RSA, until they are removed.
    Rsa {
        signing: Option<RsaPrivateKey>,
        public: RsaPublicKey,
        old_public: Vec<RsaPublicKey>,
        hmac_secrets: Vec<&'a [u8]>,
    },
}

struct VerifyingKey {
    kid: String,
    /// The one algorithm this key verifies: a token naming another is refused, so an RSA
    /// public key can never be used as an HMAC secret.
    algorithm: Algorithm,
    key: DecodingKey,
    jwk: Option<serde_json::Value>,
}

/// The longest an admin token lives, whatever `ACCESS_TOKEN_TTL_SECS` says.
pub const ADMIN_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Issues and verifies access tokens with `iss`, `aud`, `sub`, `iat`, `nbf`, `exp`, `jti` and
/// `scope`, HS256 or RS256. Every key has an id (`kid` header) and one pinned algorithm:
/// `alg: none`, a token whose algorithm is not its key's, and an unknown `kid` all fail.
///
/// Rotation: tokens are signed with the current key and name it in `kid`; old keys still
/// verify the tokens they signed until they are removed. A token without a `kid` (issued
/// before `kid`) is checked against the current key only.
pub struct TokenService {
    signing: Option<(String, Algorithm, EncodingKey)>,
    /// The current key first.
    verifying: Vec<VerifyingKey>,
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
        let keys = TokenKeys::Hmac {
            secret,
            old: old_secrets.to_vec(),
        };
        Self::from_keys(keys, issuer, audience, ttl)
    }

    pub fn from_keys(keys: TokenKeys<'_>, issuer: &str, audience: &str, ttl: Duration) -> Self {
        let hmac = |secret: &[u8]| VerifyingKey {
            kid: key_id(secret),
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(secret),
            jwk: None,
        };
        let rsa = |public: &RsaPublicKey| {
            public.decoding_key().ok().map(|key| VerifyingKey {
                kid: public.kid.clone(),
                algorithm: Algorithm::RS256,
                key,
                jwk: Some(public.jwk()),
            })
        };
        let (signing, verifying) = match keys {
            TokenKeys::Hmac { secret, old } => (
                Some((
                    key_id(secret),
                    Algorithm::HS256,
                    EncodingKey::from_secret(secret),
                )),
                std::iter::once(secret).chain(old).map(hmac).collect(),
            ),
            TokenKeys::Rsa {
                signing,
                public,
                old_public,
                hmac_secrets,
            } => {
                let verifying = std::iter::once(&public)
                    .chain(&old_public)
                    .filter_map(rsa)
                    .chain(hmac_secrets.into_iter().map(hmac))
                    .collect();
                let signing =
                    signing.map(|key| (key.public.kid.clone(), Algorithm::RS256, key.encoding));
                (signing, verifying)
            }
        };
        Self {
            signing,
            verifying,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    /// The public keys tokens are verified with, as a JWKS document. HMAC secrets are never
    /// in it: with HS256 alone the set is empty.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<&serde_json::Value> = self
            .verifying
            .iter()
            .filter_map(|k| k.jwk.as_ref())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    fn verifying_key(&self, token: &str) -> Result<&VerifyingKey, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        let key = match header.kid.as_deref() {
            Some(kid) => self.verifying.iter().find(|k| k.kid == kid),
            None => self.verifying.first(),
        }
        .ok_or(AuthError::InvalidToken)?;
        if header.alg != key.algorithm {
            return Err(AuthError::InvalidToken);
        }
        Ok(key)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        validation
    }

    pub fn issue(&self, owner: &OwnerId, scopes: &[Scope]) -> Result<IssuedToken, AuthError> {
        let (kid, algorithm, key) = self.signing.as_ref().ok_or(AuthError::NoSigningKey)?;
        let now = unix_now();
        // An admin token reads the whole audit trail: it lives minutes, not hours.
        let ttl = if scopes.contains(&Scope::Admin) {
            self.ttl.min(ADMIN_TOKEN_TTL)
        } else {
            self.ttl
        };
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
            exp: now + ttl.as_secs(),
            jti: Uuid::new_v4().to_string(),
            scope: scope.clone(),
        };
        let mut header = Header::new(*algorithm);
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, key).map_err(AuthError::Signing)?;
        Ok(IssuedToken {
            access_token: token,
            token_type: "Bearer",
            expires_in: ttl.as_secs(),
            scope,
            subject: owner.as_str().to_owned(),
        })
    }

    fn part_audience(&self) -> String {
        format!("{}#upload-part", self.audience)
    }

    /// A signed [`PartGrant`], valid for `ttl`.
    pub fn issue_part_grant(&self, grant: &PartGrant, ttl: Duration) -> Result<String, AuthError> {
        self.issue_part_grant_at(grant, ttl, unix_now())
    }

    /// As [`TokenService::issue_part_grant`], as if it were `now` (Unix seconds).
    fn issue_part_grant_at(
        &self,
        grant: &PartGrant,
        ttl: Duration,
        now: u64,
    ) -> Result<String, AuthError> {
        let (kid, algorithm, key) = self.signing.as_ref().ok_or(AuthError::NoSigningKey)?;
        let claims = PartClaims {
            iss: self.issuer.clone(),
            aud: self.part_audience(),
            sub: grant.upload.clone(),
            nbf: now,
            exp: now + ttl.as_secs(),
            part: grant.part,
            len: grant.length,
        };
        let mut header = Header::new(*algorithm);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, &claims, key).map_err(AuthError::Signing)
    }

    /// The grant a part token carries, if this service signed it and it has not expired.
    pub fn verify_part_grant(&self, token: &str) -> Result<PartGrant, AuthError> {
        let key = self.verifying_key(token)?;
        let mut validation = self.validation(key.algorithm);
        validation.set_audience(&[self.part_audience()]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<PartClaims>(token, &key.key, &validation)
            .map_err(|_| AuthError::InvalidToken)?;
        Ok(PartGrant {
            upload: data.claims.sub,
            part: data.claims.part,
            length: data.claims.len,
        })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let key = self.verifying_key(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation(key.algorithm))
            .map_err(|_| AuthError::InvalidToken)?;
        let claims = data.claims;
        let owner = OwnerId::parse(&claims.sub).map_err(|_| AuthError::InvalidToken)?;
        let scopes = claims
            .scope
            .split_whitespace()
            .filter_map(Scope::parse)
            .collect();
        let at = |seconds: u64| {
            i64::try_from(seconds)
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .ok_or(AuthError::InvalidToken)
        };
        Ok(Principal {
            owner,
            scopes,
            token_id: claims.jti,
            issued_at: at(claims.iat)?,
            expires_at: at(claims.exp)?,
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Fresh RSA-2048 key pair as PEMs (PKCS#8 private, SPKI public), for `mmt secrets --rsa`.
pub fn generate_rsa_pems() -> Result<(String, String), KeyError> {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| KeyError::BadPrivateKey)?;
    let private: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeyError::BadPrivateKey)?;
    let public: PublicKeyX509Der<'static> = aws_lc_rs::signature::KeyPair::public_key(&pair)
        .as_der()
        .map_err(|_| KeyError::BadPublicKey)?;
    let encode = |tag: &str, der: &[u8]| {
        ::pem::encode_config(
            &::pem::Pem::new(tag, der.to_vec()),
            ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
        )
    };
    Ok((
        encode("PRIVATE KEY", private.as_ref()),
        encode("PUBLIC KEY", public.as_ref()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn service() -> TokenService {
        TokenService::new(SECRET, "mmt", "mmt-api", Duration::from_secs(60))
    }

    #[test]
    fn part_grants_and_access_tokens_never_stand_in_for_each_other() {
        let tokens = service();
        let grant = PartGrant {
            upload: "u-1".into(),
            part: 3,
            length: 8 * 1024 * 1024,
        };
        let signed = tokens
            .issue_part_grant(&grant, Duration::from_secs(60))
            .unwrap();
        assert_eq!(tokens.verify_part_grant(&signed).unwrap(), grant);
        assert!(matches!(
            tokens.verify(&signed),
            Err(AuthError::InvalidToken)
        ));
        let access = tokens
            .issue(&OwnerId::parse("user:a").unwrap(), &[Scope::Write])
            .unwrap();
        assert!(tokens.verify_part_grant(&access.access_token).is_err());
        let an_hour_ago = unix_now() - 3600;
        let expired = tokens
            .issue_part_grant_at(&grant, Duration::from_secs(60), an_hour_ago)
            .unwrap();
        assert!(tokens.verify_part_grant(&expired).is_err());
        let fresh = tokens
            .issue_part_grant_at(&grant, Duration::from_secs(60), unix_now())
            .unwrap();
        assert!(
            tokens.verify_part_grant(&fresh).is_ok(),
            "the same grant, in time"
        );
        let other = TokenService::new(
            b"another-secret-another-secret-00",
            "mmt",
            "mmt-api",
            Duration::from_secs(60),
        );
        assert!(other.verify_part_grant(&signed).is_err());
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

    fn rsa_service(private: &str, old_public: &[&str], hmac: Vec<&[u8]>) -> TokenService {
        let signing = RsaPrivateKey::from_pem(private).unwrap();
        let keys = TokenKeys::Rsa {
            public: signing.public_key().clone(),
            signing: Some(signing),
            old_public: old_public
                .iter()
                .map(|p| RsaPublicKey::from_pem(p).unwrap())
                .collect(),
            hmac_secrets: hmac,
        };
        TokenService::from_keys(keys, "mmt", "mmt-api", Duration::from_secs(60))
    }

    #[test]
    fn rs256_tokens_verify_publish_only_public_keys_and_rotate() {
        let (private, public) = generate_rsa_pems().unwrap();
        let (new_private, _) = generate_rsa_pems().unwrap();
        let owner = OwnerId::new_guest();
        let rsa = rsa_service(&private, &[], vec![SECRET]);
        let token = rsa.issue(&owner, &[Scope::Read]).unwrap().access_token;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert!(header.kid.as_deref().unwrap().starts_with("rs-"));
        assert_eq!(rsa.verify(&token).unwrap().owner, owner);

        // The JWKS: the one RSA key, public parts only; never the HMAC secret.
        let jwks = rsa.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["kid"], header.kid.unwrap().as_str());
        assert_eq!(keys[0]["alg"], "RS256");
        assert!(keys[0].get("d").is_none() && keys[0].get("k").is_none());
        let text = jwks.to_string();
        assert!(!text.contains(&URL_SAFE_NO_PAD.encode(SECRET)));
        assert_eq!(
            service().jwks(),
            serde_json::json!({"keys": []}),
            "HS256 publishes nothing"
        );

        // HS256 tokens from before the switch still verify; other secrets do not.
        let before = service()
            .issue(&owner, &[Scope::Read])
            .unwrap()
            .access_token;
        assert!(rsa.verify(&before).is_ok());

        // Rotation: the new key signs, the old public key still verifies, then retires.
        let rotated = rsa_service(&new_private, &[&public], vec![]);
        assert!(rotated.verify(&token).is_ok());
        assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);
        let retired = rsa_service(&new_private, &[], vec![]);
        assert!(retired.verify(&token).is_err());
        assert!(retired.verify(&before).is_err());
    }

    #[test]
    fn algorithm_confusion_and_forged_rsa_tokens_are_refused() {
        let (private, public) = generate_rsa_pems().unwrap();
        let service = rsa_service(&private, &[], vec![]);
        let kid = RsaPublicKey::from_pem(&public).unwrap().kid;
        // HS256 "signed" with the public key (which anyone can fetch), naming the RSA key.
        for secret in [
            public.as_bytes().to_vec(),
            public.trim().as_bytes().to_vec(),
        ] {
            for kid in [Some(kid.clone()), None] {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = kid;
                let forged =
                    jsonwebtoken::encode(&header, &claims(600), &EncodingKey::from_secret(&secret))
                        .unwrap();
                assert!(service.verify(&forged).is_err());
            }
        }
        // RS256 signed by another key under this key's kid, and under an unknown kid.
        let (attacker, _) = generate_rsa_pems().unwrap();
        let attacker_key = EncodingKey::from_rsa_pem(attacker.as_bytes()).unwrap();
        for kid in [Some(kid.clone()), Some("rs-000000000000".to_owned())] {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = kid;
            let forged = jsonwebtoken::encode(&header, &claims(600), &attacker_key).unwrap();
            assert!(service.verify(&forged).is_err());
        }
        // The right key, but expired, wrong audience, or another RSA algorithm.
        let good_key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
        let sign = |alg: Algorithm, claims: &serde_json::Value| {
            let mut header = Header::new(alg);
            header.kid = Some(kid.clone());
            jsonwebtoken::encode(&header, claims, &good_key).unwrap()
        };
        assert!(
            service
                .verify(&sign(Algorithm::RS256, &claims(600)))
                .is_ok()
        );
        assert!(
            service
                .verify(&sign(Algorithm::RS256, &claims(-3600)))
                .is_err()
        );
        let mut other_audience = claims(600);
        other_audience["aud"] = "someone-else".into();
        assert!(
            service
                .verify(&sign(Algorithm::RS256, &other_audience))
                .is_err()
        );
        for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
            assert!(service.verify(&sign(alg, &claims(600))).is_err(), "{alg:?}");
        }
        // A verify-only service cannot issue.
        let verify_only = TokenService::from_keys(
            TokenKeys::Rsa {
                signing: None,
                public: RsaPublicKey::from_pem(&public).unwrap(),
                old_public: vec![],
                hmac_secrets: vec![],
            },
            "mmt",
            "mmt-api",
            Duration::from_secs(60),
        );
        assert!(matches!(
            verify_only.issue(&OwnerId::new_guest(), &[Scope::Read]),
            Err(AuthError::NoSigningKey)
        ));
        assert!(
            verify_only
                .verify(&sign(Algorithm::RS256, &claims(600)))
                .is_ok()
        );
    }

    #[test]
    fn malformed_rsa_keys_are_refused_without_echoing_them() {
        assert_eq!(
            RsaPrivateKey::from_pem("not a pem")
                .err()
                .map(|e| e.to_string()),
            Some(KeyError::BadPrivateKey.to_string())
        );
        assert_eq!(
            RsaPublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .err(),
            Some(KeyError::BadPublicKey)
        );
        // A certificate-shaped PEM with a public key inside is not a bare key.
        let (_, public) = generate_rsa_pems().unwrap();
        let relabelled = public.replace("PUBLIC KEY", "PRIVATE KEY");
        assert!(RsaPrivateKey::from_pem(&relabelled).is_err());
    }
}
