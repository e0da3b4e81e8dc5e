//! Error reports to Sentry (or anything that speaks its envelope protocol, such as GlitchTip).
//!
//! MMT's own log events never carry PHI; this scrubber is the second wall, for what an SDK
//! integration adds on its own and for a careless field name in the future. It runs on every
//! event and breadcrumb before it leaves the process: request bodies, cookies, query strings and
//! credential headers go, and so does every field whose name suggests content (transcript, text,
//! prompt, file name, patient, note, ...) or a credential; bearer tokens are cut out of messages.

use std::{borrow::Cow, sync::Arc};

use secrecy::ExposeSecret;
use sentry::protocol::{Breadcrumb, Context, Event, Map, Value};

use crate::config::SentryConfig;

pub(super) fn init(config: &SentryConfig) -> sentry::ClientInitGuard {
    let mut options = sentry::ClientOptions::new()
        .traces_sample_rate(config.traces_sample_rate)
        .release(Cow::Borrowed(concat!("mmt@", env!("CARGO_PKG_VERSION"))))
        .environment(Cow::Owned(config.environment.clone()));
    options.send_default_pii = false;
    options.before_send = Some(Arc::new(|event| Some(scrub_event(event))));
    options.before_breadcrumb = Some(Arc::new(|crumb| Some(scrub_breadcrumb(crumb))));
    options.dsn = config.dsn.expose_secret().parse().ok();
    sentry::init(options)
}

/// Field names (lower-cased, matched anywhere in the name) that may hold PHI or credentials.
const DENIED_FIELD_PARTS: &[&str] = &[
    "transcript",
    "text",
    "prompt",
    "file",
    "name",
    "patient",
    "note",
    "body",
    "content",
    "segment",
    "email",
    "phone",
    "address",
    "birth",
    "dob",
    "mrn",
    "ssn",
    "auth",
    "cookie",
    "token",
    "password",
    "secret",
    "key",
    "dsn",
];

/// Request headers that are safe to keep; everything else (authorization, cookies, API keys,
/// forwarded-for addresses) is dropped.
const KEPT_HEADERS: &[&str] = &[
    "accept",
    "content-length",
    "content-type",
    "user-agent",
    "x-correlation-id",
    "traceparent",
];

/// Opaque ids whose names happen to contain a denied part.
const ALLOWED_FIELDS: &[&str] = &["transcription_id", "delivery_id", "blob_key"];

pub fn field_may_hold_phi(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !ALLOWED_FIELDS.contains(&name.as_str())
        && DENIED_FIELD_PARTS.iter().any(|part| name.contains(part))
}

