//! `POST /api/admin/backup`: a consistent backup of the running server, streamed to the client as
//! a ZIP (`backup.rs`), for `spheroseg db backup --server`. The server never writes to a path the
//! request names: it stages the backup inside its own data directory (`backup-staging/`, the
//! image files hard-linked), streams it, and removes it, whether the download finished or not.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::{Body as ErrorBody, JsonBytes};
use super::export::archive::streamed;
use super::export::attachment;
use super::{ApiError, AppState};
use crate::backup::{self, Images, STAGING};
use crate::clock::{Clock, SystemClock};
use crate::error_code::ErrorCode;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(backup_route))
}

/// What to back up.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    /// Include the image files (default false: the database alone).
    #[serde(default)]
    images: bool,
}

#[utoipa::path(
    post,
    path = "/api/admin/backup",
    summary = "A backup of the database as of this moment (and the image files, if asked), streamed as a ZIP",
    request_body = BackupBody,
    responses(
        (status = 200, description = "a ZIP holding backup.json, spheroseg.redb and, if asked, images/: unpacked, a data directory `serve --data-dir` opens", content_type = "application/zip"),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 422, description = "the body is not a backup request", body = ErrorBody),
        (status = 500, description = "the copy could not be made", body = ErrorBody),
        (status = 503, description = "the queue is closed", body = ErrorBody),
        (status = 507, description = "no room for the copy on the server's disk", body = ErrorBody),
    )
)]
async fn backup_route(
    _: Authorized,
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let asked: BackupBody = if body.iter().all(u8::is_ascii_whitespace) {
        BackupBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid("body", format!("expected {{\"images\": bool}}: {e}")))?
    };
    let data_dir = state.service.images.data_dir().to_owned();
    let staging = data_dir
        .join(STAGING)
        .join(uuid::Uuid::now_v7().to_string());
    let images = if asked.images {
        Images::Link
    } else {
        Images::Without
    };
    let (queue, dir) = (state.service.queue.clone(), staging.clone());
    let made = tokio::task::spawn_blocking(move || {
        backup::make(&queue, &data_dir, &dir, images, SystemClock.now())
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::INTERNAL_ERROR,
            format!("the backup task failed: {e}"),
        )
    })?;
    let manifest = match made {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e.into());
        }
    };
    tracing::info!(
        database_bytes = manifest.database_bytes,
        images = ?manifest.images,
        paused_ms = manifest.paused_ms,
        took_ms = manifest.took_ms,
        "backup made; streaming it"
    );
    let body = streamed(move |out| {
        let written = backup::write_zip(&staging, out);
        if let Err(e) = std::fs::remove_dir_all(&staging) {
            tracing::warn!(dir = %staging.display(), error = %e, "cannot remove a backup's staging directory");
        }
        written.map_err(|e| {
            tracing::warn!(error = %e, "backup download stopped");
            e.to_string()
        })
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                attachment("spheroseg-backup", "zip"),
            ),
        ],
        body,
    )
        .into_response())
}
