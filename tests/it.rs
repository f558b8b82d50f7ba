//! The integration tests, one binary (ripgrep's layout): each module is one area.

mod util;

/// The binary: help, configuration commands, serve and SIGTERM.
mod cli;
/// The CLI against a running server: submit --wait, status, jobs, export, db backup and check.
mod client;
/// SIGKILL a child process in the middle of work and check that nothing acknowledged is lost.
mod crash;
/// A full disk: commands refused with disk-full, the queue going on once there is room.
mod disk;
/// The inputs the fuzz targets found, with each target's checks, on the stable toolchain.
mod fuzz_regressions;
/// The HTTP API: every route and error status, auth, and serve over TCP with the WebSocket.
mod http;
/// The source's layering: no import circle between the top-level modules of src/.
mod layers;
/// What `serve` logs at the default level, and its JSON lines.
mod logging;
/// The http segmenter against a stub ML service that fails on cue.
mod ml_http;
/// ML outages and wedging programs: no job fails, no attempt is spent, no worker is lost.
mod outage;
/// Who may publish job events, read from the source: only the queue's commits.
mod owners;
/// The job pipeline in process: dispatcher, workers, events, breaker, shutdown.
mod pool;
/// Random operation sequences against an in-memory model of the queue.
mod queue_model;
/// Our files against readers nobody here wrote (tifffile, openpyxl, Python's csv), in a venv.
mod readers;
/// The builtin segmenter: accuracy on synthetic truth, and `spheroseg segment` on fixtures.
mod segment;
/// `serve` speaking systemd's notify protocol: READY, STATUS, watchdog pings, STOPPING.
mod systemd;
/// Watched folders: files taken once complete, exactly once, results written beside them.
mod watch;
