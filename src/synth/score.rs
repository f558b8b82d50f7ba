//! How well a segmentation matches a truth label image: each truth spheroid against the objects
//! that overlap it.
//!
//! Objects are rasterised by the rule of `morphology::rasterize` (a pixel is in when its centre
//! is, holes cut out), one object at a time, so objects that overlap each other are each counted
//! in full. An object belongs to the truth spheroid that holds at least half of its pixels; an
//! object that belongs to none is extra (debris, halo, background). A truth spheroid is matched
//! when exactly one object belongs to it; its IoU is the best of any object, so a spheroid merged
//! into a larger object, or one found only as part of a halo, still shows how much was found.
//! The area error of a matched spheroid compares the object's polygon area (what the metrics
//! report) with the truth's pixel count.

use crate::morphology::{measure, spans};
use crate::outline::Object;

/// One truth spheroid and what was found of it.
#[derive(Clone, Debug, PartialEq)]
pub struct TruthMatch {
    /// Its label in the truth image (1..=n).
    pub label: u32,
    /// Its truth area in pixels.
    pub area: u64,
    /// The objects that belong to it (most of their pixels are its), by index.
    pub objects: Vec<usize>,
    /// The best intersection over union with any object (0 when none overlaps it).
    pub iou: f64,
    /// |object area − truth area| / truth area, when exactly one object belongs to it.
    pub area_error: Option<f64>,
}

/// A segmentation scored against truth labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// One per truth spheroid, in label order.
    pub truth: Vec<TruthMatch>,
    /// How many objects the segmentation found.
    pub found: usize,
    /// The objects that belong to no truth spheroid, by index.
    pub extra: Vec<usize>,
}

impl Score {
    /// Scores `objects` against `labels` (`width` × `height`, 0 background, 1..=`n` spheroids).
    pub fn new(labels: &[u32], n: usize, objects: &[Object], width: u32, height: u32) -> Score {
        debug_assert_eq!(labels.len(), width as usize * height as usize);
        let mut truth_area = vec![0u64; n + 1];
        for &l in labels {
            truth_area[(l as usize).min(n)] += 1;
        }
        // inter[o][t]: pixels of object o labelled t (t = 0 is background).
        let mut inter = vec![vec![0u64; n + 1]; objects.len()];
        let mut object_area = vec![0u64; objects.len()];
        for (o, object) in objects.iter().enumerate() {
            for (y, a, b) in spans(object, width, height) {
                let row = y as usize * width as usize;
                for &l in &labels[row + a as usize..row + b as usize] {
                    inter[o][(l as usize).min(n)] += 1;
                }
                object_area[o] += u64::from(b - a);
            }
        }
        let owner: Vec<Option<usize>> = (0..objects.len())
            .map(|o| {
                (1..=n)
                    .max_by_key(|&t| inter[o][t])
                    .filter(|&t| object_area[o] > 0 && 2 * inter[o][t] >= object_area[o])
            })
            .collect();
        let truth = (1..=n)
            .map(|t| {
                let belong: Vec<usize> = (0..objects.len())
                    .filter(|&o| owner[o] == Some(t))
                    .collect();
                let iou = (0..objects.len())
                    .map(|o| {
                        let union = truth_area[t] + object_area[o] - inter[o][t];
                        if union == 0 {
                            0.0
                        } else {
                            inter[o][t] as f64 / union as f64
                        }
                    })
                    .fold(0.0, f64::max);
                let area_error = match belong.as_slice() {
                    [o] if truth_area[t] > 0 => {
                        let area = measure(&objects[*o], None, None).area;
                        let truth = truth_area[t] as f64;
                        Some((area - truth).abs() / truth)
                    }
                    _ => None,
                };
                TruthMatch {
                    label: t as u32,
                    area: truth_area[t],
                    objects: belong,
                    iou,
                    area_error,
                }
            })
            .collect();
        Score {
            truth,
            found: objects.len(),
            extra: (0..objects.len()).filter(|&o| owner[o].is_none()).collect(),
        }
    }

    /// Whether every truth spheroid is matched by exactly one object.
    pub fn each_matched_once(&self) -> bool {
        self.truth.iter().all(|t| t.objects.len() == 1)
    }

    /// The worst IoU over the truth spheroids (1 when there are none).
    pub fn min_iou(&self) -> f64 {
        self.truth.iter().map(|t| t.iou).fold(1.0, f64::min)
    }

    /// The mean IoU over the truth spheroids (1 when there are none).
    pub fn mean_iou(&self) -> f64 {
        if self.truth.is_empty() {
            1.0
        } else {
            self.truth.iter().map(|t| t.iou).sum::<f64>() / self.truth.len() as f64
        }
    }

