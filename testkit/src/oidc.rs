//! A real OpenID Provider for the sign-in tests: `testkit/oidc/provider.mjs` runs
//! oidc-provider from npm (installed by `make setup`) on loopback, and this starts it, restarts
//! it with other keys (a key rotation), and asks it for access tokens as a client would.

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::Stdio,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A client of the provider, and the claims its tokens carry (roles, groups).
#[derive(Debug, Clone)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    pub claims: Value,
}

impl OidcClient {
    pub fn new(client_id: &str, claims: Value) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: format!("{client_id}-secret-0123456789abcdef0123456789"),
            claims,
        }
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc/provider.mjs")
}

/// A fresh RSA signing key as a private JWK with `kid` (made by Node's crypto).
pub async fn signing_key(kid: &str) -> std::io::Result<Value> {
    let out = Command::new("node")
        .arg("-e")
        .arg(
            "const { generateKeyPairSync } = require('node:crypto');\
             const k = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });\
             process.stdout.write(JSON.stringify(k));",
        )
        .output()
        .await?;
    let mut key: Value = serde_json::from_slice(&out.stdout).map_err(std::io::Error::other)?;
    key["kid"] = json!(kid);
    key["alg"] = json!("RS256");
    key["use"] = json!("sig");
    Ok(key)
}

/// A running provider; stops when dropped.
pub struct OidcProvider {
    port: u16,
    clients: Vec<OidcClient>,
    dir: tempfile::TempDir,
    child: Child,
    http: reqwest::Client,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?
        .local_addr()?
        .port())
}

async fn spawn(
    port: u16,
    keys: &[Value],
    clients: &[OidcClient],
    dir: &tempfile::TempDir,
) -> std::io::Result<Child> {
    let keys_file = dir.path().join("keys.json");
    std::fs::write(&keys_file, serde_json::to_vec(keys)?)?;
    let clients: Vec<Value> = clients
        .iter()
        .map(|c| json!({"client_id": c.client_id, "client_secret": c.client_secret, "claims": c.claims}))
        .collect();
    let mut child = Command::new("node")
        .arg(script())
        .env("PORT", port.to_string())
        .env("KEYS", &keys_file)
        .env("CLIENTS", serde_json::to_string(&clients)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("ready ") {
                return Ok(());
            }
        }
        Err(std::io::Error::other(
            "the provider exited before it was ready",
        ))
    })
    .await
    .map_err(|_| std::io::Error::other("the provider did not start within 30 s"))?;
    ready?;
    Ok(child)
}

impl OidcProvider {
    /// Starts the provider with `keys` (the first signs; all are published) and `clients`.
    pub async fn start(keys: &[Value], clients: &[OidcClient]) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let child = spawn(port, keys, clients, &dir).await?;
        Ok(Self {
            port,
            clients: clients.to_vec(),
            dir,
            child,
            http: reqwest::Client::new(),
        })
    }

    /// Its issuer (`iss` of its tokens, base of its discovery document).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The same provider, same address and clients, with another key set: how a provider
    /// rotates (publish the new key beside the old, sign with the new, drop the old later).
    pub async fn restart_with_keys(&mut self, keys: &[Value]) -> std::io::Result<()> {
        self.child.kill().await?;
        self.child = spawn(self.port, keys, &self.clients, &self.dir).await?;
        Ok(())
    }

    /// The provider goes down (an outage); `restart_with_keys` brings it back.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.child.kill().await
    }

    /// An access token for `client_id` from the client-credentials grant, for `resource`
    /// (`urn:mmt:api`; `urn:mmt:api:short` lives one second; `urn:other:api` is another API).
    pub async fn token(&self, client_id: &str, resource: &str) -> Result<String, String> {
        let client = self
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .ok_or_else(|| format!("no client {client_id}"))?;
        let answer: Value = self
            .http
            .post(format!("{}/token", self.issuer()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client.client_id.as_str()),
                ("client_secret", client.client_secret.as_str()),
                ("resource", resource),
                ("scope", "mmt"),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        answer["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no access token: {answer}"))
    }
}
