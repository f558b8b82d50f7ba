//! The builtin segmenter's parameters as a form shows them: for each field of `SegmentParams`
//! its name, type, default, range or choices, and a one-line help text. The status page builds
//! its parameter form from this (`GET /api/segmenters/builtin/params`), so defaults and ranges
//! live in Rust only.
//!
//! Invariants, kept by construction and by the tests below: the defaults are read from
//! `SegmentParams::default()` by destructuring it, so a field added there fails to compile until
//! it has an entry here; every range's bounds pass `validate()` and a value just outside fails;
//! every choice is a value the field takes; a default sits on its field's step grid (a browser
//! refuses a number input whose value does not).

use serde::Serialize;
use utoipa::ToSchema;

use crate::segment::{Declump, Feature, Polarity, Resolution, SegmentParams};

/// What kind of input a parameter takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// `true` or `false`.
    Boolean,
    /// A decimal number.
    Number,
    /// A whole number.
    Integer,
    /// One of `choices`.
    Choice,
}

/// A parameter's value: a boolean, a number or a choice's name.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Boolean(bool),
    Number(f32),
    Integer(u32),
    Text(String),
}

/// The schema of a [`ParamValue`] or `null`: a boolean, a number or a string. Written by hand
/// because the derived one lists integers beside numbers under `oneOf`, which a value such as
/// `1.0` matches twice.
fn param_value_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    let of = |t| ObjectBuilder::new().schema_type(t);
    OneOfBuilder::new()
        .item(of(Type::Boolean))
        .item(of(Type::Number))
        .item(of(Type::String))
        .item(of(Type::Null))
        .description(Some(
            "The value a job has when its request does not send this field (`null`: see `null_means`).",
        ))
        .build()
        .into()
}

/// One value of a `choice` parameter.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ParamChoice {
    /// The value as `params` takes it.
    pub value: String,
    /// What it does.
    pub help: &'static str,
}

/// One parameter of the builtin segmenter.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ParamField {
    /// The field's name in `params`.
    pub name: &'static str,
    /// A short label for a form.
    pub label: &'static str,
    #[serde(rename = "type")]
    pub kind: ParamKind,
    /// Whether `null` is allowed; a form leaves such a field empty for `null`.
    pub nullable: bool,
    /// The value a job has when its request does not send this field (`null`: see `null_means`).
    #[schema(schema_with = param_value_schema, required = true)]
    pub default: Option<ParamValue>,
    /// What `null` does, for a nullable field.
    pub null_means: Option<&'static str>,
    /// The smallest value allowed.
    pub minimum: Option<f32>,
    /// Values must be above this one.
    pub exclusive_minimum: Option<f32>,
    /// The largest value allowed.
    pub maximum: Option<f32>,
    /// A form's increment for a number; `null`: any value.
    pub step: Option<f32>,
    /// The unit of a number, for people.
    pub unit: Option<&'static str>,
    /// The values of a `choice`.
    pub choices: Vec<ParamChoice>,
    /// One line on what the parameter does.
    pub help: &'static str,
}

impl ParamField {
    fn boolean(name: &'static str, label: &'static str, default: bool, help: &'static str) -> Self {
        ParamField {
            name,
            label,
            kind: ParamKind::Boolean,
            nullable: false,
            default: Some(ParamValue::Boolean(default)),
            null_means: None,
            minimum: None,
            exclusive_minimum: None,
            maximum: None,
            step: None,
            unit: None,
            choices: Vec::new(),
            help,
        }
    }

    /// A number from `min` to `max` (either end open when `None`).
    fn number(
        name: &'static str,
        label: &'static str,
        default: f32,
        (min, max, step): (Option<f32>, Option<f32>, Option<f32>),
        help: &'static str,
    ) -> Self {
        ParamField {
            kind: ParamKind::Number,
            default: Some(ParamValue::Number(default)),
            minimum: min,
            maximum: max,
            step,
            ..Self::boolean(name, label, false, help)
        }
    }

