//! The one place where domain errors become HTTP responses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer: a status and `{"code": "...", "message": "..."}`. The code is stable
/// for scripts (`unauthorized`, `forbidden`, `bad_credentials`, …); the message is for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Overrides the code the status gives (`totp_required` rather than `unauthorized`).
    pub code: Option<&'static str>,
    pub message: String,
    /// Seconds to wait, sent as `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: None,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// No credential, or one that is not valid (401).
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    /// A valid credential that may not do this (403).
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// The `code` of the JSON answer.
    pub fn code(&self) -> &'static str {
        self.code.unwrap_or(match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ if self.status.is_server_error() => "internal",
            _ => "error",
        })
    }
}

/// What the parts of `dashboards` that are not HTTP (accounts, tokens, sessions: [`crate::access`]) fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    File(#[from] durable::FileError),
    /// The audit trail could not record the change, so it was not made (fail closed).
    #[error("the audit trail cannot record this, so it was refused: {0}")]
    Audit(store::Error),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> model::ErrorKind {
        match self {
            Error::Invalid(_) => model::ErrorKind::Invalid,
            Error::NotFound(_) => model::ErrorKind::NotFound,
            Error::Audit(_) => model::ErrorKind::Unavailable,
            Error::File(_) | Error::Internal(_) => model::ErrorKind::Internal,
        }
    }
}

impl From<durable::Error> for Error {
    fn from(error: durable::Error) -> Error {
        match error {
            durable::Error::File(file) => Error::File(file),
            other => Error::Internal(other.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        let status = status_of(error.kind());
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %error, "access error while answering a request");
        }
        ApiError::new(status, error.to_string())
    }
}

/// The HTTP status of each kind of failure: the one place where a domain error's
/// [`model::ErrorKind`] (whatever crate it comes from) becomes a status.
pub(crate) fn status_of(kind: model::ErrorKind) -> StatusCode {
    match kind {
        model::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        model::ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        model::ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        model::ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<store::Error> for ApiError {
    fn from(error: store::Error) -> ApiError {
        let status = status_of(error.kind());
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %error, "store error while answering a request");
        }
        ApiError::new(status, error.to_string())
    }
}

/// What a 503 asks the client to wait before it tries again (seconds).
const RETRY_AFTER_SECS: &str = "2";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let mut response = (
            self.status,
            Json(serde_json::json!({ "code": code, "message": self.message })),
        )
            .into_response();
        // Busy or briefly unable (too many queries, a flush that keeps failing, a full
        // disk), or too many attempts: say when to come back.
        let retry_after = self.retry_after.map(|secs| secs.to_string()).or_else(|| {
            (self.status == StatusCode::SERVICE_UNAVAILABLE).then(|| RETRY_AFTER_SECS.to_owned())
        });
        if let Some(value) =
            retry_after.and_then(|text| axum::http::HeaderValue::from_str(&text).ok())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_status_and_store_errors_answer_by_their_kind() {
        assert_eq!(status_of(model::ErrorKind::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(model::ErrorKind::Invalid),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(model::ErrorKind::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(model::ErrorKind::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let config = ApiError::from(store::Error::Config("bad root".to_owned()));
        assert_eq!(config.status, StatusCode::BAD_REQUEST);
        let overloaded = ApiError::from(store::Error::Overloaded(7));
        assert_eq!(overloaded.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
