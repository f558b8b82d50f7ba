//! The builtin segmenter on what real plates show, against the targets: every truth
//! spheroid matched by exactly one object with IoU at least 0.95, no extra object, area error at
//! most 2 %. One test per kind of plate, each over both bit depths and a few seeds at 512-1024 px;
//! and the real image from `../shared/real/` when it is there.
//!
//! Each test prints its plates' scores (`cargo test -- --nocapture`) and names every plate that
//! misses in its failure message.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use spheroseg::segment::builtin::segment;
use spheroseg::segment::{DecodeLimits, SegmentParams, analyze};
use spheroseg::synth::{Plate, PlateKind, Score};

const MIN_IOU: f64 = 0.95;
const MAX_AREA_ERROR: f64 = 0.02;

/// `(seed, size, bit depth)` of the plates of each kind.
const PLATES: [(u64, u32, u8); 5] = [
    (1, 512, 8),
    (2, 640, 16),
    (3, 768, 8),
    (4, 896, 16),
    (5, 1024, 16),
];

/// Segments the plates of `kind` with the default parameters and asserts the targets on each.
fn meets_the_targets(kind: PlateKind) {
    meets_the_targets_on(kind, &PLATES);
}

/// [`meets_the_targets`] on the plates `(seed, size, bit depth)` of `kind`.
fn meets_the_targets_on(kind: PlateKind, plates: &[(u64, u32, u8)]) {
    let mut report = String::new();
    let mut missed = 0;
    for &(seed, size, depth) in plates {
        let plate = Plate::random(seed, size, depth, kind);
        let (img, labels, n) = plate.render_with_labels();
        let s = segment(
            &img,
            &SegmentParams::default(),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .expect("segments");
        let score = Score::new(&labels, n, &s.objects, img.width, img.height);
        let ok = score.meets(MIN_IOU, MAX_AREA_ERROR);
        missed += usize::from(!ok);
        writeln!(
            report,
            "{} seed {seed} {size}² {depth}-bit: {} {score}",
            kind.name(),
            if ok { "meets" } else { "MISSES" },
        )
        .expect("a String takes writes");
    }
    eprint!("{report}");
    assert_eq!(
        missed,
        0,
        "{missed} of {} plates miss IoU ≥ {MIN_IOU}, one object per spheroid, no extra, area \
         error ≤ {}%:\n{report}",
        plates.len(),
        100.0 * MAX_AREA_ERROR
    );
}

#[test]
fn two_touching_spheroids_are_two_objects() {
    meets_the_targets(PlateKind::TwoTouching);
}

#[test]
fn three_touching_spheroids_are_three_objects() {
    meets_the_targets(PlateKind::ThreeTouching);
}

#[test]
fn three_bridged_spheroids_are_three_objects_without_their_bridges() {
    meets_the_targets(PlateKind::ThreeBridged);
}

#[test]
fn a_spheroid_in_a_halo_with_fingers_is_its_compact_body() {
    meets_the_targets(PlateKind::HaloFingers);
}

#[test]
fn debris_is_not_an_object() {
    meets_the_targets(PlateKind::Debris);
}

#[test]
fn defocused_spheroids_keep_their_outlines() {
    meets_the_targets(PlateKind::Defocus);
}

#[test]
fn touching_spheroids_in_a_halo_with_debris_and_defocus_are_two_objects() {
    meets_the_targets(PlateKind::TouchingInHalo);
}

/// The plate of `cargo bench --bench segment` whose lighter spheroid came out 3.0 % (1024²) and
/// 3.9 % (2048²) too large: its split with the dark one sat off the edge between their tones,
/// and its own edge took in the bases of fingers.
#[test]
fn touching_spheroids_in_a_halo_keep_their_area_at_the_bench_sizes() {
    meets_the_targets_on(
        PlateKind::TouchingInHalo,
        &[(2002, 1024, 8), (2002, 2048, 16), (2003, 2048, 16)],
    );
}

/// The real image: two touching spheroids in a wide halo of loose cells (see
/// `shared/real/README.md`). Two objects, each centroid inside its spheroid, each outline smooth
/// (circularity at least 0.6).
#[test]
fn the_real_image_has_two_round_objects_one_in_each_spheroid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/real/test.bmp");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("skipped: no real image at {}", path.display());
        return;
    };
    let r = analyze(
        &bytes,
        "test.bmp",
        &SegmentParams::default(),
        &DecodeLimits::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("analyses");
    let found: Vec<String> = r
        .metrics
        .iter()
        .map(|m| {
            format!(
                "centroid ({:.0}, {:.0}) area {:.0} circularity {:.3}",
                m.centroid.x, m.centroid.y, m.area, m.circularity
            )
        })
        .collect();
    eprintln!("real image: {} objects: {found:#?}", r.objects.len());
    assert_eq!(r.objects.len(), 2, "two spheroids: {found:#?}");
    // (centre x, centre y, radius) of the upper, darker spheroid and of the lower, lighter one.
    for (name, cx, cy, radius) in [
        ("upper", 580.0, 450.0, 110.0),
        ("lower", 450.0, 660.0, 100.0),
    ] {
        let inside: Vec<_> = r
            .metrics
            .iter()
            .filter(|m| (m.centroid.x - cx).hypot(m.centroid.y - cy) < radius)
            .collect();
        assert_eq!(
            inside.len(),
            1,
            "one object centred in the {name} spheroid: {found:#?}"
        );
        assert!(
            inside[0].circularity >= 0.6,
            "the {name} spheroid's outline is smooth: {found:#?}"
        );
    }
}
