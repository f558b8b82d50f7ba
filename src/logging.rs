//! How spheroseg logs, to stderr. The filter comes from `SPHEROSEG_LOG` (or `RUST_LOG`), default
//! `info`: lifecycle and each job's final state, while every HTTP request is at `debug`. The
//! format comes from `SPHEROSEG_LOG_FORMAT`: `text` (the default; colours on a terminal, and no
//! timestamp when stderr is the systemd journal, which stamps each line itself) or `json` (one
//! object per line, with timestamp, level, target and fields, for log shippers).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// `SPHEROSEG_LOG_FORMAT`: `text` (or unset) or `json`.
    pub fn from_env() -> Result<Format, String> {
        match std::env::var("SPHEROSEG_LOG_FORMAT") {
            Err(_) => Ok(Format::Text),
            Ok(v) => match v.to_ascii_lowercase().as_str() {
                "" | "text" => Ok(Format::Text),
                "json" => Ok(Format::Json),
                _ => Err(format!(
                    "SPHEROSEG_LOG_FORMAT = {v:?} is not a log format: use text or json"
                )),
            },
        }
    }
}

/// Installs the global subscriber; an error names the bad setting (exit code 2).
pub fn init() -> Result<(), String> {
    let format = Format::from_env()?;
    let filter = EnvFilter::try_from_env("SPHEROSEG_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Format::Json => builder.json().init(),
        Format::Text if to_journal() => builder.with_ansi(false).without_time().init(),
        Format::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    Ok(())
}

/// Whether stderr is the systemd journal: `JOURNAL_STREAM` names its device and inode (a child
/// that inherited the variable but writes elsewhere does not match).
fn to_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", stat.st_dev, stat.st_ino)
}
