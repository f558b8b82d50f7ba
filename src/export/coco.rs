//! COCO instance-segmentation JSON of results, as a training set: one image entry per result,
//! one annotation per object, one category `spheroid`.
//!
//! Invariants: an object without holes is written as its outer polygon (flat `[x1, y1, x2, y2,
//! …]`); an object with holes as an uncompressed RLE of our own mask of it (column-major counts
//! starting with background, as pycocotools reads them), because COCO polygons cannot cut a hole:
//! pycocotools fills every polygon of an annotation and merges them. `area` is the pixel count of
//! our mask of the object (what COCO evaluation compares), `bbox` its outline's `[x, y, w, h]`,
//! `iscrowd` always 0. Ids start at 1.

use serde::Serialize;

use crate::morphology::rasterize;
use crate::outline::Object;
use crate::segment::SegmentResult;

/// The one category.
pub const CATEGORY: &str = "spheroid";

#[derive(Serialize)]
pub struct Coco {
    pub info: Info,
    pub images: Vec<Image>,
    pub annotations: Vec<Annotation>,
    pub categories: [Category; 1],
}

#[derive(Serialize)]
pub struct Info {
    pub description: &'static str,
    pub version: &'static str,
}

#[derive(Serialize)]
pub struct Image {
    pub id: u64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
    /// The job id (the file name offline), to find the result again.
    pub spheroseg_id: String,
    /// The outlines were corrected by hand in spheroseg.
    pub spheroseg_corrected: bool,
}

#[derive(Serialize)]
pub struct Category {
    pub id: u64,
    pub name: &'static str,
    pub supercategory: &'static str,
}

/// A polygon list, or an uncompressed run-length encoding.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Segmentation {
    Polygons(Vec<Vec<f64>>),
    Rle { counts: Vec<u64>, size: [u32; 2] },
}

#[derive(Serialize)]
pub struct Annotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u64,
    pub segmentation: Segmentation,
    pub area: u64,
    pub bbox: [f64; 4],
    pub iscrowd: u8,
}

/// Column-major runs of a row-major 0/255 mask, starting with a run of background.
fn rle(mask: &[u8], width: u32, height: u32) -> Vec<u64> {
    let (w, h) = (width as usize, height as usize);
    let mut counts = Vec::new();
    let mut current = 0u8;
    let mut run = 0u64;
    for x in 0..w {
        for y in 0..h {
            let v = u8::from(mask[y * w + x] != 0);
            if v != current {
                counts.push(run);
                run = 0;
                current = v;
            }
            run += 1;
        }
    }
    counts.push(run);
    counts
}

fn annotation(id: u64, image_id: u64, o: &Object, r: &SegmentResult, i: usize) -> Annotation {
    let (w, h) = (r.image.width, r.image.height);
    let mask = rasterize(std::slice::from_ref(o), w, h);
    let area = mask.iter().filter(|&&v| v != 0).count() as u64;
    let segmentation = if o.holes.is_empty() {
        Segmentation::Polygons(vec![o.outer.iter().flat_map(|p| [p.x, p.y]).collect()])
    } else {
        Segmentation::Rle {
            counts: rle(&mask, w, h),
            size: [h, w],
        }
    };
    let b = r.metrics.get(i).map(|m| m.bounding_box).unwrap_or_default();
    Annotation {
        id,
        image_id,
        category_id: 1,
        segmentation,
        area,
        bbox: [b.x, b.y, b.width, b.height],
        iscrowd: 0,
    }
}

/// The image entry of result `r`, numbered `image_id`.
pub fn image_entry(image_id: u64, id: &str, r: &SegmentResult) -> Image {
    Image {
        id: image_id,
        file_name: r.image.name.clone(),
        width: r.image.width,
        height: r.image.height,
        spheroseg_id: id.to_owned(),
        spheroseg_corrected: r.corrected,
    }
}

/// The annotations of result `r` (image `image_id`), numbered from `first_id`.
pub fn annotations(image_id: u64, first_id: u64, r: &SegmentResult) -> Vec<Annotation> {
    r.objects
        .iter()
        .enumerate()
        .map(|(i, o)| annotation(first_id + i as u64, image_id, o, r, i))
        .collect()
}

pub fn info() -> Info {
    Info {
        description: "spheroseg instance segmentation",
        version: env!("CARGO_PKG_VERSION"),
    }
}

pub fn categories() -> [Category; 1] {
    [Category {
        id: 1,
        name: CATEGORY,
        supercategory: "cell",
    }]
}

/// The COCO document of `results` (`(id, result)` as the other exports take them).
pub fn coco<'a>(results: impl IntoIterator<Item = (&'a str, &'a SegmentResult)>) -> Coco {
    let mut images = Vec::new();
    let mut all = Vec::new();
    for (n, (id, r)) in results.into_iter().enumerate() {
        let image_id = n as u64 + 1;
        images.push(image_entry(image_id, id, r));
        all.extend(annotations(image_id, all.len() as u64 + 1, r));
    }
    Coco {
        info: info(),
        images,
        annotations: all,
        categories: categories(),
    }
}

/// [`coco`] as JSON.
pub fn coco_json<'a>(results: impl IntoIterator<Item = (&'a str, &'a SegmentResult)>) -> String {
    serde_json::to_string(&coco(results)).expect("plain structs serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_is_column_major_from_background() {
        // 3 wide, 2 high; row-major: [0 1 1 / 0 0 1]; columns: (0,0) (1,0) (1,1).
        let mask = [0, 255, 255, 0, 0, 255];
        assert_eq!(rle(&mask, 3, 2), vec![2, 1, 1, 2]);
        assert_eq!(rle(&[255, 255], 1, 2), vec![0, 2]);
    }
}
