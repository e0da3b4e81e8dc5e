//! `GET /openapi.json` and `GET /docs`: the API description and its page.

use std::sync::LazyLock;

use axum::{
    Json,
    http::header,
    response::{Html, IntoResponse},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
}

static DOCUMENT: LazyLock<serde_json::Value> = LazyLock::new(|| {
    serde_json::to_value(crate::http::openapi()).expect("the OpenAPI document serialises")
});

/// The OpenAPI 3.1 document, generated from the route definitions.
#[utoipa::path(get, path = "/openapi.json", tag = "docs", responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
async fn openapi_json() -> impl IntoResponse {
    Json(DOCUMENT.clone())
}

/// A browsable page over `/openapi.json` (self-contained: no CDN).
#[utoipa::path(get, path = "/docs", tag = "docs", responses((status = 200, description = "HTML page", content_type = "text/html")))]
async fn docs_page() -> impl IntoResponse {
    // The page's own inline script and style, nothing from anywhere else.
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )],
        Html(include_str!("docs.html")),
    )
}
