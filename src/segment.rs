//! Segmentation: decoding images, the builtin classical pipeline, and the parameters a job
//! carries. The ML segmenters (http, command) and the circuit breaker arrive with #4.

pub mod breaker;
pub mod builtin;
pub mod decode;
mod params;
mod result;

pub use builtin::{Decisions, SegmentError, Segmentation};
pub use decode::{DecodeError, DecodeLimits, Decoded};
pub use params::{Feature, ParamsError, Polarity, SegmentParams};
pub use result::{AnalyzeError, ImageInfo, ObjectMetrics, ResultJson, SegmentResult, analyze};
