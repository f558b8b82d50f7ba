//! Bulk actions and exports over many jobs: `POST /api/jobs/bulk` and `GET /api/export` (the
//! objects, images or legacy table of every matching job as CSV, streamed a page at a time and
//! never built whole in memory; the project ZIP, streamed (`export/archive.rs`); or both tables as
//! an XLSX workbook, or COCO JSON, built in memory).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::{Body as ErrorBody, JsonBytes, Query};
use super::{ApiError, AppState};
use crate::export::coco::coco_json;
use crate::export::table::{self, Table};
use crate::export::xlsx;
use crate::queue::{BulkAction, Job, JobFilter, JobId, JobState};
use crate::segment::SegmentResult;
use crate::view::job_state_schema;

pub(super) mod archive;

/// Jobs read per page of a bulk action or export.
const PAGE: usize = 500;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(bulk))
        .routes(routes!(export))
}

/// What a bulk action acts on; it must name something: a state, a project, a list of ids, or
/// `"all": true`. The parts present must all match.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    #[schema(schema_with = job_state_schema)]
    state: Option<JobState>,
    project: Option<String>,
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

/// The names of the bulk actions, as `BulkAction` reads them.
const BULK_ACTIONS: [&str; 3] = ["retry", "cancel", "delete"];

fn bulk_action_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(BULK_ACTIONS))
        .build()
}

/// A bulk action: `retry` failed and cancelled jobs, `cancel` queued, delayed and active ones,
/// `delete` finished ones and their results; jobs in other states are skipped.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    #[schema(schema_with = bulk_action_schema)]
    action: BulkAction,
    #[serde(default)]
    filter: FilterBody,
    /// Count what the action would touch, change nothing (the page asks before it acts).
    #[serde(default)]
    dry_run: bool,
}

/// What a bulk action matched and changed.
#[derive(Serialize, ToSchema)]
struct BulkResult {
    /// Jobs the filter matches.
    matched: usize,
    /// Jobs the action changed (or, in a dry run, would change).
    affected: usize,
    dry_run: bool,
}

/// Every job the filter matches (collected first, so acting on them does not move the pages).
fn matching(state: &AppState, filter: &JobFilter) -> Result<Vec<Job>, ApiError> {
    let mut jobs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = state.service.queue.list(filter, cursor.as_deref(), PAGE)?;
        jobs.extend(page.jobs);
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(jobs),
        }
    }
}

/// The jobs a bulk filter names.
fn selected(state: &AppState, f: FilterBody) -> Result<Vec<Job>, ApiError> {
    let named = f.state.is_some()
        || f.project.as_deref().is_some_and(|p| !p.is_empty())
        || f.ids.is_some()
        || f.all;
    if !named {
        return Err(ApiError::invalid(
            "filter",
            "name the jobs to act on: a state, a project, a list of ids, or \"all\": true",
        ));
    }
    let keep = |j: &Job| {
        f.state.is_none_or(|s| j.state == s)
            && f.project
                .as_deref()
                .filter(|p| !p.is_empty())
                .is_none_or(|p| j.project.as_deref() == Some(p))
    };
    match &f.ids {
        Some(ids) => {
            let mut jobs = Vec::with_capacity(ids.len());
            for raw in ids {
                let id: JobId = raw.parse().map_err(|_| {
                    ApiError::invalid("filter.ids", format!("{raw:?} is not a job id"))
                })?;
                if let Some(j) = state.service.queue.get(id)?
                    && keep(&j)
                {
                    jobs.push(j);
                }
            }
            Ok(jobs)
        }
        None => matching(
            state,
            &JobFilter {
                state: f.state,
                project: f.project.filter(|p| !p.is_empty()),
                name: None,
            },
        ),
    }
}

