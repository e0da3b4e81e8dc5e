//! The web page (`web/`): served at `/` by the one-process server, built into the binary so
//! the server needs no files beside it. The same files deploy unchanged to any static host.

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};

use crate::app::AppState;

const INDEX: &str = include_str!("../../../../web/index.html");
const APP_JS: &str = include_str!("../../../../web/app.js");
const APP_CSS: &str = include_str!("../../../../web/app.css");
const PCM_WORKLET_JS: &str = include_str!("../../../../web/pcm-worklet.js");
const DEFAULT_CONFIG_JS: &str = include_str!("../../../../web/config.js");

/// The page's own policy: its files from here, API calls to the APIs it is configured for
/// (any, in a demo), audio from the page's own recordings; nothing else, and never in a frame.
fn page_policy(state: &AppState) -> String {
    let others: Vec<&str> = [
        state.config.web_sign_in.as_ref().map(|s| s.issuer.as_str()),
        state.config.live.public_url.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let connect = state
        .config
        .http
        .web
        .connect_sources(state.config.demo_mode, &others);
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src {connect}; \
         media-src 'self' blob:; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'"
    )
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/pcm-worklet.js",
            get(|| async { asset(PCM_WORKLET_JS, "text/javascript; charset=utf-8") }),
        )
        .route("/config.js", get(config_js))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn index(State(state): State<AppState>) -> Response {
    let policy = HeaderValue::from_str(&page_policy(&state))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    (
        [
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Html(INDEX),
    )
        .into_response()
}

/// `window.__MMT_CONFIG` from `WEB_API_BASE_URL` / `WEB_PRODUCTION_API_BASE_URL`, or the
/// default file when neither is set.
async fn config_js(State(state): State<AppState>) -> Response {
    let web = &state.config.http.web;
    if web.api_base_url.is_none() && web.production_api_base_url.is_none() {
        return asset(DEFAULT_CONFIG_JS, "text/javascript; charset=utf-8");
    }
    let config = serde_json::json!({
        "API_BASE_URL": web.api_base_url,
        "PRODUCTION_API_BASE_URL": web.production_api_base_url,
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        format!("window.__MMT_CONFIG = {config};\n"),
    )
        .into_response()
}
