//! A job as clients see it: the body of `GET /api/jobs/{id}`, each row of the listing, and the
//! `job` of every job event, so the page can draw a row from an event without asking again.
//!
//! These are also the OpenAPI schemas of a job (`utoipa::ToSchema`). The types they show live in
//! `queue/` and `segment/`, which know nothing of the API: a job's state is described by
//! [`job_state_schema`] from `JobState::ALL`, and its parameters by [`ParamsView`], a copy of
//! `SegmentParams` whose conversion names every field, so a field added there fails to compile
//! until it is added here. `view/param_fields.rs` describes the same parameters for a form: each
//! field's default, range and help. `view/folder.rs` is a watched folder as the API, the page and
//! the `watch_folder` event show it.

use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::queue::{Job, JobError, JobState};
use crate::segment::{Declump, Feature, PixelSizeGiven, Polarity, Resolution, SegmentParams};

pub mod folder;
mod param_fields;

pub use param_fields::{ParamChoice, ParamField, ParamKind, ParamValue, param_fields};

/// The schema of a job state: a string, one of the names of `JobState::ALL`.
pub fn job_state_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(JobState::ALL.map(JobState::as_str)))
        .build()
}

/// A job as the API and the events show it. Times are milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    #[schema(schema_with = job_state_schema)]
    pub state: JobState,
    pub priority: u8,
    pub progress: u8,
    /// Attempts spent of `max_attempts`.
    pub attempts: u32,
    pub max_attempts: u32,
    pub project: Option<String>,
    pub image: ImageView,
    pub segmenter: String,
    pub params: ParamsView,
    #[schema(value_type = u64)]
    pub created_at: Millis,
    #[schema(value_type = u64)]
    pub updated_at: Millis,
    #[schema(value_type = u64)]
    pub queued_at: Millis,
    #[schema(value_type = Option<u64>)]
    pub started_at: Option<Millis>,
    #[schema(value_type = Option<u64>)]
    pub finished_at: Option<Millis>,
    /// When a delayed job runs again.
    #[schema(value_type = Option<u64>)]
    pub run_at: Option<Millis>,
    pub error: Option<ErrorView>,
    pub result_bytes: Option<u64>,
    /// Objects in the result, once completed (its latest version).
    pub objects: Option<u32>,
    /// The latest version of the result, once completed: 1 is the segmenter's.
    pub version: Option<u32>,
    /// Whether the latest version of the result holds outlines corrected by hand.
    pub corrected: bool,
    /// The job this one runs again, if it is a rerun.
    pub rerun_of: Option<String>,
    /// Named values from where the image came from (plate, well), as `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub metadata: Vec<(String, String)>,
}

/// The image a job segments.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ImageView {
    pub name: String,
    pub hash: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// Why the last attempt failed.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ErrorView {
    pub code: String,
    pub message: String,
    pub transient: bool,
}

impl From<&JobError> for ErrorView {
    fn from(e: &JobError) -> Self {
        ErrorView {
            code: e.code.clone(),
            message: e.message.clone(),
            transient: e.transient,
        }
    }
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        JobView {
            id: j.id.to_string(),
            state: j.state,
            priority: j.priority.get(),
            progress: j.progress,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            project: j.project.clone(),
            image: ImageView {
                name: j.image.name.clone(),
                hash: j.image.hash.clone(),
                width: j.image.width,
                height: j.image.height,
                bytes: j.image.bytes,
            },
            segmenter: j.segmenter.to_string(),
            params: ParamsView::from(&j.params),
            created_at: j.created_at,
            updated_at: j.updated_at,
            queued_at: j.queued_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            run_at: j.run_at,
            error: j.last_error.as_ref().map(ErrorView::from),
            result_bytes: j.result.as_ref().map(|r| r.bytes),
            objects: j.result.as_ref().map(|r| r.objects),
            version: j.result.as_ref().map(|r| r.version()),
            corrected: j.result.as_ref().is_some_and(|r| r.corrected()),
            rerun_of: j.rerun_of.map(|id| id.to_string()),
            metadata: j.metadata.clone(),
        }
    }
}

/// The parameters of a segmentation job. Every field has a default; a request sends only what it
/// changes, and an answer shows every field.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamsView {
    /// Divide by a heavily blurred background first (default true).
    #[schema(required = false)]
    pub flatten_illumination: bool,
    /// Gaussian sigma in pixels, 0 to 100; `null` scales it with the image size.
    pub smooth_sigma: Option<f32>,
    #[schema(required = false)]
    pub feature: FeatureView,
    #[schema(required = false)]
    pub polarity: PolarityView,
    /// Holes smaller than this fraction (0 to 1) of their object are filled (default 0.02).
    #[schema(required = false)]
    pub fill_holes_below: f32,
    /// Objects smaller than this fraction (0 to 1) of the image are dropped when the pixel size is
    /// unknown or `min_area_um2` is 0 (default 0.002).
    #[schema(required = false)]
    pub min_area_fraction: f32,
    /// Objects smaller than this many µm² are dropped when the pixel size is known; 0 leaves it to
    /// `min_area_fraction` (default 2000).
    #[schema(required = false)]
    pub min_area_um2: f32,
    /// Objects with a circularity (4πA/P², 0 to 1) below this are dropped (default 0).
    #[schema(required = false)]
    pub min_circularity: f32,
    /// Objects with a circularity above this are dropped (default 1).
    #[schema(required = false)]
    pub max_circularity: f32,
    /// Objects with a solidity (area over convex area, 0 to 1) below this are dropped (default 0).
    #[schema(required = false)]
    pub min_solidity: f32,
    /// Objects with a solidity above this are dropped (default 1).
    #[schema(required = false)]
    pub max_solidity: f32,
    /// Drop objects that touch the image border; otherwise they are kept and flagged (default
    /// false).
    #[schema(required = false)]
    pub drop_border_objects: bool,
    #[schema(required = false)]
    pub declump: DeclumpView,
    /// A split is kept when the neck is narrower than this fraction (0.05 to 1) of the smaller
    /// part's diameter, or when the parts clearly differ in darkness (default 0.8).
    #[schema(required = false)]
    pub split_neck_ratio: f32,
    /// Each object is opened with a disc of this fraction (0 to 0.5) of its equivalent radius
    /// before tracing, which removes halo fingers and thin bridges; 0 is off (default 0.08).
    #[schema(required = false)]
    pub opening_fraction: f32,
    /// Keep only the largest N objects (at least 1); `null` keeps all that pass.
    pub keep_largest: Option<u32>,
    /// Douglas-Peucker tolerance in pixels, 0 to 50; 0 keeps every boundary vertex (default 1).
    #[schema(required = false)]
    pub simplify_epsilon: f32,
    #[schema(required = false)]
    pub resolution: ResolutionView,
    /// Pixel size in micrometres (positive), for metrics in µm.
    pub pixel_size_um: Option<f32>,
    /// Who gave `pixel_size_um` when it was not the job itself: its watch folder or its
    /// project. Set by spheroseg; absent when the job gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub pixel_size_from: Option<PixelSizeFromView>,
}