#[utoipa::path(
    post,
    path = "/api/jobs/bulk",
    summary = "Retry, cancel or delete the jobs a filter names (a state, a project, ids, or all)",
    request_body = BulkBody,
    responses(
        (status = 200, description = "what was matched and changed", body = BulkResult),
        (status = 400, description = "the body could not be read", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 413, description = "the body is over the limit", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 422, description = "the body is not a bulk action, the filter names nothing, or an id is not a job id", body = ErrorBody),
        (status = 503, description = "shutting down", body = ErrorBody),
    )
)]
async fn bulk(
    _: Authorized,

    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Json<BulkResult>, ApiError> {
    let b: BulkBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid("body", format!("expected {{\"action\": \"retry|cancel|delete\", \"filter\": {{\"state\", \"project\", \"ids\", \"all\"}}, \"dry_run\"}}: {e}"))
    })?;
    let jobs = selected(&state, b.filter)?;
    let matched = jobs.len();
    let ids: Vec<JobId> = jobs
        .iter()
        .filter(|j| b.action.applies_to(j.state))
        .map(|j| j.id)
        .collect();
    let affected = if b.dry_run {
        ids.len()
    } else {
        state.service.bulk(b.action, &ids).await?.len()
    };
    Ok(Json(BulkResult {
        matched,
        affected,
        dry_run: b.dry_run,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// Only jobs of this project (empty: all).
    project: Option<String>,
    /// Only jobs in this state (default `completed`; only jobs with a result have rows).
    #[param(schema_with = job_state_schema)]
    state: Option<String>,
    /// `csv` (default), `xlsx` (sheets `objects` and `images`), `coco` (COCO
    /// instance-segmentation JSON) or `zip` (the project archive, streamed: both CSVs, COCO, and
    /// per job its JSON, mask, label image, overlay and ROI set).
    #[param(schema_with = export_format_schema)]
    format: Option<String>,
    /// For CSV: `objects` (default; one row per object, units in the headers), `images` (one row
    /// per image) or `legacy` (the replaced design's 16 columns).
    #[param(schema_with = export_table_schema)]
    table: Option<String>,
    /// For `zip`: include the original images (default false).
    originals: Option<bool>,
    /// Only these jobs: job ids separated by commas (a selection on the page); `project` and
    /// `state` still apply.
    ids: Option<String>,
}

/// The ids of every job the filter matches, in the listing's order (ids only: 16 bytes a job).
fn job_ids(state: &AppState, filter: &JobFilter) -> Result<Vec<JobId>, ApiError> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = state.service.queue.list(filter, cursor.as_deref(), PAGE)?;
        ids.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(ids),
        }
    }
}

/// The jobs of a comma-separated id list that exist and match the filter, in the list's order.
fn selection(state: &AppState, list: &str, filter: &JobFilter) -> Result<Vec<JobId>, ApiError> {
    let mut ids = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let id: JobId = raw
            .parse()
            .map_err(|_| ApiError::invalid("ids", format!("{raw:?} is not a job id")))?;
        if let Some(j) = state.service.queue.get(id)?
            && filter.state.is_none_or(|s| j.state == s)
            && filter
                .project
                .as_deref()
                .is_none_or(|p| j.project.as_deref() == Some(p))
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The results of `ids` that have one, with their ids as text.
fn results(state: &AppState, ids: &[JobId]) -> Vec<(String, SegmentResult)> {
    ids.iter()
        .filter_map(|id| {
            let bytes = state.service.queue.result(*id).ok()??;
            Some((id.to_string(), SegmentResult::from_bytes(&bytes)?))
        })
        .collect()
}

fn export_format_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["csv", "xlsx", "coco", "zip"]))
        .build()
}

pub(super) fn export_table_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(Table::NAMES))
        .build()
}

pub(super) fn export_failed(message: String) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        crate::error_code::ErrorCode::EXPORT_FAILED,
        message,
    )
}

/// An export built whole in memory before it is sent (the CSV tables stream instead).
#[derive(Clone, Copy)]
enum Whole {
    Xlsx,
    Coco,
}

/// The content type of an XLSX workbook.
pub(super) const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A `Content-Disposition` naming the download `stem.ext`, the stem reduced to characters every
/// file system and header takes.
pub(super) fn attachment(stem: &str, ext: &str) -> String {
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = stem.trim_start_matches('.');
    let stem = if stem.is_empty() { "spheroseg" } else { stem };
    format!("attachment; filename=\"{stem}.{ext}\"")
}

