//! The API token, as an extractor (atuin's `UserAuth`): a handler that serves data takes
//! [`Authorized`], so it runs only for a request that carries the token when one is configured.
//! Liveness and the page itself (which holds no data and asks for the token) do not take it;
//! a test walks every route of the OpenAPI document to check that the others do.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::error_code::ErrorCode;

/// Proof that the request may see and change data: it carries the token, or none is set.
pub(super) struct Authorized;

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = &state.token else {
            return Ok(Authorized);
        };
        let header_token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Browsers cannot set headers on a WebSocket: /ws also takes ?access_token=.
        let query_token = (parts.uri.path() == "/ws")
            .then(|| parts.uri.query())
            .flatten()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("access_token=")));
        match header_token.or(query_token) {
            Some(given) if same(given.as_bytes(), token.as_bytes()) => Ok(Authorized),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::UNAUTHORIZED,
                "this spheroseg requires Authorization: Bearer TOKEN",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn constant_time_comparison_is_still_a_comparison() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"s3cret", b"s3cre"));
    }
}
