//! spheroseg: segment brightfield spheroid images on a durable local job queue.
//!
//! - `config`: one validated `Config` from defaults, `spheroseg.toml`, environment and flags
//! - `app`: wiring of the parts and the shutdown order
//! - `backup`: `db backup`: a data directory copied as of one moment, with its manifest
//! - `cli`: the command-line interface (clap)
//! - `client`: `spheroseg submit`, uploads to a running server that retry with an Idempotency-Key
//! - `queue`: the durable priority queue on redb; announces what it commits, wakes the dispatcher
//! - `pool`: the dispatcher task and the worker threads that run jobs
//! - `service`: the one door for commands from every interface: check, store images, commit
//! - `segment`: the segmenters (builtin, command, http), the circuit breaker, decoding, results
//! - `outline`: objects as polygons, and the replaced ML service's polygon list
//! - `morphology`: metrics of objects from their polygons; masks from polygons
//! - `export`: metrics CSV, result JSON, mask PNG
//! - `images`: original images stored by content hash, and their garbage collection
//! - `offline`: `spheroseg segment` on a thread pool, and `spheroseg demo-images`
//! - `synth`: synthetic spheroid images with known truth (tests, benches, demo images)
//! - `view`: a job and a watched folder as the API and the events show them
//! - `watch`: watched folders: files taken once complete, exactly once, results written beside
//! - `events`: numbered events in a ring buffer, broadcast to live subscribers, made from commits
//! - `http`: the HTTP API, WebSocket, health endpoints and the embedded status page (axum)
//! - `logging`: the log filter and format (text, or JSON for log shippers) on stderr
//! - `telemetry`: the Prometheus recorder and the machine's CPU, memory and disk
//! - `systemd`: the notify protocol: ready, stopping, the status line, the watchdog's pings
//! - `liveness`: signs of life of the loops the watchdog checks
//! - `disk`: the data directory's file system: free space, the low-water mark, refused writes
//! - `fsio`: the durable file operations behind a trait, and the simulated disk of the power-loss tests
//! - `clock`: injected time for leases, backoff and aging
//! - `error_code`: every stable kebab-case error code, as constants
//! - `heap`: the C allocator made to keep freed memory for the next image
//! - `contain`: a panic of code we call (the storage engine on a damaged file) as an error
//! - `fuzzing`: entry points for the fuzz targets in `fuzz/` (hidden, not an API)

pub mod app;
pub mod backup;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod contain;
pub mod disk;
pub mod error_code;
pub mod events;
pub mod export;
mod fsio;
#[doc(hidden)]
pub mod fuzzing;
mod heap;
pub mod http;
pub mod images;
pub mod liveness;
pub mod logging;
pub mod morphology;
pub mod offline;
pub mod outline;
pub mod pool;
pub mod queue;
pub mod segment;
pub mod service;
pub mod synth;
mod systemd;
pub mod telemetry;
pub mod view;
pub mod watch;
