//! The image store: storing by content once, refusals that leave nothing, the decode budget,
//! previews, and what the garbage collector takes and keeps.

use super::*;

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(image::GrayImage::new(w, h))
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

fn store(dir: &Path) -> ImageStore {
    ImageStore::open(dir, DecodeLimits::default()).expect("open")
}

#[test]
fn stores_by_content_once_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let bytes = png(12, 7);
    let a = store.put(&bytes, "a.png").expect("stored").image;
    let b = store.put(&bytes, "../../etc/passwd").expect("stored").image;
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.hash.len(), 64);
    assert_eq!((a.width, a.height, a.bytes), (12, 7, bytes.len() as u64));
    assert_eq!(b.name, "../../etc/passwd", "kept as a label, never a path");
    assert_eq!(store.read(&a.hash).expect("read"), bytes);
    assert!(store.path(&a.hash).starts_with(dir.path().join("images")));
    assert!(
        walk(&dir.path().join("images/incoming")).is_empty(),
        "no temp file left"
    );
}

#[test]
fn identical_images_stored_at_once_all_succeed_and_make_one_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let bytes = png(64, 64);
    let hashes: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (store, bytes) = (&store, &bytes);
                scope.spawn(move || store.put(bytes, &format!("{i}.png")).map(|s| s.image.hash))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("stored"))
            .collect()
    });
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));
    let files: Vec<PathBuf> = walk(&dir.path().join("images"));
    assert_eq!(
        files,
        vec![store.path(&hashes[0])],
        "one file, no temp files"
    );
    assert_eq!(store.read(&hashes[0]).expect("read"), bytes);
}

#[test]
fn an_existing_image_is_never_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let bytes = png(9, 9);
    let hash = store.put(&bytes, "a.png").expect("stored").image.hash;
    let before = std::fs::metadata(store.path(&hash)).expect("meta");
    store.put(&bytes, "b.png").expect("stored again");
    let after = std::fs::metadata(store.path(&hash)).expect("meta");
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            before.ino(),
            after.ino(),
            "the same file, not a replacement"
        );
    }
    assert_eq!(before.modified().ok(), after.modified().ok());
}

#[test]
fn uploads_streamed_to_disk_are_adopted_or_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let bytes = png(9, 9);
    let tmp = store.incoming().expect("temp file");
    let path = tmp.path().to_owned();
    std::fs::write(&path, &bytes).expect("write");
    let r = store.put_upload(tmp, "a.png").expect("stored").image;
    assert!(!path.exists());
    assert_eq!(store.read(&r.hash).expect("read"), bytes);
    assert_eq!(r, store.put(&bytes, "a.png").expect("same content").image);
    let tmp = store.incoming().expect("temp file");
    let path = tmp.path().to_owned();
    std::fs::write(&path, b"text").expect("write");
    assert_eq!(
        store.put_upload(tmp, "t.tif").unwrap_err().code(),
        "not-an-image"
    );
    assert!(!path.exists(), "a refused upload leaves nothing");
}

#[test]
fn a_non_image_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let e = store.put(b"hello", "notes.tif").unwrap_err();
    assert_eq!(e.code(), "not-an-image");
    assert!(e.to_string().starts_with("notes.tif: not an image"), "{e}");
    let files = walk(&dir.path().join("images"));
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn too_small_for_the_segmenter_and_over_the_budget_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let e = store.requiring(8).put(&png(6, 20), "tiny.png").unwrap_err();
    assert_eq!(e.code(), "image-too-small", "{e}");
    assert!(e.to_string().contains("6×20"), "{e}");
    let tight = store.clone().with_budget(DecodeBudget::new(10_000));
    let e = tight.put(&png(100, 100), "big.png").unwrap_err();
    assert_eq!(e.code(), "image-too-large", "{e}");
    assert!(e.to_string().contains("decode budget"), "{e}");
    assert!(walk(&dir.path().join("images")).is_empty());
}

