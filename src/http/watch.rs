//! `GET /api/watch`: every watched folder with its counts (seen, waiting, queued, done,
//! failed), how it learns of files, and its last scan.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Authorized;
use super::error::Body as ErrorBody;
use crate::watch::FolderStatus;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(folders))
}

/// The watched folders, in the configuration's order.
#[derive(Serialize, ToSchema)]
struct Folders {
    folders: Vec<FolderStatus>,
}

#[utoipa::path(
    get,
    path = "/api/watch",
    summary = "The watched folders: counts, mode and last scan",
    responses(
        (status = 200, description = "every watched folder (none when none is configured)", body = Folders),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
async fn folders(_: Authorized, State(state): State<AppState>) -> Json<Folders> {
    Json(Folders {
        folders: state.watch.folders(),
    })
}
