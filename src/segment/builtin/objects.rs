//! From the thresholded mask to objects, one connected component at a time, in its own crop:
//!
//! 1. components smaller than the minimum area (µm² when the pixel size is known, else a
//!    fraction of the image) are debris and dropped;
//! 2. the component is opened with a disc of `opening_fraction` of its equivalent radius: fingers
//!    of loose halo cells and thin bridges between spheroids go, the compact body stays (bit-packed
//!    morphology makes even large discs cheap); pieces left too small are dropped;
//! 3. each piece is declumped (`declump.rs`);
//! 4. each part is taken as thresholded with its own holes filled again (a gap it encloses only
//!    together with a neighbour is no hole of its own), opened once more if it was split off a
//!    clump (what filled the crevice between the two goes), grown to its own edge where the
//!    global threshold cut into a lighter edge, and its notches closed (a split part sheds again
//!    what those two added where loose cells touch it, except at the neck); then traced with its
//!    holes, every boundary point placed at the sub-pixel threshold crossing of the feature where
//!    the outline follows the image, and on the pixel edge where it was cut (by the opening or a
//!    split);
//! 5. shape ranges, the border rule and `keep_largest` select; flags say what a person may want
//!    to know.

mod contrast;

use serde::{Deserialize, Serialize};

use super::binary::{
    Components, close as close_disc, components, fill_small_holes, open as open_disc,
};
use super::contour;
use super::declump::{Parts, Tone, declump};
use super::filter::Plane;
use crate::morphology::measure;
use crate::outline::{Object, Point};
use crate::segment::params::{Declump, SegmentParams};
use crate::segment::result::ObjectFlags;
use contrast::{LOW_CONTRAST, background_of, contrast};

/// A part split off a clump is opened with a disc of this fraction of its equivalent radius.
const SPLIT_PART_OPENING: f64 = 0.35;

/// A split the declumping considered, in image pixels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitDecision {
    /// The middle of the neck.
    pub at: [f64; 2],
    pub neck_px: f64,
    /// The two parts' diameters (twice their deepest inner distance).
    pub diameters_px: [f64; 2],
    /// `true`: two objects; `false`: the neck was wide, one lobed object.
    pub kept: bool,
}

/// How many candidates each rule dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dropped {
    /// Under the minimum area: debris, loose cells, fingers cut off by the opening.
    pub small: u32,
    /// Touching the border, with `drop_border_objects`.
    pub border: u32,
    /// Outside the circularity or solidity range.
    pub shape: u32,
    /// Beyond `keep_largest`.
    pub beyond_largest: u32,
}

/// What [`find`] found.
pub(crate) struct Found {
    pub(crate) objects: Vec<Object>,
    pub(crate) flags: Vec<ObjectFlags>,
    pub(crate) splits: Vec<SplitDecision>,
    pub(crate) dropped: Dropped,
}

/// What the tracing needs of the image.
pub(crate) struct Image<'a> {
    /// The thresholded mask with its small holes filled, before any object was opened or split.
    pub(crate) mask: &'a [u8],
    /// The thresholded mask as it was before the holes were filled: where the image's edges are.
    pub(crate) raw: &'a [u8],
    pub(crate) feature: &'a Plane,
    pub(crate) threshold: f32,
    /// The feature's range, for the contrast flag.
    pub(crate) range: f32,
    /// Objects are darker than the threshold (else brighter).
    pub(crate) dark: bool,
}

/// A rectangle of the image.
#[derive(Clone, Copy, Debug)]
struct Crop {
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
}

struct Candidate {
    object: Object,
    flags: ObjectFlags,
    area: u64,
    /// Topmost-leftmost pixel, for a stable order.
    first: (usize, usize),
}

/// The minimum area in pixels.
pub(crate) fn min_area_px(params: &SegmentParams, w: usize, h: usize) -> f64 {
    let by_fraction = f64::from(params.min_area_fraction) * (w * h) as f64;
    let by_um = params
        .pixel_size_um
        .filter(|_| params.min_area_um2 > 0.0)
        .map(|px| f64::from(params.min_area_um2) / (f64::from(px) * f64::from(px)));
    by_um.unwrap_or(by_fraction).max(1.0)
}