#[utoipa::path(
    get,
    path = "/api/export",
    summary = "Many jobs' results: a table as CSV (streamed), both as XLSX, COCO JSON, or the project ZIP (streamed)",
    params(ExportQuery),
    responses(
        (status = 200, description = "the table of every matching job (CSV), the workbook (XLSX), or the COCO document", content(("text/csv"), ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), ("application/json"), ("application/zip"))),
        (status = 400, description = "a query parameter of the wrong type", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 422, description = "an unknown state, format or table, or an id that is not a job id", body = ErrorBody),
    )
)]
async fn export(
    _: Authorized,

    State(state): State<AppState>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let mut zip = false;
    let whole = match q.format.as_deref().unwrap_or("csv") {
        "csv" => None,
        "zip" => {
            zip = true;
            None
        }
        "xlsx" => Some(Whole::Xlsx),
        "coco" => Some(Whole::Coco),
        f => {
            return Err(ApiError::invalid(
                "format",
                format!("{f:?}: csv, xlsx, coco or zip"),
            ));
        }
    };
    let table: Table = q
        .table
        .as_deref()
        .unwrap_or("objects")
        .parse()
        .map_err(|e: String| ApiError::invalid("table", e))?;
    let project = q.project.clone().filter(|p| !p.is_empty());
    let filter = JobFilter {
        state: Some(
            q.state
                .as_deref()
                .unwrap_or("completed")
                .parse()
                .map_err(|e: String| ApiError::invalid("state", e))?,
        ),
        project: q.project.filter(|p| !p.is_empty()),
        name: None,
    };
    let ids = match q.ids.as_deref() {
        Some(list) => selection(&state, list, &filter)?,
        None => job_ids(&state, &filter)?,
    };
    // Named after the project, or after the image when the selection is one job.
    let stem = match (project, ids.as_slice()) {
        (Some(p), _) => p,
        (None, [one]) => state
            .service
            .queue
            .get(*one)?
            .and_then(|j| {
                let name = std::path::Path::new(&j.image.name).file_stem()?;
                Some(name.to_str()?.to_owned())
            })
            .unwrap_or_else(|| "spheroseg".into()),
        (None, _) => "spheroseg".into(),
    };
    if zip {
        return Ok(archive::response(
            state,
            ids,
            &stem,
            q.originals.unwrap_or(false),
        ));
    }
    if let Some(whole) = whole {
        let state = state.clone();
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
            let rows = results(&state, &ids);
            let rows = rows.iter().map(|(id, r)| (id.as_str(), r));
            match whole {
                Whole::Xlsx => xlsx::workbook(rows).map_err(|e| export_failed(e.to_string())),
                Whole::Coco => Ok(coco_json(rows).into_bytes()),
            }
        })
        .await
        .map_err(|e| export_failed(format!("the export task failed: {e}")))??;
        let (kind, name) = match whole {
            Whole::Xlsx => (XLSX, attachment(&stem, "xlsx")),
            Whole::Coco => (
                "application/json",
                attachment(&format!("{stem}.coco"), "json"),
            ),
        };
        return Ok((
            [
                (header::CONTENT_TYPE, kind.to_owned()),
                (header::CONTENT_DISPOSITION, name),
            ],
            bytes,
        )
            .into_response());
    }
    let stream =
        futures_util::stream::unfold((state, ids, 0usize), move |(state, ids, pos)| async move {
            if pos > 0 && pos >= ids.len() {
                return None;
            }
            let end = (pos + PAGE).min(ids.len());
            let rows = results(&state, &ids[pos..end]);
            let mut out = Vec::new();
            let part = table::write_csv(
                &mut out,
                table,
                rows.iter().map(|(id, r)| (id.as_str(), r)),
                pos == 0,
            );
            let chunk = part
                .map(|_| Bytes::from(out))
                .map_err(|e| std::io::Error::other(e.to_string()));
            // An empty selection still sends its header once, then ends.
            let next = if ids.is_empty() { 1 } else { end };
            Some((chunk, (state, ids, next)))
        });
    // Fused: the compression layer polls once more after the end, which a bare unfold forbids.
    let stream = futures_util::StreamExt::fuse(stream);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, attachment(&stem, "csv")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's action names are the ones the body parser takes.
    #[test]
    fn every_documented_bulk_action_parses() {
        for name in BULK_ACTIONS {
            let action: BulkAction =
                serde_json::from_value(serde_json::json!(name)).expect("a bulk action");
            assert_eq!(serde_json::to_value(action).expect("json"), name);
        }
    }
}
