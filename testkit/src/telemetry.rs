//! A local stand-in for where telemetry goes: it records every request it is sent. Point
//! `SENTRY_DSN` at [`TelemetryReceiver::sentry_dsn`] (it speaks Sentry's envelope endpoint,
//! `POST /api/<project>/envelope/`) or `OTEL_EXPORTER_OTLP_ENDPOINT` at
//! [`TelemetryReceiver::base_url`] (OTLP/HTTP, `POST /v1/traces`), then read back exactly what
//! left the process under test.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::HeaderMap,
    routing::post,
};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

pub struct TelemetryReceiver {
    addr: SocketAddr,
    deliveries: Log,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TelemetryReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record(
    State(log): State<Log>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    log.lock().unwrap().push(Delivery {
        path: format!("/{path}"),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    });
    // Sentry answers an envelope with its event id; `{}` is accepted by every client.
    "{}"
}

impl TelemetryReceiver {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let deliveries = Log::default();
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(deliveries.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            deliveries,
            server,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A DSN for project 1 with public key `mmt-test-key`.
    pub fn sentry_dsn(&self) -> String {
        format!("http://mmt-test-key@{}/1", self.addr)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Every byte received, bodies and headers, as text: for "this string never left" checks.
    pub fn everything_received(&self) -> String {
        self.deliveries()
            .iter()
            .map(|d| {
                let headers: Vec<String> =
                    d.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!(
                    "{}\n{}\n{}",
                    d.path,
                    headers.join("\n"),
                    String::from_utf8_lossy(&d.body)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The items of every Sentry envelope received, as `(item type, payload)`.
    pub fn sentry_items(&self) -> Vec<(String, Value)> {
        self.deliveries()
            .iter()
            .filter(|d| d.path.ends_with("/envelope/"))
            .flat_map(|d| envelope_items(&d.body))
            .collect()
    }

    /// The spans of every OTLP/HTTP JSON export received, flattened.
    pub fn otlp_spans(&self) -> Vec<Value> {
        self.deliveries()
            .iter()
            .filter(|d| d.path == "/v1/traces")
            .filter_map(|d| serde_json::from_slice::<Value>(&d.body).ok())
            .flat_map(|export| {
                let mut spans = Vec::new();
                for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                    }
                }
                spans
            })
            .collect()
    }
}

/// An envelope is a header line, then per item a header line and a payload (of the header's
/// `length`, or up to the next newline).
fn envelope_items(body: &[u8]) -> Vec<(String, Value)> {
    let mut items = Vec::new();
    let mut rest = match body.iter().position(|b| *b == b'\n') {
        Some(end) => &body[end + 1..],
        None => return items,
    };
    while !rest.is_empty() {
        let header_end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let Ok(header) = serde_json::from_slice::<Value>(&rest[..header_end]) else {
            break;
        };
        rest = rest.get(header_end + 1..).unwrap_or_default();
        let length = header["length"]
            .as_u64()
            .map(|l| l as usize)
            .unwrap_or_else(|| rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len()));
        let payload = &rest[..length.min(rest.len())];
        items.push((
            header["type"].as_str().unwrap_or_default().to_owned(),
            serde_json::from_slice(payload).unwrap_or(Value::Null),
        ));
        rest = rest.get(length + 1..).unwrap_or_default();
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_split_into_items() {
        let body = b"{\"event_id\":\"e1\"}\n{\"type\":\"event\",\"length\":13}\n{\"level\":\"x\"}\n{\"type\":\"session\"}\n{\"sid\":\"s\"}\n";
        let items = envelope_items(body);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].0, "event");
        assert_eq!(items[0].1["level"], "x");
        assert_eq!(items[1].0, "session");
        assert_eq!(items[1].1["sid"], "s");
    }
}
