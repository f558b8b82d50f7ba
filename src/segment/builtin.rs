//! The builtin segmenter: a classical pipeline for brightfield spheroids, pure Rust, no model.
//!
//! 1. normalise to the 0.5 / 99.5 percentiles (of a sample of some 2¹⁸ pixels);
//! 2. flatten uneven illumination (a quadratic background fitted at reduced scale, objects left out);
//! 3. smooth (almost-Gaussian, sigma = long side / 1024, at least 1 px) unless `smooth_sigma` says;
//! 4. feature: intensity, or local standard deviation (texture). `auto` takes intensity when Otsu's
//!    split of it explains at least half of its variance (the two classes are well apart), and
//!    texture otherwise (a spheroid as bright as its background but rougher);
//! 5. Otsu threshold (of a sample as in 1); polarity from the border: objects are on the other
//!    side of the threshold from most of the image border;
//! 6. morphology: open then close with a disc of radius long side / 1024 (at least 1 px);
//! 7. holes smaller than `fill_holes_below` of their object are filled, larger ones kept;
//! 8. objects, one 8-connected component at a time (`objects.rs`): debris dropped by size, an
//!    opening scaled to the object (fingers and bridges go), declumping, each part's own holes
//!    filled again and its own edge found, shape ranges and the border rule;
//! 9. outer boundary and hole boundaries traced along pixel edges, each boundary point placed at the
//!    sub-pixel threshold crossing of the smoothed feature between the inside and outside pixel
//!    (the outline follows the image, not the pixel staircase); objects inside holes are kept as
//!    objects of their own;
//! 10. Douglas-Peucker with `simplify_epsilon`.
//!
//! An image of 2,048 pixels or more on its long side is binned first (`scale.rs`).
//!
//! A cancel flag is checked between stages and progress is reported after each.

mod binary;
mod bits;
mod contour;
mod declump;
mod distance;
mod filter;
mod map;
mod objects;
mod scale;
mod smooth;

pub(crate) use map::{Map, objects_from_map, resize};
pub(crate) use objects::min_area_px;
pub use objects::{Dropped, SplitDecision};

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::params::{Feature, Polarity, SegmentParams};
use super::result::ObjectFlags;
use crate::morphology::Gray;
use crate::outline::Object;
use filter::Plane;

/// The image mapped to [0, 1] between its 0.5 and 99.5 percentiles, as the pipeline sees it (the
/// status page's previews use it too).
pub fn stretch(image: &Gray) -> Vec<f32> {
    filter::normalize(&image.data, 0.5, 99.5)
}

/// The shortest side, in pixels, the pipeline works on.
pub const MIN_SIDE: u32 = 8;

/// Why segmentation stopped.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SegmentError {
    /// The cancel flag was raised.
    #[error("cancelled")]
    Cancelled,
    /// The image is too small to segment.
    #[error("image is {width}×{height}; at least 8×8 pixels are needed")]
    TooSmall { width: u32, height: u32 },
}

/// The decisions the pipeline took, for the result record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Decisions {
    /// The image was binned by this factor first (each `bin × bin` block averaged; 1: every
    /// pixel, see `Resolution`). The lengths here are in the image's pixels all the same.
    #[serde(default = "every_pixel")]
    pub bin: u32,
    pub feature: Feature,
    pub polarity: Polarity,
    /// The threshold on the normalised feature, in [0, 1].
    pub threshold: f32,
    /// Between-class over total variance of the intensity split, the `auto` feature's criterion.
    pub separability: f64,
    pub sigma: f32,
    pub morph_radius: u32,
    pub holes_filled: u32,
    /// Every split the declumping considered: kept (two objects) or refused (one lobed object).
    pub splits: Vec<SplitDecision>,
    /// Candidates each rule dropped.
    pub dropped: Dropped,
}

fn every_pixel() -> u32 {
    1
}

