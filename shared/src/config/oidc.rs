//! Clinic identity providers whose access tokens the API accepts (`OIDC_ISSUERS`).

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::{ConfigError, source::Source};
use crate::auth::Scope;
pub use crate::auth::oidc::OidcIssuer;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    name: String,
    issuer: String,
    audience: String,
    #[serde(default)]
    audience_claim: Option<String>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    roles_claim: Option<String>,
    #[serde(default)]
    role_scopes: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    jwks_cache_secs: Option<u64>,
    #[serde(default)]
    clock_skew_secs: Option<u64>,
}

fn invalid(reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: "OIDC_ISSUERS",
        reason: reason.into(),
    }
}

/// A clinician by default: read and write their own transcriptions and push them.
fn default_role_scopes() -> BTreeMap<String, Vec<Scope>> {
    BTreeMap::from([(
        "clinician".to_owned(),
        vec![Scope::Read, Scope::Write, Scope::EhrPush],
    )])
}

impl OidcIssuer {
    fn from_raw(raw: RawIssuer, production: bool) -> Result<Self, ConfigError> {
        let name_ok = (1..=32).contains(&raw.name.len())
            && raw
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(invalid(
                "each issuer needs a name of 1-32 of a-z, 0-9 and -",
            ));
        }
        let url = reqwest::Url::parse(&raw.issuer)
            .map_err(|_| invalid(format!("{}: issuer is not a URL", raw.name)))?;
        if production && url.scheme() != "https" {
            return Err(ConfigError::unsafe_setting(
                "OIDC_ISSUERS",
                "an issuer must be https:// in production",
            ));
        }
        if raw.audience.trim().is_empty() {
            return Err(invalid(format!("{}: audience is required", raw.name)));
        }
        let algorithms = raw
            .algorithms
            .unwrap_or_else(|| vec!["RS256".into()])
            .iter()
            .map(|a| match a.as_str() {
                "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" => a
                    .parse::<jsonwebtoken::Algorithm>()
                    .map_err(|_| invalid(format!("{}: unknown algorithm {a}", raw.name))),
                other => Err(invalid(format!(
                    "{}: {other} is not accepted (asymmetric algorithms only)",
                    raw.name
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let role_scopes = match raw.role_scopes {
            None => default_role_scopes(),
            Some(map) => map
                .into_iter()
                .map(|(role, scopes)| {
                    let parsed = scopes
                        .iter()
                        .map(|s| {
                            Scope::parse(s)
                                .ok_or_else(|| invalid(format!("{}: unknown scope {s}", raw.name)))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((role, parsed))
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        let audience_claim = match raw.audience_claim.as_deref() {
            None | Some("aud") => "aud".to_owned(),
            Some("client_id") => "client_id".to_owned(),
            Some(other) => {
                return Err(invalid(format!(
                    "{}: audience_claim {other} is neither aud nor client_id",
                    raw.name
                )));
            }
        };
        Ok(Self {
            name: raw.name,
            issuer: raw.issuer.trim_end_matches('/').to_owned(),
            audience: raw.audience,
            audience_claim,
            algorithms,
            roles_claim: raw.roles_claim.unwrap_or_else(|| "roles".into()),
            role_scopes,
            jwks_cache: Duration::from_secs(raw.jwks_cache_secs.unwrap_or(300).clamp(1, 86_400)),
            jwks_refetch_floor: Duration::from_secs(10).min(Duration::from_secs(
                raw.jwks_cache_secs.unwrap_or(300).max(1),
            )),
            leeway: Duration::from_secs(raw.clock_skew_secs.unwrap_or(30).min(300)),
        })
    }
}

/// `OIDC_ISSUERS`: a JSON list of issuers (empty when unset).
pub(super) fn parse_issuers(
    src: &Source<'_>,
    production: bool,
) -> Result<Vec<OidcIssuer>, ConfigError> {
    let Some(raw) = src.raw("OIDC_ISSUERS") else {
        return Ok(Vec::new());
    };
    let list: Vec<RawIssuer> = serde_json::from_str(&raw)
        .map_err(|e| invalid(format!("not a JSON list of issuers: {e}")))?;
    let issuers = list
        .into_iter()
        .map(|r| OidcIssuer::from_raw(r, production))
        .collect::<Result<Vec<_>, _>>()?;
    for (n, a) in issuers.iter().enumerate() {
        if issuers[..n]
            .iter()
            .any(|b| b.name == a.name || b.issuer == a.issuer)
        {
            return Err(invalid(format!("{} is configured twice", a.name)));
        }
    }
    Ok(issuers)
}

/// The web page's own sign-in through one of the issuers: a public client with PKCE.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WebSignIn {
    /// The issuer's name in `OIDC_ISSUERS` (`WEB_OIDC_ISSUER`).
    pub name: String,
    pub issuer: String,
    /// `WEB_OIDC_CLIENT_ID`: a public client (no secret) registered with the page's address
    /// as its redirect URI.
    pub client_id: String,
    /// `WEB_OIDC_SCOPE` (default `openid offline_access`: a refresh token for silent renewal).
    pub scope: String,
    /// `WEB_OIDC_RESOURCE`: the resource indicator (RFC 8707) that makes the provider issue
    /// an access token for MMT's API, where the provider needs one.
    pub resource: Option<String>,
}

pub(super) fn parse_web_sign_in(
    src: &Source<'_>,
    issuers: &[OidcIssuer],
) -> Result<Option<WebSignIn>, ConfigError> {
    let Some(name) = src.raw("WEB_OIDC_ISSUER") else {
        return Ok(None);
    };
    let issuer = issuers
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| ConfigError::Invalid {
            key: "WEB_OIDC_ISSUER",
            reason: format!("{name} is not an issuer of OIDC_ISSUERS"),
        })?;
    let client_id = src.raw("WEB_OIDC_CLIENT_ID").ok_or(ConfigError::Missing {
        key: "WEB_OIDC_CLIENT_ID",
        reason: "WEB_OIDC_ISSUER is set".into(),
    })?;
    Ok(Some(WebSignIn {
        name,
        issuer: issuer.issuer.clone(),
        client_id,
        scope: src
            .raw("WEB_OIDC_SCOPE")
            .unwrap_or_else(|| "openid offline_access".into()),
        resource: src.raw("WEB_OIDC_RESOURCE"),
    }))
}
