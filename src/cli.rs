//! The command line (clap derive): what each subcommand parses and which library call it makes.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, DEFAULT_TOML, Layer, Sources};
use crate::offline::{self, Batch, Formats, Outcome};
use crate::queue::QueueError;
use crate::segment::SegmentParams;

#[derive(Debug, Parser)]
#[command(name = "spheroseg", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts; they override the file and the environment.
#[derive(Debug, Args, Default)]
pub struct Common {
    /// Configuration file (default: ./spheroseg.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory holding the database and the images.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve on, e.g. 127.0.0.1:5001.
    #[arg(long, global = true, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Number of worker threads.
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the queue, the workers, the HTTP API and the status page until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Segment image files offline (no server) and write JSON, masks, tables, COCO and ROI sets.
    Segment(SegmentArgs),
    /// Send image files to a running spheroseg, one job each; a request that gets no answer is
    /// sent again with the same Idempotency-Key, so it never makes a second job.
    Submit(SubmitArgs),
    /// Ask a running spheroseg whether it is healthy (exit 0) or not (exit 1), for systemd and
    /// containers.
    Healthcheck {
        /// Base URL; default: the configured bind address.
        #[arg(long)]
        url: Option<String>,
        /// Check readiness (accepting work) instead of health.
        #[arg(long)]
        ready: bool,
    },
    /// Write synthetic spheroid images (8-bit PNG, 16-bit TIFF) with their truth masks.
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
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Also watch this folder (repeatable): its images are taken by themselves, once complete,
    /// and their results written to spheroseg-results/ inside it. The same as a [[watch]]
    /// entry with only `path`.
    #[arg(long = "watch", value_name = "DIR")]
    pub watch: Vec<PathBuf>,
}

/// What `segment` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `NAME.spheroseg.json`: outlines, metrics, parameters.
    Json,
    /// `objects.csv` and `images.csv`, units in the headers.
    Csv,
    /// `metrics.csv` in the replaced design's 16 columns.
    LegacyCsv,
    /// `NAME_mask.png`, 0/255.
    Mask,
    /// `results.xlsx`, sheets objects and images.
    Xlsx,
    /// `coco.json`, COCO instance segmentation of the batch.
    Coco,
    /// `NAME_rois.zip`, an ImageJ ROI set.
    Roi,
    /// `NAME_labels.png`, a 16-bit label image.
    Labels,
    /// `NAME_overlay.png`, numbered outlines on the image.
    Overlay,
}

#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// Images: PNG, JPEG, TIFF (8/16-bit) or BMP.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "spheroseg-out", value_name = "DIR")]
    pub out: PathBuf,
    /// Outputs, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "json,csv,mask"
    )]
    pub format: Vec<Format>,
    /// Pixel size in micrometres, for metrics in µm.
    #[arg(long, value_name = "X")]
    pub pixel_size_um: Option<f32>,
    /// Segmentation parameters as JSON, e.g. '{"min_area_fraction": 0.01}'.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Images: PNG, JPEG, TIFF or BMP.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Base URL of the server; default: the configured bind address.
    #[arg(long)]
    pub url: Option<String>,
    /// 1 (lowest) to 10 (highest).
    #[arg(long)]
    pub priority: Option<u8>,
    #[arg(long)]
    pub project: Option<String>,
    /// builtin, or a configured ML service.
    #[arg(long)]
    pub segmenter: Option<String>,
    /// Segmentation parameters as JSON, e.g. '{"min_area_fraction": 0.01}'.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Tries per file (network errors and a busy server are tried again).
    #[arg(long, default_value_t = 5)]
    pub tries: u32,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print a commented spheroseg.toml with every default.
    Default,
    /// Print the configuration in effect after file, environment and flags.
    Show,
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
            Exit::Partial { .. } | Exit::Other(_) => 1,
        }
    }
}

impl Cli {
    /// Loads the configuration from every source, this command line's flags on top.
    pub fn load_config(&self, env: HashMap<String, String>) -> Result<Config, Exit> {
        let watch = match &self.command {
            Command::Serve(a) if !a.watch.is_empty() => Some(
                a.watch
                    .iter()
                    .cloned()
                    .map(crate::config::WatchLayer::folder)
                    .collect(),
            ),
            _ => None,
        };
        let flags = Layer {
            data_dir: self.common.data_dir.clone(),
            bind: self.common.bind.clone(),
            workers: self.common.workers,
            watch,
            ..Layer::default()
        };
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
            action: ConfigAction::Show,
        } => {
            let config = cli.load_config(env)?;
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Segment(args) => segment(&cli, args, env),
        Command::Submit(args) => submit(&cli, args, env),
        Command::Healthcheck { url, ready } => {
            let config = cli.load_config(env)?;
            let base = url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.bind));
            let path = if *ready {
                "/api/health/ready"
            } else {
                "/api/health"
            };
            healthcheck(
                &format!("{}{path}", base.trim_end_matches('/')),
                config.auth.token.as_deref(),
            )
        }
        Command::DemoImages { dir, size, count } => {
            let written = offline::demo_images(dir, *size, *count)?;
            for p in written {
                println!("{}", p.display());
            }
            Ok(())
        }
        Command::Serve(_) => {
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
                    let signal = crate::app::shutdown_signal();
                    crate::app::serve(config, signal).await
                })
                .map_err(|e| match e.downcast::<crate::queue::QueueError>() {
                    Ok(q @ (QueueError::Corrupt { .. } | QueueError::NewerSchema { .. })) => {
                        Exit::Database(q)
                    }
                    Ok(q) => Exit::Other(q.into()),
                    Err(e) => Exit::Other(e),
                })?;
            Ok(())
        }
    }
}

