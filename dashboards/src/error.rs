//! The one place where domain errors become HTTP responses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer: a status and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
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
        ApiError {
            status,
            message: error.to_string(),
        }
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
        ApiError {
            status,
            message: error.to_string(),
        }
    }
}

/// What a 503 asks the client to wait before it tries again (seconds).
const RETRY_AFTER_SECS: &str = "2";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        // Busy or briefly unable (too many queries, a flush that keeps failing, a full
        // disk): say when to come back.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
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
