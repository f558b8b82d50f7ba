//! Results as the first record version stored them: postcard of the result with the parameters
//! and decisions of that time, frozen here. (Its metrics are today's `Metrics`: when that type
//! changes, freeze its present form here first.)

use serde::Deserialize;

use super::{ImageInfo, SegmentResult};
use crate::morphology::Metrics;
use crate::outline::Object;
use crate::segment::builtin::Decisions;
use crate::segment::{Feature, ParamsV1, Polarity};

#[derive(Deserialize)]
struct DecisionsV1 {
    feature: Feature,
    polarity: Polarity,
    threshold: f32,
    separability: f64,
    sigma: f32,
    morph_radius: u32,
    holes_filled: u32,
}

#[derive(Deserialize)]
pub(super) struct ResultV1 {
    image: ImageInfo,
    segmenter: String,
    params: ParamsV1,
    decisions: Option<DecisionsV1>,
    objects: Vec<Object>,
    metrics: Vec<Metrics>,
    timings_ms: Vec<(String, f64)>,
    created_at: String,
}

impl From<ResultV1> for SegmentResult {
    fn from(v: ResultV1) -> Self {
        let flags = super::geometric_flags(&v.objects, &v.image);
        let params: crate::segment::SegmentParams = v.params.into();
        SegmentResult {
            image: v.image,
            segmenter: v.segmenter,
            pixel_size: super::calibration::resolve(
                params.pixel_size_um,
                params.pixel_size_from,
                None,
            ),
            params,
            decisions: v.decisions.map(|d| Decisions {
                bin: 1,
                feature: d.feature,
                polarity: d.polarity,
                threshold: d.threshold,
                separability: d.separability,
                sigma: d.sigma,
                morph_radius: d.morph_radius,
                holes_filled: d.holes_filled,
                ..Decisions::default()
            }),
            objects: v.objects,
            metrics: v.metrics,
            flags,
            timings_ms: v.timings_ms,
            created_at: v.created_at,
            metadata: Vec::new(),
            ml: None,
            corrected: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outline::Point;

    /// A record as version 1 wrote it (postcard writes a struct as its fields in order, so a
    /// tuple of the same fields writes the same bytes), read today: its parameters keep version
    /// 1's behaviour, its flags come from its outlines.
    #[test]
    fn a_result_of_record_version_1_is_read() {
        let image = ImageInfo {
            name: "old.png".into(),
            width: 20,
            height: 20,
            format: "PNG".into(),
            bit_depth: 8,
            channels: 1,
            pages: 1,
        };
        let square = Object {
            outer: vec![
                Point::new(0.0, 2.0),
                Point::new(10.0, 2.0),
                Point::new(10.0, 12.0),
                Point::new(0.0, 12.0),
            ],
            holes: vec![],
        };
        let metrics = crate::morphology::measure(&square, None, None);
        let params = (
            true,
            None::<f32>,
            Feature::Auto,
            Polarity::Dark,
            0.02f32,
            0.001f32,
            false,
            None::<u32>,
            1.0f32,
            Some(0.65f32),
        );
        let decisions = Some((
            Feature::Intensity,
            Polarity::Dark,
            0.4f32,
            0.8f64,
            1.0f32,
            1u32,
            0u32,
        ));
        let v1 = (
            image.clone(),
            "builtin".to_owned(),
            params,
            decisions,
            vec![square.clone()],
            vec![metrics.clone()],
            vec![("decode".to_owned(), 1.5f64)],
            "2026-11-01T10:00:00Z".to_owned(),
        );
        let mut bytes = vec![1u8];
        bytes.extend(postcard::to_stdvec(&v1).expect("encode"));
        let r = SegmentResult::from_bytes(&bytes).expect("version 1 is read");
        assert_eq!(r.image, image);
        assert_eq!(r.objects, vec![square]);
        assert_eq!(r.metrics, vec![metrics]);
        assert_eq!(r.params.pixel_size_um, Some(0.65));
        assert_eq!(r.params.declump, crate::segment::Declump::Off);
        assert_eq!(r.decisions.as_ref().expect("decisions").threshold, 0.4);
        assert!(r.flags[0].touches_border, "x = 0 is the border");
        // And today's records go round.
        let again = SegmentResult::from_bytes(&r.to_bytes()).expect("version 2");
        assert_eq!(again, r);
    }
}
