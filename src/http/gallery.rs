//! `GET /api/gallery`: completed jobs a page at a time, each with what a person looking over a
//! plate should know before opening it: the objects touching the border, those of low contrast,
//! and flags naming what is worth a look. The page draws each with its thumbnail
//! (`http/job_thumbnail.rs`).
//!
//! Flags that depend on the other images (several objects where one is usual) or on the job
//! alone (corrected by hand) are the page's to add: this answer judges one result at a time.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::{Body as ErrorBody, Query};
use super::{ApiError, AppState};
use crate::queue::{JobFilter, JobState};
use crate::segment::SegmentResult;
use crate::view::JobView;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(gallery))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct GalleryQuery {
    /// Only jobs of this project (empty: all).
    project: Option<String>,
    /// Jobs per page (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// One page of the gallery, and the cursor of the next page (`null` on the last).
#[derive(Serialize, ToSchema)]
struct GalleryPage {
    items: Vec<GalleryItem>,
    next: Option<String>,
}

/// A completed job and its review.
#[derive(Serialize, ToSchema)]
struct GalleryItem {
    job: JobView,
    review: Review,
}

/// What one result says about itself.
#[derive(Serialize, ToSchema, Default)]
struct Review {
    objects: u32,
    /// Objects whose outline reaches the image border (they may be cut off).
    touching_border: u32,
    /// Objects barely darker (or brighter) than what surrounds them.
    low_contrast: u32,
    /// `no-objects`, `touches-border`, `low-contrast`, or `unreadable` (the stored result
    /// cannot be read).
    flags: Vec<&'static str>,
}

impl Review {
    fn of(r: &SegmentResult) -> Self {
        let count = |f: fn(&crate::segment::ObjectFlags) -> bool| {
            r.flags.iter().filter(|x| f(x)).count() as u32
        };
        let mut review = Review {
            objects: r.objects.len() as u32,
            touching_border: count(|f| f.touches_border),
            low_contrast: count(|f| f.low_contrast),
            flags: Vec::new(),
        };
        for (on, flag) in [
            (review.objects == 0, "no-objects"),
            (review.touching_border > 0, "touches-border"),
            (review.low_contrast > 0, "low-contrast"),
        ] {
            if on {
                review.flags.push(flag);
            }
        }
        review
    }
}

#[utoipa::path(
    get,
    path = "/api/gallery",
    summary = "Completed jobs with what is worth a look in each result, one page at a time",
    params(GalleryQuery),
    responses(
        (status = 200, description = "one page of completed jobs, most recently finished first (newest first within a project)", body = GalleryPage),
        (status = 400, description = "a query parameter of the wrong type", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 422, description = "a limit outside 1 to 500, or a cursor this listing did not give", body = ErrorBody),
    )
)]
async fn gallery(
    _: Authorized,
    State(state): State<AppState>,
    Query(q): Query<GalleryQuery>,
) -> Result<Json<GalleryPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("{limit}: use 1 to 500")));
    }
    let filter = JobFilter {
        state: Some(JobState::Completed),
        project: q.project.filter(|p| !p.is_empty()),
        name: None,
    };
    let page = state
        .service
        .queue
        .list(&filter, q.cursor.as_deref(), limit)?;
    let mut items = Vec::with_capacity(page.jobs.len());
    for job in &page.jobs {
        let review = match state.service.queue.result(job.id)? {
            Some(bytes) => SegmentResult::from_bytes(&bytes).map(|r| Review::of(&r)),
            None => None,
        }
        .unwrap_or_else(|| Review {
            objects: job.result.as_ref().map_or(0, |r| r.objects),
            flags: vec!["unreadable"],
            ..Review::default()
        });
        items.push(GalleryItem {
            job: JobView::from(job),
            review,
        });
    }
    Ok(Json(GalleryPage {
        items,
        next: page.next,
    }))
}
