//! Access tokens from the clinic's OpenID Connect providers (Keycloak, Entra ID, Cognito, ...).
//!
//! A token names its issuer (`iss`); it is verified by that issuer's keys and rules alone:
//! the signing keys from the JWKS its discovery document names (fetched once and cached, so a
//! request costs no network call; fetched again when a token names an unknown `kid`, at most
//! every few seconds, and when the cache ages out, so a key the provider removed stops
//! verifying), the algorithms pinned for it, `aud`, `exp` and `nbf` (30 s leeway by default). Roles at a
//! configured claim path map to MMT scopes. The owner is `oidc:<issuer name>:<sub>`, never a
//! subject of MMT's own tokens or of another issuer.

use std::time::{Duration, Instant};

use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::{AuthError, Principal, Scope};
use crate::domain::OwnerId;

/// One OpenID Connect issuer.
#[derive(Debug, Clone)]
pub struct OidcIssuer {
    /// A short name for the issuer, part of its users' owner ids (`oidc:<name>:<sub>`).
    pub name: String,
    /// Exactly the `iss` its tokens carry; its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The audience MMT's tokens must carry (the API's identifier at the provider).
    pub audience: String,
    /// The claim that carries it: `aud` (default), or `client_id` for providers whose access
    /// tokens have no `aud` (Amazon Cognito).
    pub audience_claim: String,
    /// The JWS algorithms accepted from this issuer (default RS256), pinned: a token signed
    /// any other way is refused even with a valid signature.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Where the roles are in a token: a dotted path (`realm_access.roles` for Keycloak,
    /// `roles` for Entra ID app roles, `cognito:groups` for Cognito).
    pub roles_claim: String,
    /// Which MMT scopes each role grants (a user gets the union of their roles').
    pub role_scopes: std::collections::BTreeMap<String, Vec<Scope>>,
    /// How long fetched signing keys are trusted before they are fetched again; an unknown
    /// `kid` fetches them sooner (at most every `jwks_refetch_floor`).
    pub jwks_cache: Duration,
    pub jwks_refetch_floor: Duration,
    /// Clock skew allowed on `exp` and `nbf` (default 30 s).
    pub leeway: Duration,
}

/// The `iss` a token claims, before anything about it is trusted: only to choose who verifies.
pub fn claimed_issuer(token: &str) -> Option<String> {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["iss"]
        .as_str()
        .map(|s| s.trim_end_matches('/').to_owned())
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// One issuer's verifier, with its cached keys.
pub struct IssuerVerifier {
    config: OidcIssuer,
    http: reqwest::Client,
    keys: Mutex<Option<Keys>>,
}

/// Every configured issuer.
pub struct OidcVerifier {
    issuers: Vec<IssuerVerifier>,
}

impl OidcVerifier {
    pub fn new(issuers: &[OidcIssuer]) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            issuers: issuers
                .iter()
                .map(|config| IssuerVerifier {
                    config: config.clone(),
                    http: http.clone(),
                    keys: Mutex::new(None),
                })
                .collect(),
        })
    }

    /// The verifier of the issuer a token names, if it is one of ours.
    pub fn for_issuer(&self, issuer: &str) -> Option<&IssuerVerifier> {
        self.issuers.iter().find(|v| v.config.issuer == issuer)
    }
}

/// Why a provider's keys could not be had: never the token's fault, so never a 401.
#[derive(Debug, thiserror::Error)]
#[error("the identity provider's signing keys could not be fetched: {0}")]
pub struct KeysUnavailable(String);