pub(crate) fn find(img: &Image<'_>, params: &SegmentParams) -> Found {
    let (w, h) = (img.feature.w, img.feature.h);
    let comps = components(img.mask, w, h, 1, true);
    let min_area = min_area_px(params, w, h);
    let mut dropped = Dropped::default();
    let mut splits = Vec::new();
    let mut candidates = Vec::new();
    let boxes = bounding_boxes(&comps);
    // The whole background's mean, for a part whose crop holds no background (computed once,
    // when first needed).
    let mut background_mean = None;
    for (i, c) in comps.components.iter().enumerate() {
        if (c.area as f64) < min_area {
            dropped.small += 1;
            continue;
        }
        let radius = (c.area as f64 / std::f64::consts::PI).sqrt();
        let r_open = (f64::from(params.opening_fraction) * radius).round() as usize;
        // Notches of the outline close with a disc twice as large: a textured body's edge
        // crosses the threshold back and forth.
        let r_close = 2 * r_open;
        // Room around the object for the closing's dilation.
        let margin = r_close + 1;
        let (bx0, by0, bx1, by1) = boxes[i];
        let crop = Crop {
            x0: bx0.saturating_sub(margin),
            y0: by0.saturating_sub(margin),
            w: (bx1 + margin).min(w) - bx0.saturating_sub(margin),
            h: (by1 + margin).min(h) - by0.saturating_sub(margin),
        };
        let mut m = vec![0u8; crop.w * crop.h];
        for (run, &l) in comps.runs.iter().zip(&comps.run_label) {
            if l as usize == i {
                let row = (run.y as usize - crop.y0) * crop.w;
                m[row + run.x0 as usize - crop.x0..row + run.x1 as usize - crop.x0].fill(1);
            }
        }
        if r_open >= 1 {
            m = open_disc(&m, crop.w, crop.h, r_open);
        }
        let pieces = components(&m, crop.w, crop.h, 1, true);
        let mut crop_background = None;
        for (p, piece) in pieces.components.iter().enumerate() {
            if (piece.area as f64) < min_area {
                dropped.small += 1;
                continue;
            }
            let pm = paint_one(&pieces, p, crop.w, crop.h);
            let parts = match params.declump {
                Declump::Auto => {
                    let feature = crop_of(&img.feature.data, w, crop);
                    let tone = Tone {
                        feature: &feature,
                        range: img.range,
                    };
                    declump(&pm, crop.w, crop.h, params.split_neck_ratio, &tone)
                }
                Declump::Off => Parts {
                    labels: pm.iter().map(|&v| u32::from(v)).collect(),
                    count: 1,
                    splits: Vec::new(),
                },
            };
            splits.extend(parts.splits.iter().map(|s| SplitDecision {
                at: [s.at.0 + crop.x0 as f64, s.at.1 + crop.y0 as f64],
                neck_px: s.neck,
                diameters_px: [s.diameters.0, s.diameters.1],
                kept: s.kept,
            }));
            let part_boxes = boxes_of(&parts.labels, crop.w, parts.count);
            // The same crop for every piece of the component: summed once.
            let crop_background = *crop_background.get_or_insert_with(|| background_of(img, crop));
            for k in 1..=parts.count {
                // The part's own box, with room for everything below to reach as far as it would
                // in the clump's crop (the growth by 2 bands, the closing beyond one band): the
                // same pixels come out, at the cost of the part's size only.
                let b = part_boxes[k as usize - 1];
                let box_radius = (((b.2 - b.0) * (b.3 - b.1)) as f64 / std::f64::consts::PI).sqrt();
                let band_max = ((0.04 * box_radius).round() as usize).max(2);
                let reach = if r_open >= 1 { r_close } else { 0 };
                let m = (2 * band_max).max(band_max + reach) + 1;
                let local = Crop {
                    x0: b.0.saturating_sub(m),
                    y0: b.1.saturating_sub(m),
                    w: (b.2 + m).min(crop.w) - b.0.saturating_sub(m),
                    h: (b.3 + m).min(crop.h) - b.1.saturating_sub(m),
                };
                let sub = Crop {
                    x0: crop.x0 + local.x0,
                    y0: crop.y0 + local.y0,
                    ..local
                };
                let labels = crop_of(&parts.labels, crop.w, local);
                let feature = crop_of(&img.feature.data, w, sub);
                let raw = crop_of(img.raw, w, sub);
                // The part as thresholded, with its own holes filled again: a gap that it
                // encloses only together with a neighbour or a finger cut off stays outside.
                let mut region: Vec<u8> = labels
                    .iter()
                    .zip(&raw)
                    .map(|(&l, &r)| u8::from(l == k && r != 0))
                    .collect();
                fill_small_holes(&mut region, sub.w, sub.h, params.fill_holes_below);
                let others: Vec<u8> = labels.iter().map(|&l| u8::from(l != 0 && l != k)).collect();
                let part_radius = (region.iter().filter(|&&v| v != 0).count() as f64
                    / std::f64::consts::PI)
                    .sqrt();
                // A part that met a neighbour is one compact spheroid: what filled the crevice
                // between the two (the bases of fingers, loose cells) is left hanging on it, and
                // goes.
                let compact = (SPLIT_PART_OPENING * part_radius).round() as usize;
                let body = (parts.count > 1 && compact >= 1).then(|| {
                    region = open_disc(&region, sub.w, sub.h, compact);
                    region.clone()
                });
                let threshold = grow_to_own_edge(
                    img,
                    &feature,
                    &mut region,
                    &others,
                    sub,
                    ((0.04 * part_radius).round() as usize).max(2),
                );
                if r_open >= 1 {
                    // Notches of the outline close too, without reaching into a neighbour.
                    region = close_disc(&region, sub.w, sub.h, r_close);
                    for (r, &o) in region.iter_mut().zip(&others) {
                        if o != 0 {
                            *r = 0;
                        }
                    }
                }
                // Only a part that grew has anything to shed: the closing alone adds no more than
                // notches to a body that the opening has made smooth.
                if let Some(body) = body.as_ref().filter(|_| threshold != img.threshold) {
                    shed_what_grew_on(&mut region, body, &others, sub, compact, r_close);
                }
                let eps = f64::from(params.simplify_epsilon);
                if let Some(mut cand) = trace_region(img, &region, sub, min_area, eps, threshold) {
                    cand.flags.split = parts.count > 1;
                    cand.flags.low_contrast =
                        contrast(img, &region, sub, crop_background, &mut background_mean)
                            < LOW_CONTRAST * img.range;
                    candidates.push(cand);
                } else {
                    dropped.small += 1;
                }
            }
        }
    }
    let shape_limited = params.min_circularity > 0.0
        || params.max_circularity < 1.0
        || params.min_solidity > 0.0
        || params.max_solidity < 1.0;
    candidates.retain(|c| {
        if params.drop_border_objects && c.flags.touches_border {
            dropped.border += 1;
            return false;
        }
        if shape_limited {
            let m = measure(&c.object, None, None);
            let (circ, sol) = (m.circularity as f32, m.solidity as f32);
            if !(params.min_circularity..=params.max_circularity).contains(&circ)
                || !(params.min_solidity..=params.max_solidity).contains(&sol)
            {
                dropped.shape += 1;
                return false;
            }
        }
        true
    });
    if let Some(n) = params.keep_largest {
        candidates.sort_by_key(|c| std::cmp::Reverse(c.area));
        let n = n as usize;
        if candidates.len() > n {
            dropped.beyond_largest += (candidates.len() - n) as u32;
            candidates.truncate(n);
        }
    }
    candidates.sort_by_key(|c| (c.first.1, c.first.0));
    Found {
        flags: candidates.iter().map(|c| c.flags).collect(),
        objects: candidates.into_iter().map(|c| c.object).collect(),
        splits,
        dropped,
    }
}

