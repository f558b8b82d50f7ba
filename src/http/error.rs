//! Errors become HTTP responses here and nowhere else: a status and JSON `{"code", "message"}`.
//! For 5xx the whole cause chain is logged and the client gets a plain message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error_code::ErrorCode;
use crate::images::ImageStoreError;
use crate::queue::QueueError;
use crate::service::ServiceError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (busy, try again).
    pub retry_after: Option<u32>,
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(super) struct Body<'a> {
    /// A stable kebab-case code, e.g. `not-found`, `invalid-field`.
    #[schema(value_type = String)]
    code: ErrorCode,
    /// What went wrong, for a person; it says what to do where that helps.
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BAD_REQUEST, message)
    }

    /// A field out of its range: 422, naming the field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::INVALID_FIELD,
            format!("{field}: {}", message.into()),
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // An internal error's detail is for the log; other 5xx (507 disk full, 503 busy) say
        // what happened and what to do.
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = %self.code, error = %self.message, "request failed");
            "internal error; see the server log"
        } else {
            if self.status.is_server_error() {
                tracing::warn!(code = %self.code, error = %self.message, "request refused");
            }
            &self.message
        };
        let mut resp = (
            self.status,
            Json(Body {
                code: self.code,
                message,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let status = match &e {
            QueueError::NotFound(_) => StatusCode::NOT_FOUND,
            QueueError::InvalidState { .. }
            | QueueError::Stale { .. }
            | QueueError::StaleVersion { .. } => StatusCode::CONFLICT,
            QueueError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            QueueError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            QueueError::DiskFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<crate::backup::BackupError> for ApiError {
    fn from(e: crate::backup::BackupError) -> Self {
        use crate::backup::BackupError;
        match e {
            BackupError::Queue(e) => e.into(),
            BackupError::Io { ref source, .. } if crate::disk::is_full(source) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::DISK_FULL,
                e.to_string(),
            ),
            e => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::IO_ERROR,
                e.to_string(),
            ),
        }
    }
}

impl From<ImageStoreError> for ApiError {
    fn from(e: ImageStoreError) -> Self {
        if e.is_missing() {
            // The path is the server's business; what is gone is the job's image.
            return ApiError::new(
                StatusCode::NOT_FOUND,
                e.code(),
                "the job's image is no longer in the image store; upload it again",
            );
        }
        let status = match &e {
            ImageStoreError::Refused { source, .. }
                if source.code() == ErrorCode::IMAGE_TOO_LARGE =>
            {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ImageStoreError::Refused { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ImageStoreError::OverBudget { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ImageStoreError::TooSmall { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ImageStoreError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ImageStoreError::DiskFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ImageStoreError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut api = ApiError::new(status, e.code(), e.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            api.retry_after = Some(5);
        }
        api
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Image(e) => e.into(),
            ServiceError::Queue(e) => e.into(),
            e @ ServiceError::ImageGone { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
            }
            ServiceError::Invalid { field, message } => ApiError::invalid(field, message),
            e @ (ServiceError::KeyReused { .. }
            | ServiceError::Version(crate::service::VersionError::Refused(_))) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
            }
            e @ ServiceError::Version(crate::service::VersionError::NoVersion { .. }) => {
                ApiError::new(StatusCode::NOT_FOUND, e.code(), e.to_string())
            }
            e @ ServiceError::Version(crate::service::VersionError::Unreadable { .. }) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string())
            }
        }
    }
}

/// The body of a state-changing JSON request: refused with `415` unless it says
/// `Content-Type: application/json`, since a `text/plain` body is how a page on another site posts
/// without a CORS preflight. The handler parses it, with its own error messages.
pub(super) struct JsonBytes(pub axum::body::Bytes);

/// Whether the request's content type is JSON (`application/json`, parameters allowed).
pub(super) fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), ErrorCode::BAD_REQUEST, e.body_text()))?;
        Ok(JsonBytes(bytes))
    }
}

/// A query string parsed into `T`, refused with the JSON error body: axum's own `Query` answers a
/// parameter of the wrong type (`limit=x`) with a plain-text 400.
pub(super) struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Query<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Query(q))
            .map_err(|e| ApiError::new(e.status(), ErrorCode::BAD_REQUEST, e.body_text()))
    }
}
