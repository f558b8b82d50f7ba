//! Bulk actions and exports over many jobs: `POST /api/jobs/bulk` and `GET /api/export` (the
//! metrics of every matching job as CSV, streamed a page at a time, never built whole in memory).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, AppState};
use crate::export::write_csv_part;
use crate::queue::{JobFilter, JobId, JobState};
use crate::segment::SegmentResult;

/// Jobs read per page of a bulk action or export.
const PAGE: usize = 500;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(bulk))
        .routes(routes!(export))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    state: Option<JobState>,
    project: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Retry,
    Cancel,
    Delete,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    action: Action,
    #[serde(default)]
    filter: Option<FilterBody>,
}

#[derive(Serialize)]
struct BulkResult {
    matched: usize,
    affected: usize,
}

/// Every job id the filter matches (collected first, so acting on them does not move the pages).
fn matching(state: &AppState, filter: &JobFilter) -> Result<Vec<JobId>, ApiError> {
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

#[utoipa::path(post, path = "/api/jobs/bulk", summary = "Retry, cancel or delete every job a filter matches", responses((status = 200, description = "success")))]
async fn bulk(State(state): State<AppState>, body: Bytes) -> Result<Json<BulkResult>, ApiError> {
    let b: BulkBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid("body", format!("expected {{\"action\": \"retry|cancel|delete\", \"filter\": {{\"state\", \"project\"}}}}: {e}"))
    })?;
    let f = b.filter.unwrap_or(FilterBody {
        state: None,
        project: None,
    });
    let filter = JobFilter {
        state: f.state,
        project: f.project,
    };
    let ids = matching(&state, &filter)?;
    let mut affected = 0;
    for id in &ids {
        // Jobs the action does not apply to (a retry of a completed job) are skipped, not errors.
        let ok = match b.action {
            Action::Retry => state.service.retry(*id).await.is_ok(),
            Action::Cancel => state.service.cancel(*id).await.is_ok(),
            Action::Delete => state.service.queue.delete(*id).await.is_ok(),
        };
        affected += usize::from(ok);
    }
    Ok(Json(BulkResult {
        matched: ids.len(),
        affected,
    }))
}

#[derive(Deserialize)]
struct ExportQuery {
    project: Option<String>,
    state: Option<String>,
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/export", summary = "The metrics of many jobs as CSV (streamed)", responses((status = 200, description = "success")))]
async fn export(
    State(state): State<AppState>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    if let Some(f) = q.format.as_deref().filter(|f| *f != "csv") {
        return Err(ApiError::invalid("format", format!("{f:?}: only csv")));
    }
    let filter = JobFilter {
        state: Some(
            q.state
                .as_deref()
                .unwrap_or("completed")
                .parse()
                .map_err(|e: String| ApiError::invalid("state", e))?,
        ),
        project: q.project.filter(|p| !p.is_empty()),
    };
    let stream = futures_util::stream::unfold(
        (state, filter, None::<String>, true, false),
        |(state, filter, cursor, first, done)| async move {
            if done {
                return None;
            }
            let page = match state.service.queue.list(&filter, cursor.as_deref(), PAGE) {
                Ok(p) => p,
                Err(e) => {
                    return Some((
                        Err(std::io::Error::other(e.to_string())),
                        (state, filter, None, false, true),
                    ));
                }
            };
            let mut rows: Vec<(String, SegmentResult)> = Vec::new();
            for job in &page.jobs {
                if let Ok(Some(bytes)) = state.service.queue.result(job.id)
                    && let Some(r) = SegmentResult::from_bytes(&bytes)
                {
                    rows.push((job.id.to_string(), r));
                }
            }
            let mut out = Vec::new();
            let part = write_csv_part(
                &mut out,
                rows.iter().map(|(id, r)| (id.as_str(), r)),
                true,
                first,
            );
            let chunk = part
                .map(|_| Bytes::from(out))
                .map_err(|e| std::io::Error::other(e.to_string()));
            let done = page.next.is_none();
            Some((chunk, (state, filter, page.next, false, done)))
        },
    );
    // Fused: the compression layer polls once more after the end, which a bare unfold forbids.
    let stream = futures_util::StreamExt::fuse(stream);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"spheroseg-metrics.csv\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
