//! One image's segmentation result, as stored, exported and shown: image facts, the parameters,
//! the pipeline's decisions, the objects with their metrics, and timings. `analyze` produces it
//! from file bytes with the builtin segmenter.

use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::builtin::{self, Decisions, SegmentError};
use super::calibration::{self, PixelSize};
use super::decode::{self, DecodeError, DecodeLimits, Decoded};
use super::params::{ParamsError, SegmentParams};
use crate::error_code::ErrorCode;
use crate::morphology::{Metrics, measure};
use crate::outline::{Object, Polygon, to_polygons};

mod legacy;

/// What is known about the image that was segmented.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub format: String,
    pub bit_depth: u8,
    pub channels: u8,
    pub pages: u32,
}

impl ImageInfo {
    /// The facts of a decoded image, under the name it was uploaded with.
    pub fn of(name: &str, decoded: &Decoded) -> Self {
        Self {
            name: name.to_owned(),
            width: decoded.gray.width,
            height: decoded.gray.height,
            format: decoded.format.to_owned(),
            bit_depth: decoded.bit_depth,
            channels: decoded.channels,
            pages: decoded.pages,
        }
    }
}

/// The metrics of every object, intensities taken from the decoded image, micrometres from
/// `pixel_size`.
pub fn measure_all(
    objects: &[Object],
    decoded: &Decoded,
    pixel_size: Option<PixelSize>,
) -> Vec<Metrics> {
    let pixel = pixel_size.map(|p| p.um);
    objects
        .iter()
        .map(|o| measure(o, Some(&decoded.gray), pixel))
        .collect()
}

/// The pixel size a job measures with: its own `pixel_size_um`, else the one the file states.
pub fn pixel_size_of(params: &SegmentParams, decoded: &Decoded) -> Option<PixelSize> {
    calibration::resolve(
        params.pixel_size_um,
        params.pixel_size_from,
        decoded.pixel_size,
    )
}

/// What a person may want to filter an object on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectFlags {
    /// The outline reaches the image border: the object may be cut off.
    pub touches_border: bool,
    /// The object was split from touching neighbours (declumped).
    pub split: bool,
    /// The object is barely darker (or brighter) than what surrounds it.
    pub low_contrast: bool,
}

/// Flags that follow from the outlines alone: `touches_border` (within half a pixel of an edge).
pub fn geometric_flags(objects: &[Object], image: &ImageInfo) -> Vec<ObjectFlags> {
    let (w, h) = (f64::from(image.width), f64::from(image.height));
    objects
        .iter()
        .map(|o| ObjectFlags {
            touches_border: o
                .outer
                .iter()
                .any(|p| p.x <= 0.5 || p.y <= 0.5 || p.x >= w - 0.5 || p.y >= h - 0.5),
            ..ObjectFlags::default()
        })
        .collect()
}

/// The outcome of segmenting one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentResult {
    pub image: ImageInfo,
    /// `builtin`, or the name of the ML service that produced the objects.
    pub segmenter: String,
    pub params: SegmentParams,
    /// The pixel size the metrics in µm use and where it came from; `None` when unknown.
    pub pixel_size: Option<PixelSize>,
    /// The builtin pipeline's choices; absent for ML results.
    pub decisions: Option<Decisions>,
    pub objects: Vec<Object>,
    /// One per object, same order.
    pub metrics: Vec<Metrics>,
    /// One per object, same order.
    #[serde(default)]
    pub flags: Vec<ObjectFlags>,
    /// Milliseconds per stage, `decode` and `measure` included.
    pub timings_ms: Vec<(String, f64)>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The job's metadata (e.g. `plate`, `well` from a watch folder's file names), in the order
    /// it was given; copied in when the result is stored, so exports need not join the job.
    pub metadata: Vec<(String, String)>,
    /// What a remote ML service said beside its outlines; `None` for other results.
    pub ml: Option<MlOrigin>,
    /// The outlines were corrected by hand (the metrics recomputed by the server from them).
    pub corrected: bool,
}

/// What a remote ML service sent beside its outlines, kept as it sent it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MlOrigin {
    /// The ids of its polygons in the flat list's order (each outline, then its holes), when
    /// they were unique; the result's polygons carry them instead of spheroseg's own.
    #[serde(default)]
    pub polygon_ids: Vec<String>,
    /// Its `features`, whatever their shape.
    #[serde(default)]
    pub features: Option<serde_json::Value>,
    /// How the image was fitted to a model's input (an `oip` service's pixel tensor): the
    /// outlines were traced on its output scaled back to the image's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_input: Option<crate::segment::oip::Scaling>,
}