impl IssuerVerifier {
    /// The discovery document's `jwks_uri`, then the key set.
    async fn fetch(&self) -> Result<JwkSet, KeysUnavailable> {
        let discovery = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let unavailable = |what: &str| KeysUnavailable(format!("{what} ({})", self.config.name));
        let document: Value = self
            .http
            .get(&discovery)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|_| unavailable("no discovery document"))?
            .json()
            .await
            .map_err(|_| unavailable("the discovery document is not JSON"))?;
        // The document must be the issuer's own (OpenID Connect Discovery 1.0, section 4.3).
        if document["issuer"].as_str().map(|i| i.trim_end_matches('/'))
            != Some(self.config.issuer.as_str())
        {
            return Err(unavailable("the discovery document names another issuer"));
        }
        let jwks_uri = document["jwks_uri"]
            .as_str()
            .ok_or_else(|| unavailable("the discovery document names no jwks_uri"))?;
        self.http
            .get(jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|_| unavailable("the key set could not be fetched"))?
            .json()
            .await
            .map_err(|_| unavailable("the key set is not a JWKS"))
    }

    /// The key `kid` names: from the cache while it is fresh; fetched again when it has aged
    /// out, or when the `kid` is unknown and the last fetch is not too recent.
    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, KeysUnavailable> {
        let mut cached = self.keys.lock().await;
        let age = cached.as_ref().map(|k| k.fetched.elapsed());
        let known = cached.as_ref().and_then(|k| k.set.find(kid)).is_some();
        let stale = age.is_none_or(|a| a >= self.config.jwks_cache);
        let may_refetch = age.is_none_or(|a| a >= self.config.jwks_refetch_floor);
        if stale || (!known && may_refetch) {
            match self.fetch().await {
                Ok(set) => {
                    *cached = Some(Keys {
                        set,
                        fetched: Instant::now(),
                    })
                }
                // The provider is down: keys it published keep verifying until it answers
                // again (a withdrawn key is dropped at the next successful fetch).
                Err(err) if known => {
                    tracing::warn!(issuer = %self.config.name, error = %err, "identity provider keys could not be refreshed; using the cached set");
                }
                Err(err) => return Err(err),
            }
        }
        Ok(cached
            .as_ref()
            .and_then(|k| k.set.find(kid))
            .and_then(|jwk| DecodingKey::from_jwk(jwk).ok()))
    }

    /// Verifies a token this issuer signed.
    pub async fn verify(
        &self,
        token: &str,
    ) -> Result<Result<Principal, AuthError>, KeysUnavailable> {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(Err(AuthError::InvalidToken));
        };
        if !self.config.algorithms.contains(&header.alg) {
            return Ok(Err(AuthError::InvalidToken));
        }
        let Some(kid) = header.kid else {
            return Ok(Err(AuthError::InvalidToken));
        };
        let Some(key) = self.key(&kid).await? else {
            return Ok(Err(AuthError::InvalidToken));
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = self.config.algorithms.clone();
        validation.set_issuer(&[&self.config.issuer, &format!("{}/", self.config.issuer)]);
        if self.config.audience_claim == "aud" {
            validation.set_audience(&[&self.config.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        } else {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        }
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway.as_secs();
        let Ok(data) = jsonwebtoken::decode::<Value>(token, &key, &validation) else {
            return Ok(Err(AuthError::InvalidToken));
        };
        if self.config.audience_claim != "aud"
            && data.claims[&self.config.audience_claim].as_str() != Some(&self.config.audience)
        {
            return Ok(Err(AuthError::InvalidToken));
        }
        Ok(self.principal(&data.claims))
    }

    fn principal(&self, claims: &Value) -> Result<Principal, AuthError> {
        let sub = claims["sub"].as_str().ok_or(AuthError::InvalidToken)?;
        let owner = owner_for(&self.config.name, sub)?;
        let mut scopes: Vec<Scope> = Vec::new();
        for role in roles_at(claims, &self.config.roles_claim) {
            for scope in self.config.role_scopes.get(&role).into_iter().flatten() {
                if !scopes.contains(scope) {
                    scopes.push(*scope);
                }
            }
        }
        let at = |name: &str| {
            claims[name]
                .as_i64()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        };
        let expires_at = at("exp").ok_or(AuthError::InvalidToken)?;
        Ok(Principal {
            owner,
            scopes,
            // Sign-out revokes by `jti`; a provider that sets none is revoked by subject.
            token_id: claims["jti"].as_str().map_or_else(
                || format!("{}:{}", self.config.name, sub),
                |jti| format!("{}:{jti}", self.config.name),
            ),
            issued_at: at("iat").unwrap_or(expires_at),
            expires_at,
        })
    }
}

/// `oidc:<issuer>:<sub>`, the `sub` hashed where it has characters an owner id cannot hold.
fn owner_for(issuer: &str, sub: &str) -> Result<OwnerId, AuthError> {
    let plain = format!("oidc:{issuer}:{sub}");
    OwnerId::parse(&plain)
        .or_else(|_| {
            let digest = hex::encode(Sha256::digest(sub.as_bytes()));
            OwnerId::parse(&format!("oidc:{issuer}:h-{}", &digest[..40]))
        })
        .map_err(|_| AuthError::InvalidToken)
}

/// The roles at a dotted claim path: an array of strings, or a space-separated string.
fn roles_at(claims: &Value, path: &str) -> Vec<String> {
    let mut at = claims;
    // A claim name may itself hold a dot-free prefix such as `cognito:groups`.
    for part in path.split('.') {
        at = &at[part];
    }
    match at {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_read_at_keycloak_and_entra_paths() {
        let keycloak =
            serde_json::json!({"realm_access": {"roles": ["clinician", "offline_access"]}});
        assert_eq!(
            roles_at(&keycloak, "realm_access.roles"),
            ["clinician", "offline_access"]
        );
        let entra = serde_json::json!({"roles": ["clinician"]});
        assert_eq!(roles_at(&entra, "roles"), ["clinician"]);
        let cognito = serde_json::json!({"cognito:groups": ["clinician"]});
        assert_eq!(roles_at(&cognito, "cognito:groups"), ["clinician"]);
        assert!(roles_at(&entra, "realm_access.roles").is_empty());
    }

    #[test]
    fn an_issuers_subjects_are_its_own() {
        assert_eq!(owner_for("kc", "ana").unwrap().as_str(), "oidc:kc:ana");
        let odd = owner_for("entra", "AAAAA/BBBB+CCC=").unwrap();
        assert!(odd.as_str().starts_with("oidc:entra:h-"), "{odd}");
        assert_ne!(
            owner_for("kc", "ana").unwrap(),
            OwnerId::for_user("ana").unwrap()
        );
    }
}