    fn choice<T: Serialize + Copy>(
        name: &'static str,
        label: &'static str,
        default: T,
        choices: &[(T, &'static str)],
        help: &'static str,
    ) -> Self {
        ParamField {
            kind: ParamKind::Choice,
            default: Some(ParamValue::Text(serde_name(default))),
            choices: choices
                .iter()
                .map(|&(value, help)| ParamChoice {
                    value: serde_name(value),
                    help,
                })
                .collect(),
            ..Self::boolean(name, label, false, help)
        }
    }

    fn unit(self, unit: &'static str) -> Self {
        ParamField {
            unit: Some(unit),
            ..self
        }
    }

    /// Values must be above `min` (not equal to it).
    fn above(self, min: f32) -> Self {
        ParamField {
            exclusive_minimum: Some(min),
            ..self
        }
    }

    /// Takes a `match` naming every value of the choice's enum: a value added to the enum stops
    /// this compiling until it is listed (and given a help line) above.
    fn exhaustive<T>(self, _every_value: impl Fn(T)) -> Self {
        self
    }

    /// Allows `null`, which does `means`; `default` is the field's default.
    fn nullable(self, default: Option<ParamValue>, means: &'static str) -> Self {
        ParamField {
            nullable: true,
            default,
            null_means: Some(means),
            ..self
        }
    }
}

/// The name serde gives a unit enum value (`Feature::Auto` is `"auto"`).
fn serde_name<T: Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("a parameter choice is a unit enum value, which serde writes as a string")
}

/// Every parameter of the builtin segmenter, in the order a form shows them.
pub fn param_fields() -> Vec<ParamField> {
    // Destructured, not read field by field: a field added to `SegmentParams` must be added here,
    // or this stops compiling.
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
        // Not a form field: the intake records who gave the pixel size.
        pixel_size_from: _,
    } = SegmentParams::default();
    let fraction = |step| (Some(0.0), Some(1.0), Some(step));
    vec![
        ParamField::number(
            "pixel_size_um",
            "Pixel size",
            0.0,
            (None, None, None),
            "Micrometres per pixel, for areas and diameters in µm.",
        )
        .unit("µm")
        .nullable(
            pixel_size_um.map(ParamValue::Number),
            "unknown, metrics in pixels only",
        )
        .above(0.0),
        ParamField::boolean(
            "flatten_illumination",
            "Flatten illumination",
            flatten_illumination,
            "Divide by a heavily blurred background first, for unevenly lit images.",
        ),
        ParamField::number(
            "smooth_sigma",
            "Smoothing σ",
            0.0,
            (Some(0.0), Some(100.0), Some(0.1)),
            "Gaussian blur before the threshold.",
        )
        .unit("px")
        .nullable(
            smooth_sigma.map(ParamValue::Number),
            "scaled to the image size",
        ),
        ParamField::choice(
            "feature",
            "Threshold on",
            feature,
            &[
                (
                    Feature::Auto,
                    "texture when the intensities do not separate, else intensity",
                ),
                (Feature::Intensity, "the brightness of each pixel"),
                (Feature::Texture, "the local variation around each pixel"),
            ][..],
            "Which image feature the automatic threshold is applied to.",
        )
        .exhaustive(|f: Feature| match f {
            Feature::Auto | Feature::Intensity | Feature::Texture => (),
        }),
        ParamField::choice(
            "polarity",
            "Objects are",
            polarity,
            &[
                (Polarity::Auto, "decided from the image border"),
                (Polarity::Dark, "darker than the background"),
                (Polarity::Bright, "brighter than the background"),
            ][..],
            "Whether spheroids are darker or brighter than the background.",
        )
        .exhaustive(|p: Polarity| match p {
            Polarity::Auto | Polarity::Dark | Polarity::Bright => (),
        }),
        ParamField::number(
            "fill_holes_below",
            "Fill holes below",
            fill_holes_below,
            fraction(0.001),
            "Holes smaller than this fraction of their object are filled.",
        )
        .unit("of the object"),
        ParamField::number(
            "min_area_um2",
            "Minimum area",
            min_area_um2,
            (Some(0.0), None, Some(1.0)),
            "Smaller objects are dropped when the pixel size is known; 0 uses the fraction below.",
        )
        .unit("µm²"),
        ParamField::number(
            "min_area_fraction",
            "Minimum area, fraction",
            min_area_fraction,
            fraction(0.0001),
            "Smaller objects are dropped when the pixel size is unknown or the µm² minimum is 0.",
        )
        .unit("of the image"),
        ParamField::number(
            "min_circularity",
            "Minimum circularity",
            min_circularity,
            fraction(0.01),
            "Objects less round than this are dropped (4πA/P²: 1 is a circle).",
        ),
        ParamField::number(
            "max_circularity",
            "Maximum circularity",
            max_circularity,
            fraction(0.01),
            "Objects rounder than this are dropped.",
        ),
        ParamField::number(
            "min_solidity",
            "Minimum solidity",
            min_solidity,
            fraction(0.01),
            "Objects less solid than this are dropped (area over convex area).",
        ),
        ParamField::number(
            "max_solidity",
            "Maximum solidity",
            max_solidity,
            fraction(0.01),
            "Objects more solid than this are dropped.",
        ),
        ParamField::boolean(
            "drop_border_objects",
            "Drop objects on the border",
            drop_border_objects,
            "Objects touching the image border are dropped; otherwise kept and flagged.",
        ),
        ParamField::choice(
            "declump",
            "Split touching objects",
            declump,
            &[
                (Declump::Auto, "split at a narrow neck between two compact parts"),
                (Declump::Off, "touching objects stay one"),
            ][..],
            "Whether touching spheroids are split in two.",
        )
        .exhaustive(|d: Declump| match d {
            Declump::Auto | Declump::Off => (),
        }),
        ParamField::number(
            "split_neck_ratio",
            "Split neck ratio",
            split_neck_ratio,
            (Some(0.05), Some(1.0), Some(0.01)),
            "Keep a split when the neck is under this fraction of the smaller part, or tones differ.",
        ),
        ParamField::number(
            "opening_fraction",
            "Opening",
            opening_fraction,
            (Some(0.0), Some(0.5), Some(0.01)),
            "Removes halo fingers and thin bridges: a disc of this fraction of each radius; 0 is off.",
        )
        .unit("of the radius"),
        ParamField {
            kind: ParamKind::Integer,
            minimum: Some(1.0),
            step: Some(1.0),
            ..ParamField::number(
                "keep_largest",
                "Keep the largest",
                0.0,
                (None, None, None),
                "Keep only this many objects, the largest ones.",
            )
        }
        .nullable(keep_largest.map(ParamValue::Integer), "keep all that pass"),
        ParamField::number(
            "simplify_epsilon",
            "Outline tolerance",
            simplify_epsilon,
            (Some(0.0), Some(50.0), Some(0.1)),
            "Outlines are simplified to within this distance; 0 keeps every boundary pixel.",
        )
        .unit("px"),
        ParamField::choice(
            "resolution",
            "Resolution",
            resolution,
            &[
                (
                    Resolution::Auto,
                    "bin an image of 2048 px or more to 1024-2047 px, outlines scaled back",
                ),
                (Resolution::Full, "every pixel, whatever the size (slower)"),
            ][..],
            "Which pixels are segmented; metrics are always measured on the full image.",
        )
        .exhaustive(|r: Resolution| match r {
            Resolution::Auto | Resolution::Full => (),
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn defaults() -> serde_json::Map<String, Value> {
        match serde_json::to_value(SegmentParams::default()).expect("json") {
            Value::Object(m) => m,
            other => panic!("params are an object: {other}"),
        }
    }

    /// The defaults with `name` set to `value`, validated.
    fn check(name: &str, value: Value) -> Result<(), String> {
        let mut p = defaults();
        p.insert(name.to_owned(), value);
        let p: SegmentParams =
            serde_json::from_value(Value::Object(p)).map_err(|e| e.to_string())?;
        p.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn every_field_has_one_entry_with_its_default() {
        let defaults = defaults();
        let fields = param_fields();
        let mut names: Vec<&str> = fields.iter().map(|f| f.name).collect();
        names.sort_unstable();
        let mut expected: Vec<&str> = defaults.keys().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
        for f in &fields {
            assert_eq!(
                serde_json::to_value(&f.default).expect("json"),
                defaults[f.name],
                "{}",
                f.name
            );
            assert_eq!(f.nullable, f.null_means.is_some(), "{}", f.name);
            assert!(!f.label.is_empty() && !f.help.is_empty(), "{}", f.name);
            assert!(
                !f.help.contains('\n') && f.help.len() < 100,
                "{}: one line",
                f.name
            );
        }
    }

    #[test]
    fn ranges_hold_at_their_bounds_and_fail_just_outside() {
        for f in param_fields() {
            let n = f.name;
            if f.nullable {
                assert_eq!(check(n, Value::Null), Ok(()), "{n}: null");
            } else {
                assert!(check(n, Value::Null).is_err(), "{n}: null is refused");
            }
            // A whole number is written as one: serde takes no `1.0` for a `u32`.
            let num = |x: f32| {
                if f.kind == ParamKind::Integer {
                    json!(x as i64)
                } else {
                    json!(x)
                }
            };
            let outside = |bound: f32| {
                if f.kind == ParamKind::Integer {
                    1.0
                } else {
                    1e-3 * bound.abs().max(1.0)
                }
            };
            match f.kind {
                ParamKind::Number | ParamKind::Integer => {
                    if let Some(min) = f.minimum {
                        assert_eq!(check(n, num(min)), Ok(()), "{n} = {min}");
                        let below = min - outside(min);
                        assert!(check(n, num(below)).is_err(), "{n} = {below}");
                    }
                    if let Some(min) = f.exclusive_minimum {
                        assert!(check(n, num(min)).is_err(), "{n} = {min}");
                        let above = min + outside(min) / 1000.0;
                        assert_eq!(check(n, num(above)), Ok(()), "{n} = {above}");
                    }
                    assert!(
                        f.minimum.is_some() != f.exclusive_minimum.is_some(),
                        "{n}: one lower bound"
                    );
                    match f.maximum {
                        Some(max) => {
                            assert_eq!(check(n, num(max)), Ok(()), "{n} = {max}");
                            let above = max + outside(max);
                            assert!(check(n, num(above)).is_err(), "{n} = {above}");
                        }
                        None => assert_eq!(check(n, num(1e9)), Ok(()), "{n}: no maximum"),
                    }
                    if f.kind == ParamKind::Integer {
                        assert!(check(n, json!(2.5)).is_err(), "{n}: whole numbers");
                    }
                    assert!(f.choices.is_empty(), "{n}");
                }
                ParamKind::Boolean => {
                    for b in [true, false] {
                        assert_eq!(check(n, json!(b)), Ok(()), "{n} = {b}");
                    }
                    assert!(check(n, json!(1)).is_err(), "{n}: a boolean");
                }
                ParamKind::Choice => {
                    assert!(f.choices.len() >= 2, "{n}");
                    for c in &f.choices {
                        assert_eq!(check(n, json!(c.value)), Ok(()), "{n} = {}", c.value);
                        assert!(!c.help.is_empty(), "{n} = {}", c.value);
                    }
                    assert!(check(n, json!("nope")).is_err(), "{n}: only its choices");
                }
            }
        }
    }

    /// A browser refuses a number input whose value is off the grid `min + k × step`, so every
    /// default must sit on it.
    #[test]
    fn defaults_sit_on_their_step_grid() {
        for f in param_fields() {
            let (Some(step), Some(ParamValue::Number(default))) = (f.step, &f.default) else {
                continue;
            };
            let base = f.minimum.or(f.exclusive_minimum).unwrap_or(0.0);
            let k = f64::from(default - base) / f64::from(step);
            assert!(
                (k - k.round()).abs() < 1e-3,
                "{}: {default} by {step}",
                f.name
            );
        }
    }

    #[test]
    fn the_answer_reads_as_a_form_needs_it() {
        let v = serde_json::to_value(param_fields()).expect("json");
        let sigma = v
            .as_array()
            .expect("list")
            .iter()
            .find(|f| f["name"] == "smooth_sigma")
            .expect("smooth_sigma");
        assert_eq!(
            (
                &sigma["type"],
                &sigma["default"],
                &sigma["minimum"],
                &sigma["maximum"]
            ),
            (&json!("number"), &Value::Null, &json!(0.0), &json!(100.0))
        );
        let feature = v
            .as_array()
            .expect("list")
            .iter()
            .find(|f| f["name"] == "feature")
            .expect("feature");
        assert_eq!(feature["default"], "auto");
        assert_eq!(feature["choices"][2]["value"], "texture");
    }
}
