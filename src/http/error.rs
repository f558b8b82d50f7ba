//! Errors become HTTP responses here and nowhere else: a status and JSON `{"code", "message"}`.
//! For 5xx the whole cause chain is logged and the client gets a plain message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::images::ImageStoreError;
use crate::queue::QueueError;
use crate::service::ServiceError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    /// A field out of its range: 422, naming the field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            format!("{field}: {}", message.into()),
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = if self.status.is_server_error() {
            tracing::error!(code = %self.code, error = %self.message, "request failed");
            "internal error; see the server log"
        } else {
            &self.message
        };
        (
            self.status,
            Json(Body {
                code: &self.code,
                message,
            }),
        )
            .into_response()
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let status = match &e {
            QueueError::NotFound(_) => StatusCode::NOT_FOUND,
            QueueError::InvalidState { .. } | QueueError::Stale { .. } => StatusCode::CONFLICT,
            QueueError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            QueueError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ImageStoreError> for ApiError {
    fn from(e: ImageStoreError) -> Self {
        let status = match &e {
            ImageStoreError::Refused { source, .. } => match source.code() {
                "image-too-large" => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            },
            ImageStoreError::Io { .. } if e.code() == "disk-full" => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            ImageStoreError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Image(e) => e.into(),
            ServiceError::Queue(e) => e.into(),
        }
    }
}