/// What the builtin segmenter found.
#[derive(Clone, Debug, PartialEq)]
pub struct Segmentation {
    pub objects: Vec<Object>,
    /// One per object.
    pub flags: Vec<ObjectFlags>,
    pub decisions: Decisions,
    /// Milliseconds per stage.
    pub timings: Vec<(&'static str, f64)>,
}

/// Runs the pipeline on `image`. `progress` receives 0..=100; `cancel` is checked between stages.
pub fn segment(
    image: &Gray,
    params: &SegmentParams,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u8),
) -> Result<Segmentation, SegmentError> {
    let (w, h) = (image.width as usize, image.height as usize);
    if w < MIN_SIDE as usize || h < MIN_SIDE as usize {
        return Err(SegmentError::TooSmall {
            width: image.width,
            height: image.height,
        });
    }
    // Every stage allocates a plane: keep freed ones for the next (`heap.rs`).
    crate::heap::keep_freed_memory();
    let n = scale::factor(w, h, params.resolution).min(w.min(h) / MIN_SIDE as usize);
    if n <= 1 {
        return run(image, params, Vec::new(), cancel, progress);
    }
    let start = Instant::now();
    let binned = scale::bin(image, n);
    let timings = vec![("bin", start.elapsed().as_secs_f64() * 1e3)];
    let mut seg = run(
        &binned,
        &scale::binned_params(params, n),
        timings,
        cancel,
        progress,
    )?;
    scale::scale_back(&mut seg, n, w, h);
    Ok(seg)
}

