//! The command line (clap derive): what each subcommand parses and which library call it makes.
//! Each flag sits on the subcommands it changes: `--data-dir` on those that open a data
//! directory, `--bind` on `serve`, `--workers` on those that run the segmenter, `--server` and
//! `--json` on the client commands; only `--config` is global.
//!
//! - `cli/help`: the examples of every subcommand and `segment`'s list of parameters
//! - `cli/inputs`: files, folders and globs as one list of image files
//! - `cli/segment`: `segment`, offline
//! - `cli/remote`: `submit`, `status`, `jobs`, `export`: the client of a running server
//! - `cli/db`: `db backup` and `db check`

mod db;
mod help;
mod inputs;
mod remote;
mod segment;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{Config, DEFAULT_TOML, Layer, Sources};
use crate::queue::QueueError;

pub use db::{CheckArgs, DbAction, DbBackupArgs};
pub use remote::{ExportArgs, JobsAction, ServerArgs, SubmitArgs};
pub use segment::{Format, SegmentArgs};

#[derive(Debug, Parser)]
#[command(name = "spheroseg", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args, Default)]
pub struct Common {
    /// Configuration file (default: ./spheroseg.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `--data-dir`, for the commands that open a data directory.
#[derive(Clone, Debug, Args, Default)]
pub struct DataDirArg {
    /// Data directory holding the database and the images.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `--workers`, for the commands that run the segmenter.
#[derive(Clone, Debug, Args, Default)]
pub struct WorkersArg {
    /// Number of worker threads (default: the available cores).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the queue, the workers, the HTTP API and the status page until SIGTERM or Ctrl-C.
    #[command(after_help = help::SERVE)]
    Serve(ServeArgs),
    /// Segment image files or folders offline (no server) and write JSON, masks, tables, COCO
    /// and ROI sets.
    Segment(SegmentArgs),
    /// Send image files (or every image in a folder) to a running spheroseg, one job each; a
    /// request that gets no answer is sent again with the same Idempotency-Key, so it never
    /// makes a second job.
    #[command(after_help = help::SUBMIT)]
    Submit(SubmitArgs),
    /// A running spheroseg's overview: jobs per state, throughput, workers, ML services, disk.
    #[command(after_help = help::STATUS)]
    Status {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List, show, cancel and retry the jobs of a running spheroseg.
    #[command(after_help = help::JOBS)]
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Download a running spheroseg's results as CSV, XLSX or the project ZIP.
    #[command(after_help = help::EXPORT)]
    Export(ExportArgs),
    /// Back up or check a data directory.
    #[command(after_help = help::DB)]
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Ask a running spheroseg whether it is healthy (exit 0) or not (exit 1), for systemd and
    /// containers.
    #[command(after_help = help::HEALTHCHECK)]
    Healthcheck {
        #[command(flatten)]
        server: ServerArgs,
        /// Check readiness (accepting work) instead of health.
        #[arg(long)]
        ready: bool,
    },
    /// Write synthetic spheroid images (8-bit PNG, 16-bit TIFF) with their truth masks.
    #[command(after_help = help::DEMO_IMAGES)]
    DemoImages {
        /// Where to write them.
        dir: PathBuf,
        /// Width and height in pixels.
        #[arg(long, default_value_t = 1024)]
        size: u32,
        /// Images per kind (plain, lumen, necrotic core) and bit depth.
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
    /// Print the default configuration file or the effective configuration.
    #[command(after_help = help::CONFIG)]
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Address to serve on, e.g. 127.0.0.1:5001.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    #[command(flatten)]
    pub workers: WorkersArg,
    /// Also watch this folder (repeatable): its images are taken by themselves, once complete,
    /// and their results written to spheroseg-results/ inside it. The same as a [[watch]]
    /// entry with only `path`.
    #[arg(long = "watch", value_name = "DIR")]
    pub watch: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print a commented spheroseg.toml with every default.
    #[command(after_help = help::CONFIG_DEFAULT)]
    Default,
    /// Print the configuration in effect after file, environment and flags.
    #[command(after_help = help::CONFIG_SHOW)]
    Show(ServeArgs),
}

/// A failure the CLI reports with its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum Exit {
    /// Bad configuration: one line, exit code 2.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Some inputs of a batch failed (each was reported): exit code 1.
    #[error("{failed} of {total} files failed")]
    Partial { failed: usize, total: usize },
    /// A check found problems (each was reported): exit code 1.
    #[error("{0}")]
    Problems(String),
    /// The database cannot be used (damaged, or written by a newer spheroseg): one line saying
    /// what to do, exit code 2.
    #[error(transparent)]
    Database(crate::queue::QueueError),
    /// Anything else: the cause chain, exit code 1.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Exit {
    pub fn code(&self) -> i32 {
        match self {
            Exit::Config(_) | Exit::Database(_) => 2,
            Exit::Partial { .. } | Exit::Problems(_) | Exit::Other(_) => 1,
        }
    }
}

/// The command line's definition, with the help texts made at run time (`segment`'s
/// parameters, from the same source as the page's form).
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("segment", |c| c.after_help(help::segment()))
}

/// Parses the process's arguments (exits with clap's message and code on a bad one).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

impl Cli {
    /// Loads the configuration from every source, this command line's flags on top.
    pub fn load_config(&self, env: HashMap<String, String>) -> Result<Config, Exit> {
        let mut flags = Layer::default();
        let serve = match &self.command {
            Command::Serve(a)
            | Command::Config {
                action: ConfigAction::Show(a),
            } => Some(a),
            _ => None,
        };
        if let Some(a) = serve {
            flags.data_dir = a.data_dir.data_dir.clone();
            flags.bind = a.bind.clone();
            flags.workers = a.workers.workers;
            if !a.watch.is_empty() {
                flags.watch = Some(
                    a.watch
                        .iter()
                        .cloned()
                        .map(crate::config::WatchLayer::folder)
                        .collect(),
                );
            }
        }
        match &self.command {
            Command::Segment(a) => flags.workers = a.workers.workers,
            Command::Db {
                action: DbAction::Backup(a),
            } => flags.data_dir = a.data_dir.data_dir.clone(),
            Command::Db {
                action: DbAction::Check(a),
            } => flags.data_dir = a.data_dir.data_dir.clone(),
            _ => {}
        }
        Ok(Config::load(&Sources {
            file: self.common.config.clone(),
            env,
            flags,
        })?)
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), Exit> {
    let env: HashMap<String, String> = std::env::vars().collect();
    match &cli.command {
        Command::Config {
            action: ConfigAction::Default,
        } => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Command::Config {
            action: ConfigAction::Show(_),
        } => {
            let config = cli.load_config(env)?;
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Segment(args) => segment::run(&cli, args, env),
        Command::Submit(args) => remote::submit(&cli.load_config(env)?, args),
        Command::Status { server } => remote::status(&cli.load_config(env)?, server),
        Command::Jobs { action } => remote::jobs(&cli.load_config(env)?, action),
        Command::Export(args) => remote::export(&cli.load_config(env)?, args),
        Command::Db { action } => db::run(&cli.load_config(env)?, action),
        Command::Healthcheck { server, ready } => {
            let config = cli.load_config(env)?;
            let path = if *ready {
                "/api/health/ready"
            } else {
                "/api/health"
            };
            remote::healthcheck(&config, server, path)
        }
        Command::DemoImages { dir, size, count } => {
            let written = crate::offline::demo_images(dir, *size, *count)?;
            for p in written {
                println!("{}", p.display());
            }
            Ok(())
        }
        Command::Serve(_) => serve(&cli, env),
    }
}

fn serve(cli: &Cli, env: HashMap<String, String>) -> Result<(), Exit> {
    let ignored = Config::ignored_env(&env);
    let config = cli.load_config(env)?;
    if !ignored.is_empty() {
        tracing::info!(
            variables = ?ignored,
            "ignoring settings of the replaced deployment: spheroseg keeps its queue and data in its own data directory"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spheroseg-io")
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(async {
            let listener = crate::app::bind(&config).await?;
            if let Ok(addr) = listener.local_addr() {
                // Besides the log, for the person who started it: a link a terminal can open.
                println!("spheroseg: the status page is at {}", page_link(addr));
            }
            let signal = crate::app::shutdown_signal();
            crate::app::run(config, listener, signal).await
        })
        .map_err(|e| match e.downcast::<QueueError>() {
            Ok(q @ (QueueError::Corrupt { .. } | QueueError::NewerSchema { .. })) => {
                Exit::Database(q)
            }
            Ok(q) => Exit::Other(q.into()),
            Err(e) => Exit::Other(e),
        })?;
    Ok(())
}

/// The page's address for a browser on this machine: a server bound to every address
/// (`0.0.0.0`) is reached at 127.0.0.1.
pub fn page_link(addr: std::net::SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}/", addr.port())
}
