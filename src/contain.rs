//! Containing a panic of code spheroseg calls but does not own (the storage engine meeting a
//! damaged file panics instead of returning an error): [`contain`] turns it into an `Err` and
//! keeps its message off stderr, so the operator reads one clear line instead of a backtrace.
//!
//! The process's panic hook is wrapped once; panics outside `contain` are reported as before.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    /// Inside `contain` on this thread: the hook stays quiet.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside it becomes `Err` with the panic's message.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let was = QUIET.with(|q| q.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    r.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::contain;

    #[test]
    fn a_panic_becomes_an_error_and_values_pass_through() {
        assert_eq!(contain(|| 7), Ok(7));
        let e = contain(|| -> u8 { panic!("damaged page {}", 3) }).unwrap_err();
        assert_eq!(e, "damaged page 3");
        assert_eq!(contain(|| 8), Ok(8), "still usable afterwards");
    }
}