/// Everything of a stored result but its outlines, as JSON (so fields can be added), beside the
/// outlines in postcard (compact, and their shape does not change).
#[derive(Serialize, Deserialize)]
struct Meta {
    image: ImageInfo,
    segmenter: String,
    params: SegmentParams,
    /// Absent in results stored before it was recorded: those measured with the job's size.
    #[serde(default)]
    pixel_size: Option<PixelSize>,
    decisions: Option<Decisions>,
    metrics: Vec<Metrics>,
    #[serde(default)]
    flags: Vec<ObjectFlags>,
    timings_ms: Vec<(String, f64)>,
    created_at: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    metadata: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ml: Option<MlOrigin>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    corrected: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredV2 {
    meta: String,
    objects: Vec<Object>,
}

/// The JSON shape of a result: objects as the ML service's polygon list, metrics keyed by its ids.
#[derive(Serialize)]
pub struct ResultJson<'a> {
    pub image: &'a ImageInfo,
    pub segmenter: &'a str,
    pub params: &'a SegmentParams,
    pub pixel_size: Option<PixelSize>,
    pub decisions: &'a Option<Decisions>,
    pub polygons: Vec<Polygon>,
    pub metrics: Vec<ObjectMetrics<'a>>,
    /// A remote ML service's own `features`, as it sent them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<&'a serde_json::Value>,
    pub timings_ms: &'a [(String, f64)],
    pub created_at: &'a str,
    /// How an `oip` service's model saw the image (its input size against the image's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_input: Option<crate::segment::oip::Scaling>,
    /// The outlines were corrected by hand.
    pub corrected: bool,
    /// The result version this is (1 is the segmenter's), when the caller knows the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// One object's metrics and flags with the id of its external polygon.
#[derive(Serialize)]
pub struct ObjectMetrics<'a> {
    pub object_id: String,
    #[serde(flatten)]
    pub metrics: &'a Metrics,
    pub flags: ObjectFlags,
}

/// Version bytes in front of a stored result: 1 is postcard of the whole result
/// (`result/legacy.rs`), 2 postcard of the outlines beside the rest as JSON.
const RESULT_V1: u8 = 1;
const RESULT_V2: u8 = 2;

impl SegmentResult {
    /// The stored form: a version byte, then postcard of the outlines and of the rest as JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = Meta {
            image: self.image.clone(),
            segmenter: self.segmenter.clone(),
            params: self.params.clone(),
            pixel_size: self.pixel_size,
            decisions: self.decisions.clone(),
            metrics: self.metrics.clone(),
            flags: self.flags.clone(),
            timings_ms: self.timings_ms.clone(),
            created_at: self.created_at.clone(),
            metadata: self.metadata.clone(),
            ml: self.ml.clone(),
            corrected: self.corrected,
        };
        let stored = StoredV2 {
            meta: serde_json::to_string(&meta).expect("plain structs serialise"),
            objects: self.objects.clone(),
        };
        let mut out = vec![RESULT_V2];
        out.extend(postcard::to_stdvec(&stored).expect("postcard encodes plain structs"));
        out
    }

    /// Reads the stored form; `None` for bytes no version of spheroseg wrote.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        match bytes.split_first() {
            Some((&RESULT_V2, rest)) => {
                let stored: StoredV2 = postcard::from_bytes(rest).ok()?;
                let m: Meta = serde_json::from_str(&stored.meta).ok()?;
                let flags = if m.flags.len() == stored.objects.len() {
                    m.flags
                } else {
                    geometric_flags(&stored.objects, &m.image)
                };
                let pixel_size = m.pixel_size.or_else(|| {
                    calibration::resolve(m.params.pixel_size_um, m.params.pixel_size_from, None)
                });
                Some(SegmentResult {
                    image: m.image,
                    segmenter: m.segmenter,
                    pixel_size,
                    params: m.params,
                    decisions: m.decisions,
                    objects: stored.objects,
                    metrics: m.metrics,
                    flags,
                    timings_ms: m.timings_ms,
                    created_at: m.created_at,
                    metadata: m.metadata,
                    ml: m.ml,
                    corrected: m.corrected,
                })
            }
            Some((&RESULT_V1, rest)) => postcard::from_bytes::<legacy::ResultV1>(rest)
                .ok()
                .map(SegmentResult::from),
            _ => None,
        }
    }

    /// The flags of object `i` (none for a result that has fewer).
    pub fn flags_of(&self, i: usize) -> ObjectFlags {
        self.flags.get(i).copied().unwrap_or_default()
    }

    /// The objects as the flat polygon list, with the ids the ML service gave them when it did.
    pub fn polygons(&self) -> Vec<Polygon> {
        let mut list = to_polygons(&self.objects);
        let ids = self.ml.as_ref().map_or(&[][..], |m| &m.polygon_ids[..]);
        if ids.len() == list.len() {
            let theirs: std::collections::HashMap<String, &String> =
                list.iter().map(|p| p.id.clone()).zip(ids).collect();
            for p in &mut list {
                p.id = theirs[&p.id].clone();
                if let Some(parent) = &mut p.parent_id {
                    *parent = theirs[parent.as_str()].clone();
                }
            }
        }
        list
    }

    pub fn to_json(&self) -> ResultJson<'_> {
        let polygons = self.polygons();
        let outlines = polygons
            .iter()
            .filter(|p| p.kind == crate::outline::PolygonKind::External);
        ResultJson {
            image: &self.image,
            segmenter: &self.segmenter,
            params: &self.params,
            pixel_size: self.pixel_size,
            decisions: &self.decisions,
            metrics: self
                .metrics
                .iter()
                .zip(outlines)
                .enumerate()
                .map(|(i, (m, p))| ObjectMetrics {
                    object_id: p.id.clone(),
                    metrics: m,
                    flags: self.flags_of(i),
                })
                .collect(),
            polygons,
            features: self.ml.as_ref().and_then(|m| m.features.as_ref()),
            timings_ms: &self.timings_ms,
            created_at: &self.created_at,
            model_input: self.ml.as_ref().and_then(|m| m.model_input),
            corrected: self.corrected,
            version: None,
        }
    }
}