/// Each component's bounding box `[x0, x1) × [y0, y1)`.
fn bounding_boxes(c: &Components) -> Vec<(usize, usize, usize, usize)> {
    let mut boxes = vec![(usize::MAX, usize::MAX, 0, 0); c.components.len()];
    for (run, &l) in c.runs.iter().zip(&c.run_label) {
        let b = &mut boxes[l as usize];
        b.0 = b.0.min(run.x0 as usize);
        b.1 = b.1.min(run.y as usize);
        b.2 = b.2.max(run.x1 as usize);
        b.3 = b.3.max(run.y as usize + 1);
    }
    boxes
}

/// The bounding box `[x0, x1) × [y0, y1)` of each label `1..=count` of a `w`-wide label image.
fn boxes_of(labels: &[u32], w: usize, count: u32) -> Vec<(usize, usize, usize, usize)> {
    let mut boxes = vec![(usize::MAX, usize::MAX, 0, 0); count as usize];
    for (y, row) in labels.chunks_exact(w).enumerate() {
        for (x, &l) in row.iter().enumerate() {
            if l != 0 {
                let b = &mut boxes[l as usize - 1];
                *b = (b.0.min(x), b.1.min(y), b.2.max(x + 1), b.3.max(y + 1));
            }
        }
    }
    boxes
}

