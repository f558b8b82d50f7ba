//! `resolution = "auto"` on a large image: the pipeline runs on the image binned by
//! long side / 1024, and what comes back reads as if every pixel had been segmented: outlines in
//! the image's pixels, inside the image, as close to the truth as the full-resolution run.

use std::sync::atomic::AtomicBool;

use spheroseg::morphology::rasterize;
use spheroseg::segment::builtin::segment;
use spheroseg::segment::{Resolution, SegmentParams};
use spheroseg::synth::{Plate, PlateKind, Score, iou};

#[test]
fn a_binned_large_plate_scores_as_the_full_resolution_run() {
    // 2051 px: binned by 2 into 1026 columns, the last one a single pixel wide.
    let size = 2051;
    for (seed, kind) in [(11, PlateKind::TwoTouching), (12, PlateKind::ThreeBridged)] {
        let plate = Plate::random(seed, size, 16, kind);
        let (img, labels, n) = plate.render_with_labels();
        let run = |resolution| {
            let params = SegmentParams {
                resolution,
                ..SegmentParams::default()
            };
            segment(&img, &params, &AtomicBool::new(false), &mut |_| {}).expect("segments")
        };
        let (auto, full) = (run(Resolution::Auto), run(Resolution::Full));
        assert_eq!((auto.decisions.bin, full.decisions.bin), (2, 1));
        assert!(auto.timings.iter().any(|&(stage, _)| stage == "bin"));
        assert_eq!(auto.decisions.morph_radius, full.decisions.morph_radius);
        // In the image's pixels: 1026 / 1024 binned pixels of 2, against 2051 / 1024.
        assert!((auto.decisions.sigma / full.decisions.sigma - 1.0).abs() < 0.01);

        let score = |objects| Score::new(&labels, n, objects, size, size);
        let (a, f) = (score(&auto.objects), score(&full.objects));
        eprintln!("{} auto: {a}\n{} full: {f}", kind.name(), kind.name());
        assert!(a.meets(0.95, 0.02), "binned: {a}");
        assert!(
            a.min_iou() >= f.min_iou() - 0.005,
            "binned {} against full {}",
            a.min_iou(),
            f.min_iou()
        );
        let together = iou(
            &rasterize(&auto.objects, size, size),
            &rasterize(&full.objects, size, size),
        );
        assert!(
            together >= 0.98,
            "binned and full outlines overlap {together}"
        );
        let inside = auto
            .objects
            .iter()
            .flat_map(|o| o.outer.iter().chain(o.holes.iter().flatten()))
            .all(|p| {
                (0.0..=f64::from(size)).contains(&p.x) && (0.0..=f64::from(size)).contains(&p.y)
            });
        assert!(inside, "every outline point lies in the image");
        let flags = |s: &spheroseg::segment::builtin::Segmentation| {
            s.flags.iter().map(|f| f.touches_border).collect::<Vec<_>>()
        };
        assert_eq!(flags(&auto), flags(&full));
    }
}