pub fn scrub_event(mut event: Event<'static>) -> Event<'static> {
    if let Some(request) = event.request.as_mut() {
        request.data = None;
        request.cookies = None;
        request.query_string = None;
        request.env.clear();
        request
            .headers
            .retain(|name, _| KEPT_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
        if let Some(url) = request.url.as_mut() {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_password(None);
            let _ = url.set_username("");
        }
    }
    event.user = None;
    event.message = event.message.map(|m| redact_tokens(&m));
    if let Some(entry) = event.logentry.as_mut() {
        entry.message = redact_tokens(&entry.message);
        entry.params.clear();
    }
    for exception in event.exception.values.iter_mut() {
        exception.value = exception.value.as_deref().map(redact_tokens);
    }
    event.tags.retain(|name, _| !field_may_hold_phi(name));
    for value in event.tags.values_mut() {
        *value = redact_tokens(value);
    }
    scrub_map(&mut event.extra);
    for context in event.contexts.values_mut() {
        match context {
            Context::Other(map) => scrub_map(map),
            Context::Trace(trace) => {
                scrub_map(&mut trace.data);
                trace.description = trace.description.as_deref().map(redact_tokens);
            }
            _ => {}
        }
    }
    // Contexts are keyed by name too: a context called `patient` goes whole.
    event.contexts.retain(|name, _| !field_may_hold_phi(name));
    let crumbs = std::mem::take(&mut event.breadcrumbs.values);
    event.breadcrumbs.values = crumbs.into_iter().map(scrub_breadcrumb).collect();
    event
}

pub fn scrub_breadcrumb(mut crumb: Breadcrumb) -> Breadcrumb {
    crumb.message = crumb.message.map(|m| redact_tokens(&m));
    scrub_map(&mut crumb.data);
    crumb
}

fn scrub_map(map: &mut Map<String, Value>) {
    map.retain(|name, _| !field_may_hold_phi(name));
    for value in map.values_mut() {
        scrub_value(value);
    }
}

fn scrub_value(value: &mut Value) {
    match value {
        Value::String(s) => *s = redact_tokens(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(map) => {
            map.retain(|name, _| !field_may_hold_phi(name));
            map.values_mut().for_each(scrub_value);
        }
        _ => {}
    }
}

/// Cuts credentials out of free text: whatever follows `Bearer `, JWTs (`eyJ….….…`), API keys
/// (`sk-…`), long opaque tokens (OpenEMR's refresh tokens are hundreds of hex characters), and
/// the value of any JSON string field whose name may hold PHI or a credential
/// (`"refresh_token":"…"`, `"patient":"…"`), wherever they sit in the text.
pub fn redact_tokens(text: &str) -> String {
    let text = redact_json_fields(text);
    let mut out = String::with_capacity(text.len());
    let mut after_bearer = false;
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let run_len = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        if run_len == 0 {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
            if !c.is_whitespace() {
                after_bearer = false;
            }
            continue;
        }
        let run = &rest[..run_len];
        // A sentence's full stop is not part of the token before it.
        let word = run.trim_end_matches('.');
        if after_bearer || looks_like_credential(word) {
            out.push_str("[redacted]");
            out.push_str(&run[word.len()..]);
        } else {
            out.push_str(run);
        }
        after_bearer = run.eq_ignore_ascii_case("bearer");
        rest = &rest[run_len..];
    }
    out
}

/// Characters of tokens as they are written: base64, base64url, hex, JWT dots.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._~+/=-".contains(c)
}

fn looks_like_credential(run: &str) -> bool {
    let jwt = run.starts_with("eyJ") && run.matches('.').count() >= 2;
    let api_key = run.starts_with("sk-") && run.len() >= 20;
    // Long opaque strings of letters and digits; paths and file names (with `/` or `.`) and
    // UUIDs (36 characters) are not credentials.
    let opaque = run.len() >= 40
        && !run.contains(['/', '.'])
        && run.chars().any(|c| c.is_ascii_digit())
        && run.chars().any(|c| c.is_ascii_alphabetic());
    jwt || api_key || opaque
}

/// `"name": "value"` with a name that may hold PHI or a credential → `"name": "[redacted]"`.
fn redact_json_fields(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('"') {
        let after_open = &rest[open + 1..];
        let Some(close) = after_open.find('"') else {
            break;
        };
        let name = &after_open[..close];
        let after_name = &after_open[close + 1..];
        let colon = after_name.trim_start();
        let value = colon.strip_prefix(':').map(str::trim_start);
        match value.and_then(|v| v.strip_prefix('"')) {
            Some(value) if field_may_hold_phi(name) => {
                // The value's end: the next quote not escaped.
                let mut end = None;
                let mut escaped = false;
                for (i, c) in value.char_indices() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => {
                            end = Some(i);
                            break;
                        }
                        _ => escaped = false,
                    }
                }
                let Some(end) = end else { break };
                let value_start = text.len() - value.len();
                let consumed = text.len() - rest.len();
                out.push_str(&text[consumed..value_start]);
                out.push_str("[redacted]\"");
                rest = &value[end + 1..];
            }
            _ => {
                out.push_str(&rest[..open + 1 + close + 1]);
                rest = after_name;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use sentry::protocol::{Exception, Request, TraceContext, Values};

    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJndWVzdCJ9.c2lnbmF0dXJl";

    #[test]
    fn what_may_hold_phi_or_credentials_never_leaves() {
        let mut event = Event::new();
        event.message = Some(format!("upstream refused Bearer {JWT} for job 42"));
        event.request = Some(Request {
            url: "https://user:pw@api.example.com/v1/transcriptions/abc?cursor=Jane"
                .parse()
                .ok(),
            method: Some("POST".into()),
            data: Some("Patient Jane Roe".into()),
            query_string: Some("name=Jane".into()),
            cookies: Some("session=1".into()),
            headers: [
                ("Authorization", format!("Bearer {JWT}")),
                ("Cookie", "session=1".into()),
                ("X-Api-Key", "k".into()),
                ("X-Forwarded-For", "10.0.0.7".into()),
                ("Content-Type", "audio/wav".into()),
                ("x-correlation-id", "corr-9".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            ..Default::default()
        });
        event.user = Some(sentry::User {
            username: Some("dr-roe".into()),
            ..Default::default()
        });
        event.extra.insert("transcript".into(), "Jane Roe".into());
        event
            .extra
            .insert("file_name".into(), "Jane-Roe.wav".into());
        event.extra.insert("correlation_id".into(), "corr-9".into());
        event.extra.insert("transcription_id".into(), "tr-5".into());
        event.extra.insert(
            "nested".into(),
            serde_json::json!({"patient_name": "Jane Roe", "queue": "transcribe", "why": JWT}),
        );
        event.tags.insert("patient".into(), "Jane Roe".into());
        event
            .tags
            .insert("route".into(), "/v1/transcriptions".into());
        event.contexts.insert(
            "trace".into(),
            Context::Trace(Box::new(TraceContext {
                data: [("prompt".to_owned(), Value::from("Jane"))]
                    .into_iter()
                    .collect(),
                ..Default::default()
            })),
        );
        event.exception = Values {
            values: vec![Exception {
                ty: "EngineError".into(),
                value: Some(format!("401 for token {JWT}")),
                ..Default::default()
            }],
        };
        let mut crumb = Breadcrumb {
            message: Some("request completed".into()),
            ..Default::default()
        };
        crumb.data.insert("text".into(), "Jane Roe".into());
        crumb.data.insert("status".into(), 200.into());
        event.breadcrumbs = Values {
            values: vec![crumb],
        };

        let scrubbed = scrub_event(event);
        let wire = serde_json::to_string(&scrubbed).unwrap();
        for leaked in ["Jane", "Roe", JWT, "session=1", "10.0.0.7", "pw@", "dr-roe"] {
            assert!(!wire.contains(leaked), "{leaked:?} left in {wire}");
        }
        // What an operator needs is still there.
        for kept in [
            "corr-9",
            "tr-5",
            "transcribe",
            "/v1/transcriptions",
            "request completed",
            "audio/wav",
            "EngineError",
            "job 42",
        ] {
            assert!(wire.contains(kept), "{kept:?} lost from {wire}");
        }
    }

    #[test]
    fn tokens_are_cut_from_free_text() {
        assert_eq!(
            redact_tokens(&format!("got ({JWT}) back")),
            "got ([redacted]) back"
        );
        assert_eq!(redact_tokens("bearer abc def"), "bearer [redacted] def");
        assert_eq!(redact_tokens("nothing here"), "nothing here");
    }

    #[test]
    fn credentials_inside_json_and_opaque_keys_are_cut_too() {
        let refresh = format!("def50200{}", "0a1b2c3d".repeat(40));
        let body = format!(
            r#"OpenEMR answered {{"access_token":"{JWT}","refresh_token":"{refresh}","token_type":"Bearer","patient": "Jane Roe","expires_in":3600}}"#
        );
        let redacted = redact_tokens(&body);
        for leaked in [JWT, refresh.as_str(), "Jane Roe"] {
            assert!(!redacted.contains(leaked), "{leaked} left in {redacted}");
        }
        assert!(redacted.contains(r#""expires_in":3600"#), "{redacted}");
        assert!(redacted.contains("OpenEMR answered"), "{redacted}");
        // An OpenAI key in an error message, and the refresh token bare in text.
        let key = "sk-proj-AbCdEf0123456789AbCdEf0123456789";
        assert_eq!(
            redact_tokens(&format!("key {key} refused; token {refresh}.")),
            "key [redacted] refused; token [redacted]."
        );
        // Ids, routes and file names an operator needs stay.
        for kept in [
            "transcription 0190e5c8-7a4b-7c3e-9f21-5b6d7e8f9a0b failed",
            "GET /v1/transcriptions/0190e5c8-7a4b-7c3e-9f21-5b6d7e8f9a0b/transcript",
            "blob audio/0190e5c8-7a4b-7c3e-9f21-5b6d7e8f9a0b.wav missing",
            r#"{"queue":"transcribe","attempt":2}"#,
        ] {
            assert_eq!(redact_tokens(kept), kept);
        }
    }
}