/// Why an image could not be analysed. All are permanent except `Cancelled`, which is not a
/// failure of the image.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnalyzeError {
    #[error(transparent)]
    Params(#[from] ParamsError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

impl AnalyzeError {
    /// A stable kebab-case code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AnalyzeError::Params(_) => ErrorCode::INVALID_PARAMS,
            AnalyzeError::Decode(e) => e.code(),
            AnalyzeError::Segment(SegmentError::Cancelled) => ErrorCode::STOPPED,
            AnalyzeError::Segment(SegmentError::TooSmall { .. }) => ErrorCode::IMAGE_TOO_SMALL,
        }
    }
}

/// Decodes `bytes`, runs the builtin segmenter and measures every object.
pub fn analyze(
    bytes: &[u8],
    name: &str,
    params: &SegmentParams,
    limits: &DecodeLimits,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u8),
) -> Result<SegmentResult, AnalyzeError> {
    params.validate()?;
    let start = Instant::now();
    let decoded = decode::decode(bytes, limits)?;
    let decode_ms = start.elapsed().as_secs_f64() * 1e3;
    analyze_decoded(&decoded, decode_ms, name, params, cancel, progress)
}

/// [`analyze`] of an image already decoded (`decode_ms` is what that took, for the timings).
pub fn analyze_decoded(
    decoded: &Decoded,
    decode_ms: f64,
    name: &str,
    params: &SegmentParams,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u8),
) -> Result<SegmentResult, AnalyzeError> {
    params.validate()?;
    progress(5);
    let pixel_size = pixel_size_of(params, decoded);
    // The pipeline's size limits in µm² apply with the file's calibration too.
    let calibrated = SegmentParams {
        pixel_size_um: pixel_size.map(|p| p.um as f32),
        ..params.clone()
    };
    let seg = builtin::segment(&decoded.gray, &calibrated, cancel, &mut |p| {
        progress((5 + u16::from(p) * 9 / 10) as u8)
    })?;
    let start = Instant::now();
    let metrics = measure_all(&seg.objects, decoded, pixel_size);
    let measure_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut timings_ms = vec![("decode".to_owned(), decode_ms)];
    timings_ms.extend(seg.timings.iter().map(|(k, v)| ((*k).to_owned(), *v)));
    timings_ms.push(("measure".to_owned(), measure_ms));
    progress(100);
    Ok(SegmentResult {
        image: ImageInfo::of(name, decoded),
        segmenter: "builtin".into(),
        params: params.clone(),
        pixel_size,
        decisions: Some(seg.decisions),
        objects: seg.objects,
        metrics,
        flags: seg.flags,
        timings_ms,
        created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        metadata: Vec::new(),
        ml: None,
        corrected: false,
    })
}
