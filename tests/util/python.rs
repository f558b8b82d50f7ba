//! The Python venv `.ci/run` makes from `tests/readers/requirements.txt`: readers written by other
//! people (tifffile, openpyxl) that judge spheroseg's files. Found at `SPHEROSEG_READERS_PYTHON`
//! or the cache path `.ci/run` uses. Without it a test is skipped with a message, unless
//! `SPHEROSEG_REQUIRE_READERS` is set (CI sets it), when it fails.

use std::path::PathBuf;
use std::process::Command;

/// The venv's python, or `None` (after saying why) when it is absent outside CI.
pub fn readers() -> Option<PathBuf> {
    let python = std::env::var_os("SPHEROSEG_READERS_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/spheroseg-venv-readers/bin/python"))
        })
        .filter(|p| p.exists());
    if python.is_none() {
        assert!(
            std::env::var_os("SPHEROSEG_REQUIRE_READERS").is_none(),
            "SPHEROSEG_REQUIRE_READERS is set but the readers' venv is missing: run .ci/run"
        );
        eprintln!(
            "skipped: no readers' venv (make it as .ci/run does, or set SPHEROSEG_READERS_PYTHON)"
        );
    }
    python
}

/// Runs `script` with `args`; panics with its stderr when it fails. Returns its stdout.
pub fn run(python: &PathBuf, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}