fn segment(cli: &Cli, args: &SegmentArgs, env: HashMap<String, String>) -> Result<(), Exit> {
    let config = cli.load_config(env)?;
    let mut params: SegmentParams = match &args.params {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("--params is not valid segmentation parameters: {e}"))?,
        None => SegmentParams::default(),
    };
    if args.pixel_size_um.is_some() {
        params.pixel_size_um = args.pixel_size_um;
    }
    params.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let batch = Batch {
        files: args.files.clone(),
        out: args.out.clone(),
        formats: Formats {
            json: args.format.contains(&Format::Json),
            csv: args.format.contains(&Format::Csv),
            legacy_csv: args.format.contains(&Format::LegacyCsv),
            mask: args.format.contains(&Format::Mask),
            xlsx: args.format.contains(&Format::Xlsx),
            coco: args.format.contains(&Format::Coco),
            roi: args.format.contains(&Format::Roi),
            labels: args.format.contains(&Format::Labels),
            overlay: args.format.contains(&Format::Overlay),
        },
        params,
        workers: config.workers.min(args.files.len()).max(1),
        limits: config.decode_limits(),
    };
    let total = batch.files.len();
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                .expect("valid progress template"),
        );
        bar
    });
    let mut failed = 0;
    let mut report = |o: &Outcome| {
        let line = match &o.result {
            Ok(r) => format!(
                "ok     {}: {} object(s), {:.0} ms{}",
                o.path.display(),
                r.objects.len(),
                o.millis,
                if r.image.pages > 1 {
                    format!(" (segmented the first of {} pages)", r.image.pages)
                } else {
                    String::new()
                }
            ),
            Err(reason) => {
                failed += 1;
                format!("FAILED {}: {reason}", o.path.display())
            }
        };
        match &bar {
            Some(bar) => {
                if o.result.is_err() {
                    bar.println(&line);
                }
                bar.inc(1);
            }
            None if o.result.is_err() => eprintln!("{line}"),
            None => println!("{line}"),
        }
    };
    offline::run(&batch, &mut report)?;
    if let Some(bar) = bar {
        bar.finish_with_message(format!("written to {}", batch.out.display()));
    }
    if failed > 0 {
        return Err(Exit::Partial { failed, total });
    }
    Ok(())
}

/// Sends every file to the server, one at a time, each with its own Idempotency-Key; prints
/// each file's job, and fails (exit 1) if any file was not taken.
fn submit(cli: &Cli, args: &SubmitArgs, env: HashMap<String, String>) -> Result<(), Exit> {
    let config = cli.load_config(env)?;
    let mut fields: Vec<(&'static str, String)> = Vec::new();
    if let Some(p) = args.priority {
        fields.push(("priority", p.to_string()));
    }
    for (name, v) in [
        ("project", &args.project),
        ("segmenter", &args.segmenter),
        ("params", &args.params),
    ] {
        if let Some(v) = v {
            fields.push((name, v.clone()));
        }
    }
    let s = crate::client::Submit {
        base: args
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.bind)),
        token: config.auth.token.clone(),
        fields,
        tries: args.tries,
        timeout: std::time::Duration::from_secs(300),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut failed = 0;
    for path in &args.files {
        let done = runtime.block_on(crate::client::submit_one(&s, path));
        match &done.outcome {
            Ok(job) => println!(
                "{}\t{}\t{}{}",
                done.path.display(),
                job["id"].as_str().unwrap_or_default(),
                job["state"].as_str().unwrap_or_default(),
                if job["deduplicated"] == true {
                    " (the job it made before)"
                } else {
                    ""
                }
            ),
            Err(e) => {
                failed += 1;
                eprintln!("FAILED {}: {e}", done.path.display());
            }
        }
    }
    if failed > 0 {
        return Err(Exit::Partial {
            failed,
            total: args.files.len(),
        });
    }
    Ok(())
}

/// GETs `url`; 200 is success, anything else (or no answer in 5 s) is exit code 1.
fn healthcheck(url: &str, token: Option<&str>) -> Result<(), Exit> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (status, body) = runtime
        .block_on(crate::segment::http::get(
            url,
            token,
            std::time::Duration::from_secs(5),
        ))
        .map_err(|e| Exit::Other(anyhow::anyhow!(e)))?;
    println!("{status} {body}");
    if status == 200 {
        Ok(())
    } else {
        Err(Exit::Other(anyhow::anyhow!("{url} answered {status}")))
    }
}