#[test]
fn a_full_budget_makes_a_check_busy_after_a_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = DecodeBudget::new(1 << 20);
    let store = store(dir.path()).with_budget(budget.clone());
    let held = budget.reserve(1 << 20, Duration::ZERO).expect("all of it");
    let started = std::time::Instant::now();
    let e = store.put(&png(64, 64), "a.png").unwrap_err();
    assert_eq!(e.code(), "busy", "{e}");
    assert!(started.elapsed() >= BUDGET_WAIT, "it waited first");
    drop(held);
    store.put(&png(64, 64), "a.png").expect("fits now");
    assert_eq!(budget.in_use(), 0, "the check gave its bytes back");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn previews_are_8_bit_scaled_and_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(300, 100, |x, _| {
        image::Luma([1000 + x as u16 * 100])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma16(img)
        .write_to(&mut out, image::ImageFormat::Tiff)
        .expect("tiff");
    let r = store.put(&out.into_inner(), "a.tif").expect("stored").image;
    let png = store.preview(&r.hash, 150).expect("preview");
    let p = image::load_from_memory(&png).expect("decodes");
    assert_eq!((p.width(), p.height()), (150, 50));
    assert_eq!(p.color(), image::ColorType::L8);
    let row: Vec<u8> = p
        .to_luma8()
        .rows()
        .next()
        .expect("row")
        .map(|px| px.0[0])
        .collect();
    assert!(
        row[0] < 10 && row[149] > 245,
        "stretched to the full range: {} .. {}",
        row[0],
        row[149]
    );
    assert!(
        dir.path()
            .join("previews")
            .join(format!("{}-150.png", r.hash))
            .exists()
    );
    assert_eq!(store.preview(&r.hash, 150).expect("cached"), png);
}

#[test]
fn garbage_collection_keeps_referenced_and_pinned_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let keep = store.put(&png(4, 4), "keep.png").expect("stored").image;
    let drop_me = store.put(&png(5, 5), "drop.png").expect("stored").image;
    // An upload that found its image already stored holds a pin until its commit.
    let pinned = store.put(&png(6, 6), "pinned.png").expect("stored");
    store.preview(&keep.hash, 64).expect("preview");
    store.preview(&drop_me.hash, 64).expect("preview");
    let old_tmp = store.path(&keep.hash).with_extension("123.tmp");
    std::fs::write(&old_tmp, b"half").expect("tmp");
    let crashed = dir.path().join("images/incoming/left-by-a-crash.tmp");
    std::fs::write(&crashed, b"half").expect("tmp");
    let writing = store.incoming().expect("live temp file");

    let n = store.collect_garbage(|h| h == keep.hash);
    assert_eq!(
        n, 4,
        "the unreferenced image, its preview and two stale temp files"
    );
    assert!(store.path(&keep.hash).exists());
    assert!(!store.path(&drop_me.hash).exists());
    assert!(store.path(&pinned.image.hash).exists(), "pinned");
    assert!(!old_tmp.exists() && !crashed.exists());
    assert!(writing.path().exists(), "a request is still writing it");
    let previews = walk(&dir.path().join("previews"));
    assert_eq!(previews.len(), 1, "{previews:?}");
    assert!(previews[0].to_string_lossy().contains(&keep.hash));

    let hash = pinned.image.hash.clone();
    drop(pinned);
    assert_eq!(store.collect_garbage(|h| h == keep.hash), 1);
    assert!(!store.path(&hash).exists(), "collected once unpinned");
}

#[test]
fn an_image_pinned_for_a_rerun_outlives_its_only_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let image = store.put(&png(8, 8), "rerun.png").expect("stored").image;
    // The rerun pins the image its original job refers to; meanwhile that job is deleted.
    let pin = store.pin_stored(&image.hash).expect("still stored");
    assert_eq!(store.collect_garbage(|_| false), 0);
    assert!(store.path(&image.hash).exists(), "pinned");
    drop(pin);
    assert_eq!(store.collect_garbage(|_| false), 1);
    assert!(
        store.pin_stored(&image.hash).is_none(),
        "collected before the pin: nothing to rerun"
    );
    assert!(
        store.pins.lock().expect("pins").is_empty(),
        "the refused pin is released"
    );
}
