//! What the benches share.

use spheroseg::queue::{ImageRef, NewJob, Priority};

/// A job of ~200 bytes as a lab's would be: a project, a long image name, a 2048² TIFF.
pub fn job(i: usize, priority: u8) -> NewJob {
    NewJob {
        priority: Priority::new(priority.into()).expect("valid priority"),
        project: Some("organoid-screen-2026-11".into()),
        image: ImageRef {
            hash: format!("{:064x}", i as u128 * 0x9E37_79B9_7F4A_7C15),
            name: format!("plate-07/well-B{:02}/spheroid_day3_{i:06}.tif", i % 24),
            width: 2048,
            height: 2048,
            bytes: 8 << 20,
        },
        ..NewJob::default()
    }
}