    /// The worst area error over matched spheroids; `None` when some spheroid is not matched.
    pub fn max_area_error(&self) -> Option<f64> {
        self.truth
            .iter()
            .map(|t| t.area_error)
            .try_fold(0.0, |acc: f64, e| e.map(|e| acc.max(e)))
    }

    /// Objects found over truth spheroids: 1 when the count is right, below when spheroids were
    /// merged or missed, above when they were split or debris kept.
    pub fn split_accuracy(&self) -> f64 {
        if self.truth.is_empty() {
            if self.found == 0 { 1.0 } else { f64::INFINITY }
        } else {
            self.found as f64 / self.truth.len() as f64
        }
    }

    /// Whether the segmentation meets the targets: every spheroid matched once with IoU at least
    /// `min_iou` and area error at most `max_area_error`, and no extra object.
    pub fn meets(&self, min_iou: f64, max_area_error: f64) -> bool {
        self.each_matched_once()
            && self.extra.is_empty()
            && self.min_iou() >= min_iou
            && self.max_area_error().is_some_and(|e| e <= max_area_error)
    }
}

/// One line: found/truth, extra objects, then per spheroid its object count, IoU and area error.
impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "found {}/{}, extra {}:",
            self.found,
            self.truth.len(),
            self.extra.len()
        )?;
        for t in &self.truth {
            write!(
                f,
                " [#{} objects {} IoU {:.4}",
                t.label,
                t.objects.len(),
                t.iou
            )?;
            match t.area_error {
                Some(e) => write!(f, " area err {:.2}%]", 100.0 * e)?,
                None => write!(f, "]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outline::Point;

    fn square(x: f64, y: f64, side: f64) -> Object {
        Object {
            outer: vec![
                Point::new(x, y),
                Point::new(x + side, y),
                Point::new(x + side, y + side),
                Point::new(x, y + side),
            ],
            holes: vec![],
        }
    }

    /// Two 10×10 truth squares side by side at x 0..10 and 10..20, rows 0..10, in a 30×10 image.
    fn two_squares() -> Vec<u32> {
        (0..300)
            .map(|k| match k % 30 {
                0..10 => 1,
                10..20 => 2,
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn exact_objects_score_perfectly() {
        let labels = two_squares();
        let s = Score::new(
            &labels,
            2,
            &[square(0.0, 0.0, 10.0), square(10.0, 0.0, 10.0)],
            30,
            10,
        );
        assert!(s.meets(1.0, 0.0), "{s}");
        assert_eq!(s.split_accuracy(), 1.0);
        assert_eq!(s.max_area_error(), Some(0.0));
    }

    #[test]
    fn a_merged_object_matches_one_spheroid_and_misses_the_other() {
        let labels = two_squares();
        let merged = Object {
            outer: vec![
                Point::new(0.0, 0.0),
                Point::new(20.0, 0.0),
                Point::new(20.0, 10.0),
                Point::new(0.0, 10.0),
            ],
            holes: vec![],
        };
        let s = Score::new(&labels, 2, &[merged], 30, 10);
        assert!(!s.each_matched_once());
        assert_eq!(s.split_accuracy(), 0.5);
        assert_eq!(s.truth[0].iou, 0.5);
        assert_eq!(s.max_area_error(), None);
        assert!(s.extra.is_empty(), "{s}");
    }

    #[test]
    fn debris_is_extra_and_a_split_spheroid_has_two_objects() {
        let labels = two_squares();
        let halves = [
            square(0.0, 0.0, 5.0),
            Object {
                outer: vec![
                    Point::new(0.0, 5.0),
                    Point::new(10.0, 5.0),
                    Point::new(10.0, 10.0),
                    Point::new(0.0, 10.0),
                ],
                holes: vec![],
            },
            square(10.0, 0.0, 10.0),
            square(24.0, 2.0, 3.0),
        ];
        let s = Score::new(&labels, 2, &halves, 30, 10);
        assert_eq!(s.truth[0].objects, vec![0, 1]);
        assert_eq!(s.truth[1].objects, vec![2]);
        assert_eq!(s.extra, vec![3]);
        assert_eq!(s.found, 4);
        assert!(!s.meets(0.0, 1.0));
        assert_eq!(s.truth[1].area_error, Some(0.0));
    }

    #[test]
    fn area_error_is_the_polygon_area_against_the_truth_pixels() {
        let labels = two_squares();
        let s = Score::new(
            &labels,
            2,
            &[square(0.0, 0.0, 10.0), square(10.0, 0.0, 11.0)],
            30,
            10,
        );
        let e = s.truth[1].area_error.expect("matched");
        assert!((e - 0.21).abs() < 1e-9, "{e}");
    }
}
