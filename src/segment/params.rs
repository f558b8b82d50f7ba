//! The typed, validated parameters of a segmentation job. They are stored with every job (postcard:
//! field order is the wire format, so a change here is a schema migration in `queue/store.rs`).

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
    /// Objects smaller than this fraction of the image are dropped.
    pub min_area_fraction: f32,
    pub drop_border_objects: bool,
    /// Keep only the largest N objects; `None` keeps all that pass.
    pub keep_largest: Option<u32>,
    /// Douglas-Peucker tolerance in pixels; 0 keeps every boundary vertex.
    pub simplify_epsilon: f32,
    /// Pixel size in micrometres, for metrics in µm.
    pub pixel_size_um: Option<f32>,
}

impl Default for SegmentParams {
    fn default() -> Self {
        SegmentParams {
            flatten_illumination: true,
            smooth_sigma: None,
            feature: Feature::Auto,
            polarity: Polarity::Auto,
            fill_holes_below: 0.02,
            min_area_fraction: 0.001,
            drop_border_objects: false,
            keep_largest: None,
            simplify_epsilon: 1.0,
            pixel_size_um: None,
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
    }
}
