//! Segmentation: one trait, chosen per job, with three implementations: the builtin classical
//! pipeline, a local ML program (`command`) and remote ML services (`remote`: one arm per
//! protocol, `http` the spheroseg contract). The ML ones run behind a circuit breaker each
//! (`breaker`). Also decoding, the decode budget, parameters and the
//! result record.

pub mod breaker;
pub mod budget;
pub mod builtin;
pub mod calibration;
pub mod command;
mod correct;
pub mod decode;
pub mod http;
pub mod oip;
mod params;
mod registry;
pub mod remote;
mod result;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Instant, SystemTime};

pub use budget::{DecodeBudget, Footprint, Reservation};
pub use builtin::{Decisions, SegmentError, Segmentation};
pub use correct::{CorrectionError, MAX_RING_POINTS, checked, corrected};
pub use decode::{DecodeError, DecodeLimits, Decoded};
pub(crate) use params::ParamsV1;
pub use params::{
    Declump, Feature, ParamsError, PixelSizeGiven, Polarity, Resolution, SegmentParams,
};
pub use registry::{MlService, Segmenters};
pub use result::{
    AnalyzeError, ImageInfo, MlOrigin, ObjectFlags, ObjectMetrics, ResultJson, SegmentResult,
    analyze, analyze_decoded,
};
use result::{measure_all, pixel_size_of};

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;
use crate::outline::{Polygon, from_polygons};

/// The name of a segmenter, as jobs, the configuration, the API and the pool all say it:
/// `builtin`, or a configured ML service (`http` for the `[ml]` service, `command` for the local
/// program, or a name of its own). Lowercase letters, digits, `-` and `_`, at most 64.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SegmenterId(String);

impl SegmenterId {
    /// The builtin classical pipeline's name.
    pub const BUILTIN: &'static str = "builtin";
    /// The `[ml]` remote service's name.
    pub const HTTP: &'static str = "http";
    /// The `[command]` local program's name.
    pub const COMMAND: &'static str = "command";

    pub fn builtin() -> Self {
        SegmenterId(Self::BUILTIN.to_owned())
    }

    /// A checked name.
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(SegmenterId(name.to_owned()))
        } else {
            Err(format!(
                "{name:?} is not a segmenter name: use lowercase letters, digits, - and _"
            ))
        }
    }

    pub fn is_builtin(&self) -> bool {
        self.0 == Self::BUILTIN
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SegmenterId {
    fn default() -> Self {
        Self::builtin()
    }
}

impl std::fmt::Display for SegmenterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SegmenterId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SegmenterId::new(s)
    }
}

impl TryFrom<String> for SegmenterId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        SegmenterId::new(&s)
    }
}

/// Lookups by name: hashing and equality are the name's own.
impl std::borrow::Borrow<str> for SegmenterId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<SegmenterId> for String {
    fn from(id: SegmenterId) -> String {
        id.0
    }
}

/// Why a running job was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum StopReason {
    Running = 0,
    /// A person cancelled the job.
    Cancelled = 1,
    /// It ran past its timeout.
    Timeout = 2,
    /// Its lease was lost (it expired and the job went to another attempt).
    LeaseLost = 3,
    /// spheroseg is shutting down; the job is requeued at the next start.
    Shutdown = 4,
}

/// A cancel flag that says why: segmenters only ask `stopped()`; the pool reads the reason.
#[derive(Debug, Default)]
pub struct Stop(AtomicU8);

impl Stop {
    pub fn request(&self, reason: StopReason) {
        // The first reason wins: a timeout during shutdown stays a timeout.
        let _ = self
            .0
            .compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst) != 0
    }

    pub fn reason(&self) -> StopReason {
        match self.0.load(Ordering::SeqCst) {
            1 => StopReason::Cancelled,
            2 => StopReason::Timeout,
            3 => StopReason::LeaseLost,
            4 => StopReason::Shutdown,
            _ => StopReason::Running,
        }
    }
}

/// What a segmenter gets for one job.
pub struct Input<'a> {
    pub bytes: &'a [u8],
    /// The stored original on disk (for programs and services that read files).
    pub path: &'a Path,
    /// The name the image arrived with (for people, results and the files a service receives).
    pub name: &'a str,
    pub params: &'a SegmentParams,
    pub limits: &'a DecodeLimits,
    /// Decoded bytes in flight, shared by the process: a segmenter reserves what it will hold
    /// before it decodes.
    pub budget: &'a DecodeBudget,
    /// The image already decoded (by the upload's check), when it still is: no need to again,
    /// and `bytes` may then be empty (the builtin segmenter alone takes it).
    pub decoded: Option<&'a Decoded>,
}

/// How a job is controlled while it runs.
pub struct Control<'a> {
    pub stop: &'a Stop,
    pub deadline: Instant,
    pub progress: &'a mut dyn FnMut(u8),
}

/// Why a segmenter did not produce a result.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// It stopped because it was asked to (see `Stop::reason`).
    Stopped,
    /// Another attempt may succeed.
    Transient { code: ErrorCode, message: String },
    /// The ML service could not take the job at all (unreachable, 503 or 429, a program that will
    /// not start): not the job's fault, so it goes to another service of its segmenter or waits,
    /// without spending an attempt. The breaker counts a failure, unless the service said when
    /// to come back (`retry_after`): then it is skipped until then.
    Unavailable {
        code: ErrorCode,
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// This input will never work.
    Permanent { code: ErrorCode, message: String },
}

impl Failure {
    pub fn transient(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure::Transient {
            code,
            message: message.into(),
        }
    }

    pub fn permanent(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure::Permanent {
            code,
            message: message.into(),
        }
    }

