//! The budget of decoded image bytes in flight, shared by every upload check, preview and job of
//! the process: decoding is bounded as a whole, not only per image. A small PNG can decode to
//! hundreds of megabytes (8000² RGBA16 is 512 MB, plus 256 MB as the gray floats the pipeline
//! works on), and six of them at once must not take the machine's memory.
//!
//! A caller reserves what its work will hold (from the file header: [`Footprint`]) before it
//! decodes, and the reservation is returned when its guard drops. An upload waits briefly and is
//! then refused (503, try again); a job on a worker waits until the bytes are free or it is
//! stopped. A single job larger than the whole budget is let through alone rather than never.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a worker waits between looks at its stop flag while it waits for the budget.
const POLL: Duration = Duration::from_millis(100);

/// Bytes of f32 planes the builtin pipeline holds at its peak, per pixel, beyond the decoded file:
/// the gray image and about four working planes (normalised, smoothed, feature, distance).
/// Measured: a 4000² 16-bit TIFF peaks at 344 MB of RSS, 21 bytes per pixel in all.
pub const BUILTIN_BYTES_PER_PIXEL: u64 = 20;

/// Bytes per pixel of the gray floats every decode produces.
pub const GRAY_BYTES_PER_PIXEL: u64 = 4;

/// What decoding an image will hold, read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    pub width: u32,
    pub height: u32,
    /// The decoder's own buffer: width × height × channels × bytes per sample.
    pub decoded_bytes: u64,
}

impl Footprint {
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// A decode into gray: the decoder's buffer and the gray floats, alive together.
    pub fn decode_bytes(&self) -> u64 {
        self.decoded_bytes + self.pixels() * GRAY_BYTES_PER_PIXEL
    }

    /// A decode followed by the builtin pipeline.
    pub fn builtin_bytes(&self) -> u64 {
        self.decoded_bytes + self.pixels() * BUILTIN_BYTES_PER_PIXEL
    }
}

struct Inner {
    total: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

/// The shared budget; cheap to clone.
#[derive(Clone)]
pub struct DecodeBudget {
    inner: Arc<Inner>,
}

impl fmt::Debug for DecodeBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeBudget")
            .field("total", &self.inner.total)
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Default for DecodeBudget {
    /// No limit (tests, offline batches with their own bound).
    fn default() -> Self {
        DecodeBudget::new(u64::MAX)
    }
}

/// Bytes of the budget held; returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: DecodeBudget,
    bytes: u64,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut used = self.budget.inner.used.lock().expect("budget lock");
        *used = used.saturating_sub(self.bytes);
        drop(used);
        self.budget.inner.freed.notify_all();
        metrics::gauge!("spheroseg_decode_bytes_in_flight").decrement(self.bytes as f64);
    }
}

impl DecodeBudget {
    pub fn new(total: u64) -> Self {
        DecodeBudget {
            inner: Arc::new(Inner {
                total: total.max(1),
                used: Mutex::new(0),
                freed: Condvar::new(),
            }),
        }
    }

    /// The default for this machine: a quarter of its memory, at most 2 GiB.
    pub fn default_total(memory_bytes: u64) -> u64 {
        let quarter = if memory_bytes == 0 {
            2 << 30
        } else {
            memory_bytes / 4
        };
        quarter.clamp(256 << 20, 2 << 30)
    }

    pub fn total(&self) -> u64 {
        self.inner.total
    }

    pub fn in_use(&self) -> u64 {
        *self.inner.used.lock().expect("budget lock")
    }

    /// Takes `bytes` (at most the whole budget) once they are free, waiting up to `wait`; `None`
    /// if they did not come free in time.
    pub fn reserve(&self, bytes: u64, wait: Duration) -> Option<Reservation> {
        let deadline = Instant::now() + wait;
        self.take(bytes, || Instant::now() < deadline, wait)
    }

    /// Takes `bytes` (at most the whole budget) once they are free; `None` if `stopped` says so
    /// first (looked at every 100 ms).
    pub fn reserve_unless(&self, bytes: u64, stopped: impl Fn() -> bool) -> Option<Reservation> {
        self.take(bytes, || !stopped(), POLL)
    }

    fn take(
        &self,
        bytes: u64,
        keep_waiting: impl Fn() -> bool,
        slice: Duration,
    ) -> Option<Reservation> {
        let bytes = bytes.min(self.inner.total);
        let mut used = self.inner.used.lock().expect("budget lock");
        loop {
            // A request larger than what is left waits until the rest is freed; one as large as
            // the whole budget therefore runs alone.
            if used.saturating_add(bytes) <= self.inner.total {
                *used += bytes;
                metrics::gauge!("spheroseg_decode_bytes_in_flight").increment(bytes as f64);
                return Some(Reservation {
                    budget: self.clone(),
                    bytes,
                });
            }
            if !keep_waiting() {
                return None;
            }
            let (guard, _) = self
                .inner
                .freed
                .wait_timeout(used, slice.min(POLL))
                .expect("budget lock");
            used = guard;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_and_come_back() {
        let b = DecodeBudget::new(100);
        let r1 = b.reserve(60, Duration::ZERO).expect("fits");
        assert_eq!(b.in_use(), 60);
        assert!(
            b.reserve(50, Duration::from_millis(10)).is_none(),
            "over the budget"
        );
        let r2 = b.reserve(40, Duration::ZERO).expect("fits exactly");
        drop(r1);
        assert_eq!(b.in_use(), 40);
        drop(r2);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn a_waiter_gets_the_bytes_when_they_are_freed() {
        let b = DecodeBudget::new(100);
        let held = b.reserve(80, Duration::ZERO).expect("fits");
        let b2 = b.clone();
        let waiter =
            std::thread::spawn(move || b2.reserve(50, Duration::from_secs(10)).map(|r| r.bytes()));
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert_eq!(waiter.join().expect("thread"), Some(50));
    }

    #[test]
    fn more_than_the_whole_budget_runs_alone_and_a_stop_ends_the_wait() {
        let b = DecodeBudget::new(100);
        let big = b
            .reserve(1_000, Duration::ZERO)
            .expect("clamped to the whole");
        assert_eq!(big.bytes(), 100);
        let stop = std::sync::atomic::AtomicBool::new(true);
        assert!(
            b.reserve_unless(1, || stop.load(std::sync::atomic::Ordering::SeqCst))
                .is_none()
        );
    }

    #[test]
    fn the_default_is_a_quarter_of_memory_at_most_2_gib() {
        assert_eq!(DecodeBudget::default_total(24 << 30), 2 << 30);
        assert_eq!(DecodeBudget::default_total(4 << 30), 1 << 30);
        assert_eq!(DecodeBudget::default_total(0), 2 << 30);
    }
}