/// Who gave a job's pixel size, when the job did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PixelSizeFromView {
    Watch,
    Project,
}

/// Whether touching objects are split at narrow necks; `auto` (the default) does, `off` does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeclumpView {
    Auto,
    Off,
}

/// Which pixels the segmenter works on: `auto` (the default) bins an image of 2,048 pixels or
/// more on its long side by long side / 1024 (rounded down) and scales the outlines back; `full`
/// works on every pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResolutionView {
    Auto,
    Full,
}

/// Which image feature the threshold is applied to; `auto` (the default) chooses by the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeatureView {
    Auto,
    Intensity,
    Texture,
}

/// Whether objects are darker or brighter than the background; `auto` (the default) decides
/// from the image border.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolarityView {
    Auto,
    Dark,
    Bright,
}

impl From<&SegmentParams> for ParamsView {
    fn from(p: &SegmentParams) -> Self {
        // Destructured, not read field by field: a field added to `SegmentParams` must be
        // added here, or this stops compiling.
        let SegmentParams {
            flatten_illumination,
            smooth_sigma,
            feature,
            polarity,
            fill_holes_below,
            min_area_fraction,
            min_area_um2,
            min_circularity,
            max_circularity,
            min_solidity,
            max_solidity,
            drop_border_objects,
            declump,
            split_neck_ratio,
            opening_fraction,
            keep_largest,
            simplify_epsilon,
            resolution,
            pixel_size_um,
            pixel_size_from,
        } = *p;
        ParamsView {
            flatten_illumination,
            smooth_sigma,
            feature: match feature {
                Feature::Auto => FeatureView::Auto,
                Feature::Intensity => FeatureView::Intensity,
                Feature::Texture => FeatureView::Texture,
            },
            polarity: match polarity {
                Polarity::Auto => PolarityView::Auto,
                Polarity::Dark => PolarityView::Dark,
                Polarity::Bright => PolarityView::Bright,
            },
            fill_holes_below,
            min_area_fraction,
            min_area_um2,
            min_circularity,
            max_circularity,
            min_solidity,
            max_solidity,
            drop_border_objects,
            declump: match declump {
                Declump::Auto => DeclumpView::Auto,
                Declump::Off => DeclumpView::Off,
            },
            split_neck_ratio,
            opening_fraction,
            keep_largest,
            simplify_epsilon,
            resolution: match resolution {
                Resolution::Auto => ResolutionView::Auto,
                Resolution::Full => ResolutionView::Full,
            },
            pixel_size_um,
            pixel_size_from: match pixel_size_from {
                PixelSizeGiven::Job => None,
                PixelSizeGiven::Watch => Some(PixelSizeFromView::Watch),
                PixelSizeGiven::Project => Some(PixelSizeFromView::Project),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The view writes exactly the JSON `SegmentParams` writes, for every enum value.
    #[test]
    fn params_view_serialises_as_segment_params() {
        let mut cases = vec![SegmentParams::default()];
        for (feature, polarity) in [
            (Feature::Intensity, Polarity::Dark),
            (Feature::Texture, Polarity::Bright),
        ] {
            cases.push(SegmentParams {
                feature,
                polarity,
                smooth_sigma: Some(2.5),
                keep_largest: Some(3),
                pixel_size_um: Some(0.65),
                drop_border_objects: true,
                declump: Declump::Off,
                ..SegmentParams::default()
            });
        }
        for pixel_size_from in [PixelSizeGiven::Watch, PixelSizeGiven::Project] {
            cases.push(SegmentParams {
                pixel_size_um: Some(1.3),
                pixel_size_from,
                ..SegmentParams::default()
            });
        }
        for p in cases {
            assert_eq!(
                serde_json::to_value(ParamsView::from(&p)).expect("json"),
                serde_json::to_value(&p).expect("json")
            );
        }
    }

    #[test]
    fn the_state_schema_lists_every_state() {
        let schema = serde_json::to_value(job_state_schema()).expect("json");
        let names: Vec<&str> = schema["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .map(|v| v.as_str().expect("name"))
            .collect();
        assert_eq!(names, JobState::ALL.map(JobState::as_str));
        assert_eq!(
            serde_json::to_value(JobState::Cancelled).expect("json"),
            "cancelled"
        );
    }
}
