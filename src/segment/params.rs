//! The typed, validated parameters of a segmentation job. They are stored with every job as JSON
//! text (job record v2) and in every result (result record v2, JSON), so a field may be added with
//! a default; older records are read through frozen copies (`queue/store/legacy.rs`,
//! `segment/result/legacy.rs`).

use serde::{Deserialize, Serialize};

/// Which image feature the threshold is applied to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Feature {
    /// Choose by the image: texture when the intensity histogram does not separate.
    #[default]
    Auto,
    Intensity,
    Texture,
}

/// Whether objects are darker or brighter than the background.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Polarity {
    /// Decide from the image border against the threshold.
    #[default]
    Auto,
    Dark,
    Bright,
}

/// Whether touching objects are split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Declump {
    /// Split at a narrow neck between two compact parts (see `builtin/declump.rs`).
    #[default]
    Auto,
    Off,
}

/// Which pixels the segmenter works on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// An image of 2,048 pixels or more on its long side is binned by `n` = long side / 1024
    /// (rounded down): each block of `n × n` pixels averaged, as ImageJ's Bin does, so the
    /// pipeline sees 1,024 to 2,047 pixels on the long side, the scale its smoothing and
    /// morphology are defined at. The outlines are scaled back and measured on the full image.
    #[default]
    Auto,
    /// Every pixel, whatever the size.
    Full,
}

/// Parameters of a segmentation job. Every field has a default; a job sends only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentParams {
    /// Divide by a heavily blurred background first.
    pub flatten_illumination: bool,
    /// Gaussian sigma in pixels; `None` scales it with the image size.
    pub smooth_sigma: Option<f32>,
    pub feature: Feature,
    pub polarity: Polarity,
    /// Holes smaller than this fraction of their object are filled.
    pub fill_holes_below: f32,
    /// Objects smaller than this fraction of the image are dropped (when the pixel size is
    /// unknown, or `min_area_um2` is 0).
    pub min_area_fraction: f32,
    /// Objects smaller than this many µm² are dropped when the pixel size is known; 0 leaves it
    /// to `min_area_fraction`.
    pub min_area_um2: f32,
    /// Objects outside these ranges of circularity (4πA/P²) and solidity (area over convex area)
    /// are dropped.
    pub min_circularity: f32,
    pub max_circularity: f32,
    pub min_solidity: f32,
    pub max_solidity: f32,
    /// Drop objects that touch the image border (ImageJ's "exclude on edges"); they are kept and
    /// flagged otherwise.
    pub drop_border_objects: bool,
    /// Split touching objects at narrow necks.
    pub declump: Declump,
    /// A split is kept when the neck is narrower than this fraction of the smaller part's
    /// diameter.
    pub split_neck_ratio: f32,
    /// Each object is opened with a disc of this fraction of its equivalent radius before it is
    /// traced: fingers of loose halo cells and thin bridges between spheroids go, the compact body
    /// stays. 0 turns it off.
    pub opening_fraction: f32,
    /// Keep only the largest N objects; `None` keeps all that pass.
    pub keep_largest: Option<u32>,
    /// Douglas-Peucker tolerance in pixels; 0 keeps every boundary vertex.
    pub simplify_epsilon: f32,
    /// Whether a large image is binned first (see [`Resolution`]).
    pub resolution: Resolution,
    /// Pixel size in micrometres, for metrics in µm.
    pub pixel_size_um: Option<f32>,
    /// Who gave `pixel_size_um`: the job itself, its watch folder or its project. Set by the
    /// intake, not by a person; absent from the JSON when it is the job.
    #[serde(skip_serializing_if = "PixelSizeGiven::is_job")]
    pub pixel_size_from: PixelSizeGiven,
}

/// Who gave a job its pixel size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelSizeGiven {
    /// With the upload or the API call (or the CLI).
    #[default]
    Job,
    /// The watch folder's `pixel_size_um`.
    Watch,
    /// The project's remembered pixel size.
    Project,
}

impl PixelSizeGiven {
    fn is_job(&self) -> bool {
        *self == PixelSizeGiven::Job
    }
}

impl Default for SegmentParams {
    fn default() -> Self {
        SegmentParams {
            flatten_illumination: true,
            smooth_sigma: None,
            feature: Feature::Auto,
            polarity: Polarity::Auto,
            fill_holes_below: 0.02,
            min_area_fraction: 0.002,
            min_area_um2: 2000.0,
            min_circularity: 0.0,
            max_circularity: 1.0,
            min_solidity: 0.0,
            max_solidity: 1.0,
            drop_border_objects: false,
            declump: Declump::Auto,
            split_neck_ratio: 0.8,
            opening_fraction: 0.08,
            keep_largest: None,
            simplify_epsilon: 1.0,
            resolution: Resolution::Auto,
            pixel_size_um: None,
            pixel_size_from: PixelSizeGiven::Job,
        }
    }
}