/// The pipeline on every pixel of `image`, after the stages `timings` already holds.
fn run(
    image: &Gray,
    params: &SegmentParams,
    mut timings: Vec<(&'static str, f64)>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u8),
) -> Result<Segmentation, SegmentError> {
    let (w, h) = (image.width as usize, image.height as usize);
    let long = w.max(h) as f32;
    let mut clock = Instant::now();
    let mut stage =
        |name: &'static str, pct: u8, progress: &mut dyn FnMut(u8)| -> Result<(), SegmentError> {
            timings.push((name, clock.elapsed().as_secs_f64() * 1e3));
            clock = Instant::now();
            progress(pct);
            if cancel.load(Ordering::Relaxed) {
                Err(SegmentError::Cancelled)
            } else {
                Ok(())
            }
        };

    let mut plane = Plane::new(w, h, filter::normalize(&image.data, 0.5, 99.5));
    stage("normalise", 10, progress)?;
    if params.flatten_illumination {
        filter::flatten(&mut plane);
    }
    stage("flatten", 20, progress)?;
    let sigma = params.smooth_sigma.unwrap_or((long / 1024.0).max(1.0));
    let (lo, hi) = smooth::gaussian(&mut plane, sigma);
    stage("smooth", 35, progress)?;

    let hist = filter::histogram(&filter::sample(&plane.data), lo, hi, 256);
    let t_int = filter::otsu(&hist);
    let separability = filter::separability(&hist, t_int);
    let feature = match params.feature {
        Feature::Auto if separability >= 0.5 => Feature::Intensity,
        Feature::Auto => Feature::Texture,
        f => f,
    };
    let (plane, lo, hi, t) = if feature == Feature::Texture {
        let r = ((2.0 * sigma).round() as usize).max(2);
        let tex = filter::local_std(&plane, r);
        let (lo, hi) = filter::min_max(&tex.data);
        let t = filter::otsu(&filter::histogram(&filter::sample(&tex.data), lo, hi, 256));
        (tex, lo, hi, t)
    } else {
        (plane, lo, hi, t_int)
    };
    let threshold = lo + (hi - lo) * (t as f32 + 0.5) / 255.0;
    stage("threshold", 45, progress)?;

    let polarity = match params.polarity {
        Polarity::Auto => {
            // Border pixels above the threshold mean a bright background: objects are dark.
            let band = (w.min(h) / 50).max(1);
            let (mut above, mut total) = (0u64, 0u64);
            for y in 0..h {
                let row = &plane.data[y * w..(y + 1) * w];
                let edge_row = y < band || y >= h - band;
                let ends = if edge_row || 2 * band >= w {
                    [row, &[][..]]
                } else {
                    [&row[..band], &row[w - band..]]
                };
                for &v in ends.into_iter().flatten() {
                    above += u64::from(v > threshold);
                    total += 1;
                }
            }
            if feature == Feature::Texture || 2 * above < total {
                Polarity::Bright
            } else {
                Polarity::Dark
            }
        }
        p => p,
    };
    let mask: Vec<u8> = match polarity {
        Polarity::Dark => plane
            .data
            .iter()
            .map(|&v| u8::from(v <= threshold))
            .collect(),
        _ => plane
            .data
            .iter()
            .map(|&v| u8::from(v > threshold))
            .collect(),
    };
    let morph_radius = (long / 1024.0).round().max(1.0) as usize;
    let mut mask = binary::open_close(&mask, w, h, morph_radius);
    stage("morphology", 60, progress)?;

    // Holes are filled again per object after declumping (`objects.rs`), from the mask as
    // thresholded: a gap that two touching spheroids and a finger enclose together is no
    // object's hole.
    let raw = mask.clone();
    let holes_filled = binary::fill_small_holes(&mut mask, w, h, params.fill_holes_below);
    stage("fill holes", 70, progress)?;

    let found = objects::find(
        &objects::Image {
            mask: &mask,
            raw: &raw,
            feature: &plane,
            threshold,
            range: hi - lo,
            dark: polarity == Polarity::Dark,
        },
        params,
    );
    stage("contours", 95, progress)?;

    Ok(Segmentation {
        objects: found.objects,
        flags: found.flags,
        decisions: Decisions {
            bin: 1,
            feature,
            polarity,
            threshold: if hi > lo {
                (threshold - lo) / (hi - lo)
            } else {
                0.5
            },
            separability,
            sigma,
            morph_radius: morph_radius as u32,
            holes_filled,
            splits: found.splits,
            dropped: found.dropped,
        },
        timings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::morphology::{measure, ring_area};

    fn synthetic(w: u32, h: u32, f: impl Fn(f64, f64) -> f32) -> Gray {
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x as f64 + 0.5, y as f64 + 0.5))
            .collect();
        Gray::new(w, h, data)
    }

    fn run(img: &Gray, params: &SegmentParams) -> Segmentation {
        segment(img, params, &AtomicBool::new(false), &mut |_| {}).expect("segments")
    }

    #[test]
    fn a_dark_disc_on_a_bright_field_is_found_with_its_area() {
        let img = synthetic(200, 160, |x, y| {
            if (x - 90.0).hypot(y - 80.0) < 40.0 {
                60.0
            } else {
                200.0
            }
        });
        let s = run(&img, &SegmentParams::default());
        assert_eq!(s.objects.len(), 1);
        assert_eq!(s.decisions.polarity, Polarity::Dark);
        assert_eq!(s.decisions.feature, Feature::Intensity);
        let m = measure(&s.objects[0], None, None);
        let truth = std::f64::consts::PI * 40.0 * 40.0;
        // Douglas-Peucker's chords lie inside a convex outline: up to 2/3 · epsilon · P.
        assert!(
            (m.area - truth).abs() / truth < 0.04,
            "area {} vs {truth}",
            m.area
        );
        let exact = SegmentParams {
            simplify_epsilon: 0.0,
            ..SegmentParams::default()
        };
        let e = measure(&run(&img, &exact).objects[0], None, None);
        assert!(
            (e.area - truth).abs() / truth < 0.01,
            "area {} vs {truth}",
            e.area
        );
        let perimeter = 2.0 * std::f64::consts::PI * 40.0;
        assert!(
            (e.perimeter - perimeter).abs() / perimeter < 0.02,
            "perimeter {}",
            e.perimeter
        );
        assert!((m.centroid.x - 90.0).abs() < 0.5 && (m.centroid.y - 80.0).abs() < 0.5);
    }

    #[test]
    fn a_large_hole_is_kept_a_small_one_filled_and_an_island_is_its_own_object() {
        // Ring 20..60 around (100, 100); a hole of radius 20 holding an island of radius 8; and a
        // 6×6 speck of background inside the ring (under 2 % of it): filled.
        let img = synthetic(200, 200, |x, y| {
            let r = (x - 100.0).hypot(y - 100.0);
            let speck = (x - 140.0).abs() < 3.0 && (y - 100.0).abs() < 3.0;
            if ((20.0..60.0).contains(&r) && !speck) || r < 8.0 {
                30.0
            } else {
                220.0
            }
        });
        let params = SegmentParams {
            smooth_sigma: Some(0.0),
            flatten_illumination: false,
            ..SegmentParams::default()
        };
        let s = run(&img, &params);
        assert_eq!(s.objects.len(), 2, "the ring and the island");
        let ring = s
            .objects
            .iter()
            .find(|o| !o.holes.is_empty())
            .expect("ring with hole");
        assert_eq!(ring.holes.len(), 1, "the speck was filled");
        assert!(s.decisions.holes_filled >= 1);
        let island = s
            .objects
            .iter()
            .find(|o| o.holes.is_empty())
            .expect("island");
        let a = ring_area(&island.outer);
        assert!(
            (a - std::f64::consts::PI * 64.0).abs() < 30.0,
            "island area {a}"
        );
    }

    #[test]
    fn border_objects_and_small_objects_follow_the_parameters() {
        let img = synthetic(200, 100, |x, y| {
            let big = (x - 60.0).hypot(y - 50.0) < 30.0;
            let edge = (x - 195.0).hypot(y - 50.0) < 20.0;
            let dust = (x - 130.0).hypot(y - 20.0) < 2.0;
            if big || edge || dust { 40.0 } else { 200.0 }
        });
        let base = SegmentParams {
            smooth_sigma: Some(0.0),
            flatten_illumination: false,
            min_area_fraction: 0.0,
            ..SegmentParams::default()
        };
        assert_eq!(run(&img, &base).objects.len(), 3);
        let no_dust = SegmentParams {
            min_area_fraction: 0.001,
            ..base.clone()
        };
        assert_eq!(run(&img, &no_dust).objects.len(), 2);
        let inner = SegmentParams {
            drop_border_objects: true,
            ..no_dust.clone()
        };
        assert_eq!(run(&img, &inner).objects.len(), 1);
        let largest = SegmentParams {
            keep_largest: Some(1),
            ..base
        };
        let s = run(&img, &largest);
        assert_eq!(s.objects.len(), 1);
        assert!(ring_area(&s.objects[0].outer) > 2000.0);
    }

    /// A spheroid as bright as the field on average but rough inside: intensity cannot separate
    /// it, so `auto` takes the texture feature and finds it.
    #[test]
    fn auto_takes_texture_when_intensity_does_not_separate() {
        let mut rng = crate::synth::Rng::new(5);
        let img = synthetic(160, 160, |x, y| {
            let inside = (x - 80.0).hypot(y - 80.0) < 40.0;
            let noise = rng_free(x, y);
            if inside { 128.0 + 60.0 * noise } else { 128.0 }
        });
        // Field noise, so the intensity histogram is one broad mode.
        let data = img
            .data
            .iter()
            .map(|v| v + 3.0 * rng.normal() as f32)
            .collect();
        let img = Gray::new(160, 160, data);
        let s = run(&img, &SegmentParams::default());
        assert_eq!(s.decisions.feature, Feature::Texture, "{:?}", s.decisions);
        assert_eq!(s.objects.len(), 1);
        let a = ring_area(&s.objects[0].outer);
        let truth = std::f64::consts::PI * 1600.0;
        assert!((a - truth).abs() / truth < 0.1, "area {a} vs {truth}");
    }

    /// A deterministic ±1 pattern with no mean: a checkerboard with jitter.
    fn rng_free(x: f64, y: f64) -> f32 {
        let (i, j) = (x as i64, y as i64);
        let h = (i.wrapping_mul(73_856_093) ^ j.wrapping_mul(19_349_663)) & 0xff;
        if (i + j) % 2 == 0 {
            0.5 + h as f32 / 510.0
        } else {
            -0.5 - h as f32 / 510.0
        }
    }

    #[test]
    fn cancel_stops_between_stages_and_progress_rises() {
        let img = synthetic(64, 64, |x, _| if x < 32.0 { 0.0 } else { 1.0 });
        let cancel = AtomicBool::new(true);
        let r = segment(&img, &SegmentParams::default(), &cancel, &mut |_| {});
        assert_eq!(r, Err(SegmentError::Cancelled));
        let mut seen = Vec::new();
        let _ = segment(
            &img,
            &SegmentParams::default(),
            &AtomicBool::new(false),
            &mut |p| seen.push(p),
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(
            segment(
                &synthetic(4, 4, |_, _| 0.0),
                &SegmentParams::default(),
                &cancel,
                &mut |_| {}
            )
            .is_err()
        );
    }

    #[test]
    fn a_flat_image_gives_no_objects_not_a_panic() {
        let s = run(&synthetic(64, 48, |_, _| 100.0), &SegmentParams::default());
        assert!(s.objects.len() <= 1);
    }
}