/// The crop's part of a plane (`w` wide; the crop in its coordinates).
fn crop_of<T: Copy>(data: &[T], w: usize, crop: Crop) -> Vec<T> {
    let mut out = Vec::with_capacity(crop.w * crop.h);
    for y in crop.y0..crop.y0 + crop.h {
        out.extend_from_slice(&data[y * w + crop.x0..y * w + crop.x0 + crop.w]);
    }
    out
}

/// Component `i` of `c` as a mask.
fn paint_one(c: &Components, i: usize, w: usize, h: usize) -> Vec<u8> {
    let mut m = vec![0u8; w * h];
    for (run, &l) in c.runs.iter().zip(&c.run_label) {
        if l as usize == i {
            let row = run.y as usize * w;
            m[row + run.x0 as usize..row + run.x1 as usize].fill(1);
        }
    }
    m
}

/// Where the global threshold cut into a lighter (or, for bright objects, darker) edge of this
/// part, the part grows to its own edge: the threshold halfway between the part's tissue and the
/// background around it, applied within `band` pixels outside it, if it reaches further than the
/// global one. Tissue and background are sampled one band away from the outline (the ring from
/// `band` to `2 band` inside, and the same outside), past the blur of a defocused edge. Pixels
/// that the thresholded mask holds but the part does not (fingers and bridges cut off, the
/// crevice by a neighbour) are not grown into. Returns the threshold the part's outline follows.
fn grow_to_own_edge(
    img: &Image<'_>,
    feature: &[f32],
    region: &mut [u8],
    others: &[u8],
    crop: Crop,
    band: usize,
) -> f32 {
    let (cw, ch) = (crop.w, crop.h);
    let bits = super::bits::Bits::from_mask(region, cw, ch);
    let inside_near = bits.erode(band).to_mask();
    let inside_far = bits.erode(2 * band).to_mask();
    let outside_near = bits.dilate(band).to_mask();
    let outside_far = bits.dilate(2 * band).to_mask();
    let mask = crop_of(img.mask, img.feature.w, crop);
    let in_mask = |i: usize| mask[i] != 0;
    let (mut sin, mut nin, mut sout, mut nout) = (0f64, 0u64, 0f64, 0u64);
    for i in 0..cw * ch {
        if inside_near[i] != 0 && inside_far[i] == 0 {
            sin += f64::from(feature[i]);
            nin += 1;
        } else if outside_near[i] == 0 && outside_far[i] != 0 && others[i] == 0 && !in_mask(i) {
            sout += f64::from(feature[i]);
            nout += 1;
        }
    }
    if nin == 0 || nout == 0 {
        return img.threshold;
    }
    let own = ((sin / nin as f64 + sout / nout as f64) / 2.0) as f32;
    let reaches_further = if img.dark {
        own > img.threshold
    } else {
        own < img.threshold
    };
    if !reaches_further {
        return img.threshold;
    }
    for (i, r) in region.iter_mut().enumerate() {
        let passes = if img.dark {
            feature[i] <= own
        } else {
            feature[i] >= own
        };
        if *r == 0 && outside_near[i] != 0 && others[i] == 0 && !in_mask(i) && passes {
            *r = 1;
        }
    }
    own
}

