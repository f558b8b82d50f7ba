//! Bytes as what an ML segmenter sends back, read every way spheroseg reads such text: the flat
//! polygon list (`outline.rs`), the http service's reply body (`segment/http.rs`) and the command
//! program's result JSON (`segment/command.rs`). Polygons that are accepted become a result on a
//! small image, as a job's would: the result holds only finite points inside the image, and it
//! stores, exports and rasterises without a panic.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use spheroseg::outline::{Polygon, from_polygons};
use spheroseg::segment::{
    DecodeBudget, DecodeLimits, Input, SegmentParams, SegmentResult, result_from_polygons,
};

const WIDTH: u32 = 48;
const HEIGHT: u32 = 32;

/// A small gray gradient as a PNG: the image the polygons are checked and measured against.
static IMAGE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let img = image::GrayImage::from_fn(WIDTH, HEIGHT, |x, y| image::Luma([(x * 5 + y) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode the PNG");
    out.into_inner()
});

static BUDGET: LazyLock<DecodeBudget> = LazyLock::new(|| DecodeBudget::new(64 << 20));

fn check(result: &SegmentResult) {
    let (w, h) = (f64::from(WIDTH), f64::from(HEIGHT));
    for o in &result.objects {
        assert!(o.outer.len() >= 3, "an outer ring of fewer than 3 points");
        for p in o.outer.iter().chain(o.holes.iter().flatten()) {
            assert!(
                p.x.is_finite() && p.y.is_finite(),
                "a point that is not finite: {p:?}"
            );
            assert!(
                p.x >= -0.5 && p.y >= -0.5 && p.x <= w + 0.5 && p.y <= h + 0.5,
                "a point outside the {WIDTH}×{HEIGHT} image: {p:?}"
            );
        }
    }
    assert_eq!(result.metrics.len(), result.objects.len());
    assert!(SegmentResult::from_bytes(&result.to_bytes()).is_some());
    let _ = spheroseg::export::result_json(result);
    let mut csv = Vec::new();
    let _ = spheroseg::export::write_csv(&mut csv, [("job", result)], true);
    let _ = spheroseg::export::mask_png(result);
}

fn measured(polygons: &[Polygon]) {
    let params = SegmentParams::default();
    let limits = DecodeLimits::default();
    let input = Input {
        bytes: &IMAGE,
        path: Path::new("fuzz.png"),
        name: "fuzz.png",
        params: &params,
        limits: &limits,
        budget: &BUDGET,
        decoded: None,
    };
    if let Ok(result) = result_from_polygons(polygons, &input, "fuzz", Vec::new()) {
        check(&result);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = serde_json::from_slice::<Vec<Polygon>>(data)
        && let Ok(objects) = from_polygons(&list)
    {
        for o in &objects {
            assert!(o.outer.len() >= 3);
            assert!(o.holes.iter().all(|h| h.len() >= 3));
        }
    }
    if let Ok(polygons) = spheroseg::fuzzing::http_reply("fuzz", data) {
        measured(&polygons);
    }
    if let Ok(polygons) = spheroseg::fuzzing::command_reply(data) {
        measured(&polygons);
    }
});