    pub fn unavailable(
        code: ErrorCode,
        message: impl Into<String>,
        retry_after: Option<std::time::Duration>,
    ) -> Self {
        Failure::Unavailable {
            code,
            message: message.into(),
            retry_after,
        }
    }

    /// The stable code; `None` for a stop.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Failure::Stopped => None,
            Failure::Transient { code, .. }
            | Failure::Unavailable { code, .. }
            | Failure::Permanent { code, .. } => Some(code.as_str()),
        }
    }

    /// What went wrong, for a person; `None` for a stop.
    pub fn message(&self) -> Option<&str> {
        match self {
            Failure::Stopped => None,
            Failure::Transient { message, .. }
            | Failure::Unavailable { message, .. }
            | Failure::Permanent { message, .. } => Some(message),
        }
    }

    /// Whether another attempt may succeed (an unavailable service counts: it may come back).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Failure::Transient { .. } | Failure::Unavailable { .. }
        )
    }
}

/// Something that turns an image into objects.
pub trait Segmenter: Send + Sync {
    /// `builtin`, `command` or `http`.
    fn name(&self) -> &str;
    fn segment(
        &self,
        input: &Input<'_>,
        control: &mut Control<'_>,
    ) -> Result<SegmentResult, Failure>;
}

/// The builtin pipeline.
pub struct Builtin;

impl Segmenter for Builtin {
    fn name(&self) -> &str {
        "builtin"
    }

    fn segment(
        &self,
        input: &Input<'_>,
        control: &mut Control<'_>,
    ) -> Result<SegmentResult, Failure> {
        let footprint = match input.decoded {
            Some(d) => budget::Footprint {
                width: d.gray.width,
                height: d.gray.height,
                decoded_bytes: 0,
            },
            None => decode::probe(input.bytes, input.limits)
                .map_err(|e| Failure::permanent(e.code(), e.to_string()))?
                .footprint(),
        };
        let _reserved = input
            .budget
            .reserve_unless(footprint.builtin_bytes(), || control.stop.stopped())
            .ok_or(Failure::Stopped)?;
        // The pipeline checks an AtomicBool; mirror the stop into one between stages.
        let flag = AtomicBool::new(false);
        let stop = control.stop;
        let progress = &mut *control.progress;
        let mut relay = |p: u8| {
            if stop.stopped() {
                flag.store(true, Ordering::SeqCst);
            }
            progress(p);
        };
        let analyzed = match input.decoded {
            Some(d) => analyze_decoded(d, 0.0, input.name, input.params, &flag, &mut relay),
            None => analyze(
                input.bytes,
                input.name,
                input.params,
                input.limits,
                &flag,
                &mut relay,
            ),
        };
        match analyzed {
            Ok(r) => Ok(r),
            Err(AnalyzeError::Segment(SegmentError::Cancelled)) => Err(Failure::Stopped),
            Err(e) => Err(Failure::permanent(e.code(), e.to_string())),
        }
    }
}

/// A result from the polygons an ML segmenter returned: pairs holes with their outlines, checks
/// they lie in the image and measures them on the decoded image (for intensities).
pub fn result_from_polygons(
    polygons: &[Polygon],
    input: &Input<'_>,
    segmenter: &str,
    timings_ms: Vec<(String, f64)>,
) -> Result<SegmentResult, Failure> {
    let objects = from_polygons(polygons)
        .map_err(|e| Failure::permanent(ErrorCode::BAD_POLYGONS, e.to_string()))?;
    result_from_objects(objects, input, segmenter, timings_ms)
}

/// A result from the objects an ML segmenter found: checks they lie in the image and measures
/// them on the decoded image (for intensities).
pub(crate) fn result_from_objects(
    objects: Vec<crate::outline::Object>,
    input: &Input<'_>,
    segmenter: &str,
    timings_ms: Vec<(String, f64)>,
) -> Result<SegmentResult, Failure> {
    let start = Instant::now();
    let header = decode::probe(input.bytes, input.limits)
        .map_err(|e| Failure::permanent(e.code(), e.to_string()))?;
    // Waits for the budget as long as it must: the ML service's work is done and not to be lost.
    let _reserved = input
        .budget
        .reserve_unless(header.footprint().decode_bytes(), || false);
    let decoded = decode::decode(input.bytes, input.limits)
        .map_err(|e| Failure::permanent(e.code(), e.to_string()))?;
    let (w, h) = (
        f64::from(decoded.gray.width),
        f64::from(decoded.gray.height),
    );
    if let Some((i, p)) = correct::outside_image(&objects, w, h) {
        return Err(Failure::permanent(
            ErrorCode::POLYGONS_OUT_OF_IMAGE,
            format!(
                "{segmenter} returned polygon {} with point ({}, {}) outside the {}×{} image",
                i + 1,
                p.x,
                p.y,
                decoded.gray.width,
                decoded.gray.height
            ),
        ));
    }
    let pixel_size = pixel_size_of(input.params, &decoded);
    let metrics = measure_all(&objects, &decoded, pixel_size);
    let mut timings_ms = timings_ms;
    timings_ms.push(("measure".into(), start.elapsed().as_secs_f64() * 1e3));
    let image = ImageInfo::of(input.name, &decoded);
    Ok(SegmentResult {
        flags: result::geometric_flags(&objects, &image),
        image,
        segmenter: segmenter.to_owned(),
        params: input.params.clone(),
        pixel_size,
        decisions: None,
        objects,
        metrics,
        timings_ms,
        created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        metadata: Vec::new(),
        ml: None,
        corrected: false,
    })
}
