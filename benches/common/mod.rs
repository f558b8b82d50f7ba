//! What the benches share. Each bench uses some of it.
#![allow(dead_code)]

use std::sync::Arc;

use spheroseg::clock::SystemClock;
use spheroseg::images::ImageStore;
use spheroseg::morphology::Gray;
use spheroseg::queue::{ImageRef, NewJob, Priority, Queue, QueueOptions};
use spheroseg::segment::DecodeLimits;
use spheroseg::synth::{Kind, Scene};

/// A queue and an image store in a temporary directory that lives as long as they do.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub queue: Queue,
    pub images: ImageStore,
}

pub fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = Queue::open(
        &dir.path().join("q.redb"),
        QueueOptions::default(),
        Arc::new(SystemClock),
    )
    .expect("queue");
    let images = ImageStore::open(dir.path(), DecodeLimits::default()).expect("images");
    Setup { dir, queue, images }
}

/// An 8-bit gray image as a PNG.
pub fn png(img: &Gray) -> Vec<u8> {
    let px = img
        .data
        .iter()
        .map(|&v| v.clamp(0.0, 255.0) as u8)
        .collect();
    let buf = image::GrayImage::from_raw(img.width, img.height, px).expect("pixels");
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(buf)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// A synthetic spheroid of `size`×`size`, different for every `seed`, as a PNG.
pub fn synth_png(seed: u64, size: u32) -> Vec<u8> {
    png(&Scene::random(seed, size, 8, Kind::Plain).render().0)
}

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
