//! API errors as `application/problem+json` (RFC 9457): a stable `type` per
//! kind of error, the HTTP status, a title, and the same words as the CLI in
//! `detail`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use weft_core::{ResumeError, StoreError};
use weft_runtime::RuntimeError;

use crate::exit::{Code, Failure};

/// The kinds of error the API answers with; each is a stable `type`
/// (`urn:weft:problem:KIND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// No or a wrong bearer token (401).
    Unauthorized,
    /// No such run or workflow (404).
    NotFound,
    /// The route does not take this method (405).
    MethodNotAllowed,
    /// The request conflicts with the run's state or another request (409).
    Conflict,
    /// The run (or the named step) is not suspended (409); `suspended`
    /// lists the suspended addresses.
    NotSuspended,
    /// The request is malformed or fails a schema (400); `pointer` names
    /// the field when known.
    InvalidInput,
    /// The body is larger than the route takes (413).
    PayloadTooLarge,
    /// Too many requests of a bounded kind at once (429).
    TooManyRequests,
    /// The server is not ready (recovery still runs) or shutting down (503).
    Unavailable,
    /// A failure of the server or its store (500).
    Internal,
}

impl Kind {
    fn status(self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict | Self::NotSuspended => StatusCode::CONFLICT,
            Self::InvalidInput => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict => "conflict",
            Self::NotSuspended => "not-suspended",
            Self::InvalidInput => "invalid-input",
            Self::PayloadTooLarge => "payload-too-large",
            Self::TooManyRequests => "too-many-requests",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Unauthorized => "a valid bearer token is required",
            Self::NotFound => "not found",
            Self::MethodNotAllowed => "method not allowed",
            Self::Conflict => "conflict",
            Self::NotSuspended => "not suspended",
            Self::InvalidInput => "invalid input",
            Self::PayloadTooLarge => "payload too large",
            Self::TooManyRequests => "too many requests",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal error",
        }
    }
}

/// A problem document, as the API's error body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:weft:problem:KIND`.
    #[serde(rename = "type")]
    pub kind_uri: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, in the CLI's words.
    pub detail: String,
    /// More members for some kinds (`suspended`, `pointer`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    kind: Kind,
}

impl Problem {
    /// A problem of `kind` saying `detail`.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self {
            kind_uri: format!("urn:weft:problem:{}", kind.name()),
            title: kind.title().to_owned(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            extra: Map::new(),
            kind,
        }
    }

    /// This problem with the member `name` set to `value`.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// Malformed or invalid input.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(Kind::InvalidInput, detail)
    }

    /// A missing run or workflow.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, detail)
    }

    /// A failure of the server.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::new(Kind::Internal, error.to_string())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        if status.is_server_error() {
            tracing::error!(detail = %self.detail, "request failed");
        }
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// A runtime's refusal as a problem: the kind from the error, the detail
/// in the CLI's words.
impl From<RuntimeError> for Problem {
    fn from(error: RuntimeError) -> Self {
        let detail = error.to_string();
        match error {
            RuntimeError::NotFound { .. } => Self::not_found(detail),
            RuntimeError::Exists { .. }
            | RuntimeError::Conflict { .. }
            | RuntimeError::Leased { .. }
            | RuntimeError::DrivenElsewhere { .. }
            | RuntimeError::LeaseLost { .. }
            | RuntimeError::WrongWorkflow { .. } => Self::new(Kind::Conflict, detail),
            RuntimeError::InvalidInput { .. } => Self::invalid(detail),
            RuntimeError::Resume(resume) => Self::from(resume),
            RuntimeError::Store {
                reason: StoreError::NotFound { .. },
                ..
            } => Self::not_found(detail),
            RuntimeError::ShutDown => Self::new(Kind::Unavailable, detail),
            other => Self::internal(other),
        }
    }
}

impl From<ResumeError> for Problem {
    fn from(error: ResumeError) -> Self {
        let detail = error.to_string();
        match error {
            ResumeError::NotSuspended { status, .. } => {
                Self::new(Kind::NotSuspended, detail).with("run_status", status)
            }
            ResumeError::NotSuspendedStep { suspended, .. } => {
                Self::new(Kind::NotSuspended, detail).with("suspended", suspended)
            }
            ResumeError::NotCancelable { status, .. } => {
                Self::new(Kind::Conflict, detail).with("run_status", status)
            }
            _ => Self::invalid(detail),
        }
    }
}

/// A CLI failure as a problem: invalid input, or a server failure.
impl From<Failure> for Problem {
    fn from(failure: Failure) -> Self {
        let detail = failure.to_string();
        // A missing run is invalid input for the CLI; the API says 404.
        if failure.is_missing() {
            return Self::not_found(detail);
        }
        match failure.code {
            Code::Invalid => Self::invalid(detail),
            _ => Self::internal(detail),
        }
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => Self::not_found(error.to_string()),
            other => Self::internal(other),
        }
    }
}