/// The parameters as the first job and result records stored them (postcard, so the fields in
/// this order), read into today's with defaults for what they did not have.
#[derive(Deserialize)]
pub(crate) struct ParamsV1 {
    flatten_illumination: bool,
    smooth_sigma: Option<f32>,
    feature: Feature,
    polarity: Polarity,
    fill_holes_below: f32,
    min_area_fraction: f32,
    drop_border_objects: bool,
    keep_largest: Option<u32>,
    simplify_epsilon: f32,
    pixel_size_um: Option<f32>,
}

impl From<ParamsV1> for SegmentParams {
    fn from(p: ParamsV1) -> Self {
        SegmentParams {
            flatten_illumination: p.flatten_illumination,
            smooth_sigma: p.smooth_sigma,
            feature: p.feature,
            polarity: p.polarity,
            fill_holes_below: p.fill_holes_below,
            min_area_fraction: p.min_area_fraction,
            drop_border_objects: p.drop_border_objects,
            keep_largest: p.keep_largest,
            simplify_epsilon: p.simplify_epsilon,
            pixel_size_um: p.pixel_size_um,
            // Version 1 had no declumping, opening or shape ranges: keep its outcome.
            declump: Declump::Off,
            opening_fraction: 0.0,
            min_area_um2: 0.0,
            resolution: Resolution::Full,
            ..SegmentParams::default()
        }
    }
}

/// A parameter out of its range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid segmentation parameter {field}: {reason}")]
pub struct ParamsError {
    /// The offending field's name.
    pub field: &'static str,
    /// What the field accepts.
    pub reason: String,
}

impl SegmentParams {
    /// Checks every field's range; the first bad one is the error.
    pub fn validate(&self) -> Result<(), ParamsError> {
        fn bad(field: &'static str, reason: &str) -> Result<(), ParamsError> {
            Err(ParamsError {
                field,
                reason: reason.to_owned(),
            })
        }
        if let Some(s) = self.smooth_sigma
            && !(s.is_finite() && (0.0..=100.0).contains(&s))
        {
            return bad("smooth_sigma", "must be between 0 and 100 pixels");
        }
        if !(self.fill_holes_below.is_finite() && (0.0..=1.0).contains(&self.fill_holes_below)) {
            return bad("fill_holes_below", "must be a fraction between 0 and 1");
        }
        if !(self.min_area_fraction.is_finite() && (0.0..=1.0).contains(&self.min_area_fraction)) {
            return bad("min_area_fraction", "must be a fraction between 0 and 1");
        }
        if !(self.min_area_um2.is_finite() && self.min_area_um2 >= 0.0) {
            return bad("min_area_um2", "must be 0 or a positive area in µm²");
        }
        for (field, lo, hi) in [
            ("circularity", self.min_circularity, self.max_circularity),
            ("solidity", self.min_solidity, self.max_solidity),
        ] {
            if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= 1.0) {
                return bad(
                    if field == "circularity" {
                        "min_circularity"
                    } else {
                        "min_solidity"
                    },
                    &format!(
                        "the {field} range must lie within 0..1, its minimum not above its maximum"
                    ),
                );
            }
        }
        if !(self.split_neck_ratio.is_finite() && (0.05..=1.0).contains(&self.split_neck_ratio)) {
            return bad("split_neck_ratio", "must be between 0.05 and 1");
        }
        if !(self.opening_fraction.is_finite() && (0.0..=0.5).contains(&self.opening_fraction)) {
            return bad("opening_fraction", "must be between 0 and 0.5");
        }
        if self.keep_largest == Some(0) {
            return bad("keep_largest", "must be at least 1, or absent to keep all");
        }
        if !(self.simplify_epsilon.is_finite() && (0.0..=50.0).contains(&self.simplify_epsilon)) {
            return bad("simplify_epsilon", "must be between 0 and 50 pixels");
        }
        if let Some(p) = self.pixel_size_um
            && !(p.is_finite() && p > 0.0)
        {
            return bad("pixel_size_um", "must be a positive number of micrometres");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(SegmentParams::default().validate(), Ok(()));
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let p = SegmentParams {
            min_area_fraction: 2.0,
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "min_area_fraction");
        let p = SegmentParams {
            pixel_size_um: Some(-1.0),
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "pixel_size_um");
        let p = SegmentParams {
            simplify_epsilon: f32::NAN,
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "simplify_epsilon");
        let p = SegmentParams {
            min_circularity: 0.8,
            max_circularity: 0.5,
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "min_circularity");
        let p = SegmentParams {
            opening_fraction: 0.9,
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "opening_fraction");
    }
}
