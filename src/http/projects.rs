//! Projects and what the lab remembers for each (`service::projects`): `GET /api/projects`,
//! `GET /api/projects/{name}` and `PUT /api/projects/{name}` (the pixel size of the project's
//! objective, which its later jobs take when they give none).

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::{Body as ErrorBody, JsonBytes};
use super::{ApiError, AppState};
use crate::service::{Project, ProjectSettings};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_project, put_project))
}

/// Every project that holds jobs or has settings.
#[derive(Serialize, ToSchema)]
struct Projects {
    projects: Vec<Project>,
}

#[utoipa::path(
    get,
    path = "/api/projects",
    summary = "Every project (those with jobs and those with settings), in name order",
    responses(
        (status = 200, description = "the projects", body = Projects),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
async fn list(_: Authorized, State(state): State<AppState>) -> Result<Json<Projects>, ApiError> {
    Ok(Json(Projects {
        projects: state.service.projects()?,
    }))
}

#[utoipa::path(
    get,
    path = "/api/projects/{name}",
    summary = "A project's settings (all null when none are remembered)",
    params(("name" = String, Path, description = "The project's name")),
    responses(
        (status = 200, description = "the project", body = Project),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
async fn get_project(
    _: Authorized,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Project>, ApiError> {
    let settings = state.service.project_settings(&name)?;
    Ok(Json(Project {
        name,
        settings: settings.into(),
    }))
}

#[utoipa::path(
    put,
    path = "/api/projects/{name}",
    summary = "Remember a project's settings; its later jobs that give no pixel size take this one",
    params(("name" = String, Path, description = "The project's name")),
    request_body(content = ProjectSettings, content_type = "application/json"),
    responses(
        (status = 200, description = "the settings are durable", body = Project),
        (status = 400, description = "the body is not JSON of this shape", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 422, description = "a pixel size out of range, or a name or label too long", body = ErrorBody),
        (status = 507, description = "the data directory's disk is full", body = ErrorBody),
    )
)]
async fn put_project(
    _: Authorized,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBytes(body): JsonBytes,
) -> Result<Json<Project>, ApiError> {
    let settings: ProjectSettings = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"pixel_size_um\": N or null, \"objective\"?: TEXT}}: {e}"
        ))
    })?;
    Ok(Json(state.service.set_project(&name, settings).await?))
}
