//! spheroseg: segment brightfield spheroid images on a durable local job queue.
//!
//! - `config`: one validated `Config` from defaults, `spheroseg.toml`, environment and flags
//! - `app`: wiring of the parts and the shutdown order
//! - `cli`: the command-line interface (clap)
//! - `queue`: the durable priority queue on redb (model, store, writer thread)
//! - `segment`: segmentation parameters (segmenters arrive with #3 and #4)
//! - `clock`: injected time for leases, backoff and aging

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod queue;
pub mod segment;