/// What the growth to a split part's own edge and the closing of its notches added where
/// loose cells touch it (a lighter threshold reaches into the bases of fingers, and the closing
/// fills between them and the body) goes again: of those additions, only what an opening with a
/// disc of radius `compact` keeps stays, except within `neck` pixels of a neighbour, where the
/// closing fills the corners of the neck. `body` is the part before either.
fn shed_what_grew_on(
    region: &mut [u8],
    body: &[u8],
    others: &[u8],
    crop: Crop,
    compact: usize,
    neck: usize,
) {
    let opened = open_disc(region, crop.w, crop.h, compact);
    let beside = super::bits::Bits::from_mask(others, crop.w, crop.h)
        .dilate(neck)
        .to_mask();
    for (i, r) in region.iter_mut().enumerate() {
        *r = u8::from(body[i] != 0 || (*r != 0 && (opened[i] != 0 || beside[i] != 0)));
    }
}

/// Whether the crop-sized `mask` is set at `(x, y)`; outside the crop it is not.
fn set_at(mask: &[u8], crop: Crop, x: i64, y: i64) -> bool {
    x >= 0
        && y >= 0
        && (x as usize) < crop.w
        && (y as usize) < crop.h
        && mask[y as usize * crop.w + x as usize] != 0
}

/// Traces one part (its largest connected piece) with its holes, or `None` if that piece is
/// smaller than `min_area`.
fn trace_region(
    img: &Image<'_>,
    region: &[u8],
    crop: Crop,
    min_area: f64,
    eps: f64,
    threshold: f32,
) -> Option<Candidate> {
    let (w, h) = (img.feature.w, img.feature.h);
    let pieces = components(region, crop.w, crop.h, 1, true);
    let (largest, piece) = pieces
        .components
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| c.area)?;
    if (piece.area as f64) < min_area {
        return None;
    }
    let own = paint_one(&pieces, largest, crop.w, crop.h);
    let inside = |x: i64, y: i64| set_at(&own, crop, x, y);
    // Where the neighbour across the boundary is background of the thresholded mask, the
    // boundary is the image's edge: at the threshold crossing. Elsewhere it was cut.
    let global = |(x, y): (i64, i64)| -> Option<usize> {
        let (gx, gy) = (x + crop.x0 as i64, y + crop.y0 as i64);
        (gx >= 0 && gy >= 0 && (gx as usize) < w && (gy as usize) < h)
            .then(|| gy as usize * w + gx as usize)
    };
    let crossing = |background_side: (i64, i64), a: (i64, i64), b: (i64, i64)| -> f64 {
        let edge = global(background_side).is_none_or(|g| img.raw[g] == 0);
        match (edge, global(a), global(b)) {
            (true, Some(ga), Some(gb)) => {
                let (fa, fb) = (img.feature.data[ga], img.feature.data[gb]);
                if (fb - fa).abs() > 1e-6 {
                    f64::from((threshold - fa) / (fb - fa))
                } else {
                    0.5
                }
            }
            _ => 0.5,
        }
    };
    let shift = |ring: Vec<Point>| -> Vec<Point> {
        let ring: Vec<Point> = ring
            .into_iter()
            .map(|p| Point::new(p.x + crop.x0 as f64, p.y + crop.y0 as f64))
            .collect();
        contour::simplify(&ring, eps)
    };
    let outer = contour::trace_subpixel((piece.first.0, piece.first.1), true, inside, |a, b| {
        crossing(b, a, b)
    });
    let mut object = Object {
        outer: shift(outer),
        holes: Vec::new(),
    };
    let background = components(&own, crop.w, crop.h, 0, false);
    for (j, hole) in background.components.iter().enumerate() {
        if hole.touches_border {
            continue;
        }
        let hm = paint_one(&background, j, crop.w, crop.h);
        let in_hole = |x: i64, y: i64| set_at(&hm, crop, x, y);
        let ring = contour::trace_subpixel(hole.first, false, in_hole, |a, b| crossing(a, a, b));
        object.holes.push(shift(ring));
    }
    let touches_border = (0..crop.h).any(|y| {
        (0..crop.w).any(|x| {
            own[y * crop.w + x] != 0 && {
                let (gx, gy) = (crop.x0 + x, crop.y0 + y);
                gx == 0 || gy == 0 || gx == w - 1 || gy == h - 1
            }
        })
    });
    Some(Candidate {
        object,
        flags: ObjectFlags {
            touches_border,
            ..ObjectFlags::default()
        },
        area: piece.area,
        first: (
            crop.x0 + piece.first.0 as usize,
            crop.y0 + piece.first.1 as usize,
        ),
    })
}
