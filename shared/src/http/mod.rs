//! The HTTP API: one router, split into groups so each Lambda function serves its own routes
//! and the local server serves them all. The OpenAPI document is generated from the same
//! route definitions, so it cannot drift from what the server does.

mod correlation;
mod error;
mod extract;
pub mod rate_limit;
pub mod routes;
mod schema;
mod security_headers;

pub use correlation::{CORRELATION_HEADER, CorrelationId};
pub use error::{ApiError, ErrorBody, ErrorDetail};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, header},
    middleware,
};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// The routes each Lambda function serves. The local server serves every group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// `GET /health/live`, `GET /health/ready` — function `health`.
    Health,
    /// `GET /demo/status` — function `demo-status`.
    DemoStatus,
    /// `POST /auth/guest`, `/auth/login`, `/auth/admin`, `/auth/logout`, `GET /.well-known/jwks.json`,
    /// `GET /v1/admin/audit` — function `auth`.
    Auth,
    /// `POST /v1/transcriptions`, `/v1/uploads/**` (resumable uploads),
    /// `POST /v1/audio/transcriptions` (OpenAI-compatible, synchronous) — function `upload`.
    Upload,
    /// `GET /v1/transcriptions`, `GET|DELETE /v1/transcriptions/{id}`,
    /// `GET /v1/transcriptions/{id}/transcript` — function `transcriptions`.
    Transcriptions,
    /// `GET /openapi.json`, `GET /docs` — function `docs`.
    Docs,
    /// `POST|GET /v1/transcriptions/{id}/ehr`, `GET /v1/admin/ehr` — function `ehr-push`.
    EhrPush,
}

impl RouteGroup {
    pub const ALL: [RouteGroup; 7] = [
        Self::Health,
        Self::DemoStatus,
        Self::Auth,
        Self::Upload,
        Self::Transcriptions,
        Self::Docs,
        Self::EhrPush,
    ];

    /// The Lambda function (crate under `functions/`) that serves this group.
    pub fn function_name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::DemoStatus => "demo-status",
            Self::Auth => "auth",
            Self::Upload => "upload",
            Self::Transcriptions => "transcriptions",
            Self::Docs => "docs",
            Self::EhrPush => "ehr-push",
        }
    }

    /// The OpenAPI description of this group's routes alone.
    pub fn openapi(self) -> utoipa::openapi::OpenApi {
        merged(&[self]).split_for_parts().1
    }

    fn routes(self) -> OpenApiRouter<AppState> {
        match self {
            Self::Health => routes::health::routes(),
            Self::DemoStatus => routes::demo::routes(),
            Self::Auth => routes::auth::routes().merge(routes::admin::routes()),
            Self::Upload => routes::upload::routes()
                .merge(routes::resumable_upload::routes())
                .merge(routes::openai_compat::routes()),
            Self::Transcriptions => routes::transcriptions::routes()
                .merge(routes::edits::routes())
                .merge(routes::vocabulary::routes()),
            Self::Docs => routes::docs::routes(),
            Self::EhrPush => routes::ehr::routes(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MMT — medical transcription API",
        description = "Upload a recording, get an owner-only transcript. Every route except health, \
                       demo status and docs needs a bearer token from /auth/guest or /auth/login.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

fn merged(groups: &[RouteGroup]) -> OpenApiRouter<AppState> {
    groups.iter().fold(
        OpenApiRouter::with_openapi(ApiDoc::openapi()),
        |router, group| router.merge(group.routes()),
    )
}

/// The OpenAPI document for the whole API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = merged(&RouteGroup::ALL).split_for_parts().1;
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The router for some groups, with the middleware every route shares. The docs group is left
/// out when `ENABLE_DOCS` is off.
pub fn router(groups: &[RouteGroup], state: AppState) -> Router {
    with_middleware(groups, None, state)
}

fn with_middleware(
    groups: &[RouteGroup],
    pages: Option<Router<AppState>>,
    state: AppState,
) -> Router {
    let served: Vec<RouteGroup> = groups
        .iter()
        .copied()
        .filter(|g| *g != RouteGroup::Docs || state.config.http.docs_enabled)
        .collect();
    let (mut routes, _) = merged(&served).split_for_parts();
    if let Some(pages) = pages {
        routes = routes.merge(pages);
    }
    let cors = cors_layer(&state.config.http.cors_allow_origins);
    let router = routes
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(
            state.config.http.json_body_limit_bytes,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            routes::metrics::track_requests,
        ))
        .layer(middleware::from_fn(security_headers::limit_header_size))
        .layer(middleware::from_fn(security_headers::add_security_headers))
        .layer(middleware::from_fn(correlation::correlate));
    // Outside the request span, so the flush sees it closed and sends it.
    let router = match state.config.in_lambda {
        true => router.layer(middleware::from_fn(flush_telemetry)),
        false => router,
    }
    .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Every route, `/metrics` and the web page, for the one-process server. In production
/// `/metrics` is served only behind `METRICS_TOKEN`: its counters say how busy the clinic is.
pub fn full_router(state: AppState) -> Router {
    let serve_metrics =
        state.config.http.metrics_token.is_some() || !state.config.environment.is_production();
    let metrics = match serve_metrics {
        true => Router::new().route(
            "/metrics",
            axum::routing::get(routes::metrics::metrics_endpoint),
        ),
        false => Router::new(),
    };
    let pages = match state.config.http.web.serve_page {
        true => metrics.merge(routes::web::routes()),
        false => metrics,
    };
    with_middleware(&RouteGroup::ALL, Some(pages.merge(live_routes())), state)
}

/// The GPU worker's server: `/health/*` and live dictation, which needs a decoder that stays
/// with its connection (not a Lambda function's work).
pub fn worker_router(state: AppState) -> Router {
    with_middleware(&[RouteGroup::Health], Some(live_routes()), state)
}

/// `GET /v1/stream`, where the local engine is built in.
fn live_routes() -> Router<AppState> {
    #[cfg(feature = "whisper")]
    return routes::live::routes();
    #[cfg(not(feature = "whisper"))]
    Router::new()
}

/// A Lambda function may be frozen once it has answered: its spans and error reports are sent
/// before the answer leaves.
async fn flush_telemetry(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    crate::telemetry::flush().await;
    response
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static(CORRELATION_HEADER),
                HeaderName::from_static(crate::telemetry::trace::TRACEPARENT_HEADER),
            ])
            .expose_headers([
                header::LOCATION,
                HeaderName::from_static(CORRELATION_HEADER),
            ]),
    )
}
