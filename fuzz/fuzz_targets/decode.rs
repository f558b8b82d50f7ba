//! Image bytes through `probe` and `decode` under small limits: whatever the bytes, the result is
//! a header or an image within the limits, or an error; never a panic, and never an allocation
//! past the limits (run with `-malloc_limit_mb`, which `fuzz/run.sh` sets).

#![no_main]

use libfuzzer_sys::fuzz_target;
use spheroseg::segment::DecodeLimits;
use spheroseg::segment::decode::{decode, probe};

/// At most 1 megapixel, 2048 pixels on a side: a 16-bit RGBA image of that size decodes into
/// 8 MiB, and to gray in 4 MiB more.
const LIMITS: DecodeLimits = DecodeLimits {
    max_width: 2048,
    max_height: 2048,
    max_megapixels: 1,
    max_alloc_mb: 64,
};

/// libfuzzer-sys's panic hook aborts at once, even for a panic that `decode` catches (a decoder
/// panicking on a damaged file is reported as one). The default hook only prints; a panic that
/// reaches libfuzzer-sys still aborts there.
static HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| drop(std::panic::take_hook()));
    let within = |w: u32, h: u32| {
        w > 0
            && h > 0
            && w <= LIMITS.max_width
            && h <= LIMITS.max_height
            && u64::from(w) * u64::from(h) <= u64::from(LIMITS.max_megapixels) * 1_000_000
    };
    let header = probe(data, &LIMITS);
    if let Ok(h) = &header {
        assert!(within(h.width, h.height), "probe passed {h:?}");
    }
    match decode(data, &LIMITS) {
        Ok(d) => {
            let h = header.expect("an image that decodes has a header that probes");
            assert_eq!((d.gray.width, d.gray.height), (h.width, h.height));
            assert_eq!(
                d.gray.data.len(),
                d.gray.width as usize * d.gray.height as usize
            );
        }
        Err(e) => {
            // Every error has a stable code and a message.
            assert!(!e.code().to_string().is_empty() && !e.to_string().is_empty());
        }
    }
});
