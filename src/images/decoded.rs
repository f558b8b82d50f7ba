//! Images decoded at upload, kept a short while for the worker that segments them next. The
//! check at upload decodes the whole image anyway, and decoding it again on the worker was the
//! largest cost the server path added over an offline run. Bounded in bytes: once it is full a
//! new image is not kept (the oldest are the ones the queue runs next); an entry goes when a
//! worker takes it, or after a minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::segment::Decoded;

/// How long a decoded image waits for its job.
const KEEP: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) struct DecodedCache {
    inner: Mutex<Inner>,
    cap: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, (Instant, Arc<Decoded>)>,
    bytes: u64,
}

fn size(d: &Decoded) -> u64 {
    (d.gray.data.len() * std::mem::size_of::<f32>()) as u64
}

impl DecodedCache {
    pub(super) fn new(cap: u64) -> Self {
        DecodedCache {
            inner: Mutex::default(),
            cap,
        }
    }

    /// Keeps `decoded` for `hash` if there is room (after dropping what waited too long).
    pub(super) fn keep(&self, hash: &str, decoded: Decoded) {
        let n = size(&decoded);
        let mut inner = self.inner.lock().expect("decoded cache lock");
        if inner.bytes + n > self.cap {
            let now = Instant::now();
            let mut freed = 0;
            inner.entries.retain(|_, (at, d)| {
                let keep = now.duration_since(*at) < KEEP;
                if !keep {
                    freed += size(d);
                }
                keep
            });
            inner.bytes -= freed;
        }
        if inner.bytes + n <= self.cap && !inner.entries.contains_key(hash) {
            inner.bytes += n;
            inner
                .entries
                .insert(hash.to_owned(), (Instant::now(), Arc::new(decoded)));
        }
    }

    /// The decoded image of `hash`, if one is kept; it is no longer kept after this.
    pub(super) fn take(&self, hash: &str) -> Option<Arc<Decoded>> {
        let mut inner = self.inner.lock().expect("decoded cache lock");
        let (_, d) = inner.entries.remove(hash)?;
        inner.bytes -= size(&d);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::morphology::Gray;

    fn decoded(px: usize) -> Decoded {
        Decoded {
            gray: Gray::new(px as u32, 1, vec![0.0; px]),
            format: "PNG",
            bit_depth: 8,
            channels: 1,
            pages: 1,
            pixel_size: None,
        }
    }

    #[test]
    fn kept_until_taken_and_bounded() {
        let c = DecodedCache::new(100);
        c.keep("a", decoded(10)); // 40 bytes
        c.keep("b", decoded(10));
        c.keep("c", decoded(10)); // no room: not kept
        assert!(c.take("c").is_none());
        assert_eq!(c.take("a").map(|d| d.gray.data.len()), Some(10));
        assert!(c.take("a").is_none(), "taken once");
        c.keep("c", decoded(10));
        assert!(c.take("c").is_some(), "room again once a was taken");
    }
}
