//! Segmentation: the parameters a job carries. The segmenters themselves (builtin, http, command)
//! and the circuit breaker arrive with issues #3 and #4.

mod params;

pub use params::{Feature, ParamsError, Polarity, SegmentParams};
