//! The one mapping from failures to HTTP responses.
//!
//! Body: `{"error":{"code","message"},"correlation_id"}`. Codes are stable; messages for 5xx
//! are generic. The cause of a 5xx travels in a response extension so the request middleware
//! logs it once, inside the request span, and it never reaches the client.

use axum::{
    Json,
    extract::rejection::{JsonRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ports::{BlobError, QueueError, StoreError};
use crate::telemetry::current_correlation_id;
use crate::telemetry::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("wrong user name or password")]
    InvalidCredentials,
    #[error("{1}")]
    Forbidden(&'static str, &'static str),
    #[error("no such transcription")]
    NotFound,
    #[error("no route for this path")]
    RouteNotFound,
    #[error("method not allowed for this path")]
    MethodNotAllowed,
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("upload exceeds the {limit}-byte limit")]
    PayloadTooLarge { limit: u64 },
    #[error("the file is not audio MMT can transcribe (wav, mp3, flac, ogg, webm, m4a/mp4, aac)")]
    UnsupportedMediaType,
    #[error("{0}")]
    Conflict(String),
    #[error("the request body stalled; send it without long pauses")]
    RequestTimeout,
    #[error("EHR push is not configured on this deployment (EHR_TARGET)")]
    EhrNotConfigured,
    /// The EHR could not answer a look-up; the reason names no patient.
    #[error("the EHR could not answer: {0}")]
    EhrUnavailable(String),
    #[error("the EHR's login needs renewing by an administrator: {0}")]
    EhrNeedsLogin(String),
    #[error("{0}")]
    EhrNotFound(String),
    /// The draft model refused or answered something that is not a note.
    #[error("{0}")]
    DraftFailed(String),
    #[error("the request headers exceed {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("too many requests; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("too many failed sign-ins for this account: it is locked for {retry_after_s} s more")]
    AccountLocked { retry_after_s: u64 },
    #[error(
        "this guest, or this address, has used its uploads for today: retry in {retry_after_s} s, \
         or sign in"
    )]
    GuestQuotaExceeded { retry_after_s: u64 },
    #[error("this upload expired or was discarded; start a new one")]
    UploadGone,
    /// The engine could not transcribe now; the reason carries no PHI.
    #[error("{0}")]
    EngineUnavailable(String),
    #[error("the service is temporarily unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            Self::Forbidden(code, _) => (StatusCode::FORBIDDEN, code),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Conflict(_) => (StatusCode::CONFLICT, "not_ready"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::AccountLocked { .. } => (StatusCode::TOO_MANY_REQUESTS, "account_locked"),
            Self::GuestQuotaExceeded { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "guest_quota_exceeded")
            }
            Self::EhrNotConfigured => (StatusCode::NOT_IMPLEMENTED, "ehr_not_configured"),
            Self::EhrUnavailable(_) => (StatusCode::BAD_GATEWAY, "ehr_unavailable"),
            Self::EhrNeedsLogin(_) => (StatusCode::BAD_GATEWAY, "ehr_needs_login"),
            Self::EhrNotFound(_) => (StatusCode::NOT_FOUND, "ehr_not_found"),
            Self::DraftFailed(_) => (StatusCode::BAD_GATEWAY, "draft_failed"),
            Self::HeadersTooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::UploadGone => (StatusCode::GONE, "upload_gone"),
            Self::EngineUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The documented error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    pub correlation_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: unauthorized, forbidden, not_found, invalid_request, ...
    pub code: String,
    pub message: String,
}

/// The cause chain of a server-side failure, for the request log only.
#[derive(Debug, Clone)]
pub struct ErrorReport(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
            },
            correlation_id: current_correlation_id(),
        };
        let mut response = (status, Json(body)).into_response();
        match &self {
            Self::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after_s }
            | Self::AccountLocked { retry_after_s }
            | Self::GuestQuotaExceeded { retry_after_s } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            Self::PayloadTooLarge { .. } | Self::RequestTimeout => {
                // The unread rest of the body is not worth keeping the connection for.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Self::Unavailable(cause) | Self::Internal(cause) => {
                response
                    .extensions_mut()
                    .insert(ErrorReport(error_chain(cause.as_ref())));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => Self::Unavailable(err.into()),
            StoreError::Corrupt(_) => Self::Internal(err.into()),
        }
    }
}

impl From<crate::app::uploads::AcceptError> for ApiError {
    fn from(err: crate::app::uploads::AcceptError) -> Self {
        match err {
            crate::app::uploads::AcceptError::Records(err) => err.into(),
            crate::app::uploads::AcceptError::Queue(err) => err.into(),
        }
    }
}

impl From<crate::app::deliveries::RequestError> for ApiError {
    fn from(err: crate::app::deliveries::RequestError) -> Self {
        match err {
            crate::app::deliveries::RequestError::Deliveries(err) => err.into(),
            crate::app::deliveries::RequestError::Queue(err) => err.into(),
        }
    }
}

impl From<crate::app::deliveries::LookupError> for ApiError {
    fn from(err: crate::app::deliveries::LookupError) -> Self {
        use crate::domain::EhrError;
        match err {
            crate::app::deliveries::LookupError::Ehr(EhrError::Transient { reason, .. }) => {
                Self::EhrUnavailable(reason)
            }
            crate::app::deliveries::LookupError::Ehr(EhrError::NeedsLogin(reason)) => {
                Self::EhrNeedsLogin(reason)
            }
            crate::app::deliveries::LookupError::Ehr(EhrError::Permanent(reason)) => {
                Self::EhrNotFound(reason)
            }
            crate::app::deliveries::LookupError::Audit(err) => Self::Unavailable(err),
        }
    }
}

impl From<crate::app::records::EraseError> for ApiError {
    fn from(err: crate::app::records::EraseError) -> Self {
        match err {
            crate::app::records::EraseError::Audio(err) => err.into(),
            crate::app::records::EraseError::Records(err) => err.into(),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(err: QueueError) -> Self {
        Self::Unavailable(err.into())
    }
}

impl From<BlobError> for ApiError {
    fn from(err: BlobError) -> Self {
        match err {
            BlobError::TooLarge { limit } => Self::PayloadTooLarge { limit },
            BlobError::Body(_) => {
                Self::bad_request("invalid_request", "the upload body could not be read")
            }
            // Keys are fresh ids: a taken one is a fault here, not the caller's.
            BlobError::NotFound | BlobError::AlreadyExists => Self::Internal(err.into()),
            BlobError::Unavailable(_) => Self::Unavailable(err.into()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Self::bad_request("invalid_request", "expected Content-Type: application/json")
            }
            JsonRejection::JsonSyntaxError(_) => {
                Self::bad_request("invalid_request", "the body is not valid JSON")
            }
            // serde's text can quote the offending value (a password, a name): not echoed.
            JsonRejection::JsonDataError(_) => Self::bad_request(
                "invalid_request",
                "the JSON body is missing a field or has a field of the wrong type",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::bad_request("invalid_request", "the JSON body is too large")
            }
            _ => Self::bad_request("invalid_request", "the body could not be read"),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid_request", rejection.body_text())
    }
}
