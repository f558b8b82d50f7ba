//! The client commands: `submit`, `status`, `jobs`, `export` and `healthcheck` against a running
//! spheroseg (`--server URL`, default the configured bind address; the token from
//! `SPHEROSEG_TOKEN` or `auth.token`). Text for people by default; `--json` prints the server's
//! JSON for scripts.

use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use super::Exit;
use crate::client::{
    ClientError, Disk, Finished, JobPage, JobRow, MlRow, QueueOverview, Server, Throughput,
};
use crate::config::Config;

/// Where the server is, and how to print its answers.
#[derive(Clone, Debug, Args, Default)]
pub struct ServerArgs {
    /// The running server's base URL (default: the configured bind address). The token, when
    /// the server has one, is read from SPHEROSEG_TOKEN or the configuration's auth.token.
    #[arg(long, visible_alias = "url", value_name = "URL")]
    pub server: Option<String>,
    /// Print the server's JSON instead of text, for scripts.
    #[arg(long)]
    pub json: bool,
}

impl ServerArgs {
    pub(super) fn server(&self, config: &Config) -> Server {
        let base = self
            .server
            .clone()
            .unwrap_or_else(|| super::page_link(config.bind));
        Server::new(&base, config.auth.token.clone())
    }
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Images (PNG, JPEG, TIFF, BMP), folders (every image in them, recursively) or quoted glob
    /// patterns.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// 1 (lowest) to 10 (highest).
    #[arg(long)]
    pub priority: Option<u8>,
    #[arg(long)]
    pub project: Option<String>,
    /// builtin, or a configured ML service.
    #[arg(long)]
    pub segmenter: Option<String>,
    /// Segmentation parameters as JSON, e.g. '{"min_area_fraction": 0.01}' (see `segment --help`).
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Tries per file (network errors and a busy server are tried again).
    #[arg(long, default_value_t = 5)]
    pub tries: u32,
    /// Follow every job to its end (a progress bar per file on a terminal), then print each
    /// one's objects and area; exit 1 if any job did not complete.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// One page of jobs, newest first (or in the state's order with --state).
    #[command(after_help = super::help::JOBS_LIST)]
    List {
        /// Only jobs in this state: queued, delayed, active, completed, failed, cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        project: Option<String>,
        /// Jobs on the page, 1 to 1000.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The page after the one that printed this cursor.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One job.
    #[command(after_help = super::help::JOBS_SHOW)]
    Show {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel jobs (a running one is stopped).
    #[command(after_help = super::help::JOBS_CANCEL)]
    Cancel {
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Put failed or cancelled jobs back in the queue.
    #[command(after_help = super::help::JOBS_RETRY)]
    Retry {
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// What `export` downloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One table as CSV (see --table).
    Csv,
    /// Both tables as an Excel workbook.
    Xlsx,
    /// The project archive: both tables, COCO, and per job its JSON, mask, labels, overlay, ROIs.
    Zip,
    /// COCO instance-segmentation JSON.
    Coco,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only jobs of this project (default: every project).
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// The file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// For csv: objects (one row per object), images (one row per image) or legacy.
    #[arg(long)]
    pub table: Option<String>,
    /// Only jobs in this state (default: completed).
    #[arg(long)]
    pub state: Option<String>,
    /// For zip: include the original images.
    #[arg(long)]
    pub originals: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn block_on<F: Future>(f: F) -> Result<F::Output, Exit> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(f))
}

fn failed(e: ClientError) -> Exit {
    Exit::Other(anyhow::anyhow!(e))
}

/// A query string value, percent-encoded.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Sends every file to the server, one at a time, each with its own Idempotency-Key; prints
/// each file's job (and with `--wait` its end), and fails (exit 1) if any file was not taken or
/// any job did not complete.
pub(super) fn submit(config: &Config, args: &SubmitArgs) -> Result<(), Exit> {
    let files = super::inputs::expand(&args.files, None).map_err(|e| anyhow::anyhow!(e))?;
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
    let server = args.server.server(config);
    let s = crate::client::Submit {
        base: server.base.clone(),
        token: server.token.clone(),
        fields,
        tries: args.tries,
        timeout: std::time::Duration::from_secs(300),
    };
    block_on(async {
        let since = if args.wait {
            Some(crate::client::last_event(&server).await.map_err(failed)?)
        } else {
            None
        };
        let mut failed_files = 0;
        let mut taken = Vec::new();
        let mut answers = Vec::new();
        for path in &files {
            let done = crate::client::submit_one(&s, path).await;
            match done.outcome {
                Ok(job) => {
                    let id = job["id"].as_str().unwrap_or_default().to_owned();
                    if !args.server.json && !args.wait {
                        println!(
                            "{}\t{id}\t{}{}",
                            done.path.display(),
                            job["state"].as_str().unwrap_or_default(),
                            if job["deduplicated"] == true {
                                " (the job it made before)"
                            } else {
                                ""
                            }
                        );
                    }
                    taken.push((done.path.display().to_string(), id));
                    answers.push(job);
                }
                Err(e) => {
                    failed_files += 1;
                    eprintln!("FAILED {}: {e}", done.path.display());
                }
            }
        }
        let Some(since) = since else {
            if args.server.json {
                println!("{}", serde_json::Value::Array(answers));
            }
            return partial(failed_files, files.len());
        };
        let draw = std::io::stderr().is_terminal() && !args.server.json;
        let finished = crate::client::follow(&server, taken, since, draw)
            .await
            .map_err(failed)?;
        let not_completed = finished.iter().filter(|f| !f.completed()).count();
        if args.server.json {
            let raws: Vec<&str> = finished
                .iter()
                .map(|f| f.raw.as_deref().unwrap_or("null"))
                .collect();
            println!("[{}]", raws.join(","));
        } else {
            print_results(&finished);
        }
        partial(failed_files + not_completed, files.len())
    })?
}

fn partial(failed: usize, total: usize) -> Result<(), Exit> {
    if failed > 0 {
        Err(Exit::Partial { failed, total })
    } else {
        Ok(())
    }
}

/// One line per job: file, job, state, objects and area (or why it failed); then the totals.
fn print_results(finished: &[Finished]) {
    let (mut objects, mut px, mut um, mut all_um) = (0u64, 0.0, 0.0, true);
    for f in finished {
        let Some(job) = &f.job else {
            println!("{}\t{}\tdeleted", f.label, f.id);
            continue;
        };
        match &f.result {
            Some(r) => {
                let (a, a_um) = r.area();
                objects += r.metrics.len() as u64;
                px += a;
                match a_um {
                    Some(x) => um += x,
                    None => all_um = false,
                }
                let area = a_um.map_or_else(|| format!("{a:.0} px²"), |x| format!("{x:.1} µm²"));
                println!(
                    "{}\t{}\t{}\t{} object(s)\tarea {area}",
                    f.label,
                    f.id,
                    job.state,
                    r.metrics.len()
                );
            }
            None => println!(
                "{}\t{}\t{}\t{}",
                f.label,
                f.id,
                job.state,
                job.error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .unwrap_or_default()
            ),
        }
    }
    let completed = finished.iter().filter(|f| f.completed()).count();
    let area = if all_um && completed > 0 {
        format!("{um:.1} µm²")
    } else {
        format!("{px:.0} px²")
    };
    println!(
        "{completed} of {} completed: {objects} object(s), area {area} in all",
        finished.len()
    );
}

fn mb(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

fn rates(t: &Throughput) -> String {
    format!(
        "{} in the last minute, {} in 5 min, {} in 15 min",
        t.last_1m, t.last_5m, t.last_15m
    )
}

/// The page's overview: `GET /api/queue`, `/api/ml` and `/api/system`.
pub(super) fn status(config: &Config, args: &ServerArgs) -> Result<(), Exit> {
    let server = args.server(config);
    let ((queue, q), (ml, m), (disk, s)) = block_on(async {
        Ok::<_, ClientError>((
            server.get::<QueueOverview>("/api/queue").await?,
            server.get::<Vec<MlRow>>("/api/ml").await?,
            server.get::<Disk>("/api/system").await?,
        ))
    })?
    .map_err(failed)?;
    if args.json {
        println!("{{\"queue\":{q},\"ml\":{m},\"system\":{s}}}");
        return Ok(());
    }
    let c = queue.counts;
    println!("server      {}", server.base);
    println!(
        "queue       {}",
        if queue.paused { "paused" } else { "running" }
    );
    println!(
        "jobs        queued {}, delayed {}, active {}, completed {}, failed {}, cancelled {}",
        c.queued, c.delayed, c.active, c.completed, c.failed, c.cancelled
    );
    println!(
        "oldest      {}",
        queue.oldest_queued_ms.map_or_else(
            || "none waiting".to_owned(),
            |ms| format!("waiting {} s", ms / 1000)
        )
    );
    println!(
        "workers     {} of {} busy",
        queue.workers_busy, queue.workers_total
    );
    println!("completed   {}", rates(&queue.completed));
    println!("failed      {}", rates(&queue.failed));
    if ml.is_empty() {
        println!("ML services none (builtin segmenter only)");
    }
    for svc in &ml {
        println!(
            "ML service  {} ({}): breaker {}",
            svc.name, svc.target, svc.breaker.state
        );
    }
    println!(
        "disk        {} free of {} on {}{}{}",
        mb(disk.disk_available_bytes),
        mb(disk.disk_total_bytes),
        disk.disk_mount.as_deref().unwrap_or("?"),
        disk.disk_fs_type
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default(),
        if disk.disk_low {
            ": LOW, new images are refused"
        } else {
            ""
        }
    );
    println!("database    {}", mb(queue.database_bytes));
    Ok(())
}

fn job_line(j: &JobRow) -> String {
    let end = match (&j.error, j.objects) {
        (Some(e), _) if j.state != "completed" => format!("{}: {}", e.code, e.message),
        (_, Some(n)) => format!("{n} object(s)"),
        _ => String::new(),
    };
    format!(
        "{}\t{}\t{}\t{}%\t{}\t{}\t{end}",
        j.id,
        j.state,
        j.priority,
        j.progress,
        j.project.as_deref().unwrap_or("-"),
        j.image.name
    )
}

pub(super) fn jobs(config: &Config, action: &JobsAction) -> Result<(), Exit> {
    match action {
        JobsAction::List {
            state,
            project,
            limit,
            cursor,
            server,
        } => {
            let path = format!(
                "/api/jobs{}",
                query(&[
                    ("state", state.clone()),
                    ("project", project.clone()),
                    ("limit", Some(limit.to_string())),
                    ("cursor", cursor.clone()),
                ])
            );
            let (page, raw) =
                block_on(server.server(config).get::<JobPage>(&path))?.map_err(failed)?;
            if server.json {
                println!("{raw}");
                return Ok(());
            }
            println!("ID\tSTATE\tPRIORITY\tPROGRESS\tPROJECT\tIMAGE\tRESULT");
            for j in &page.jobs {
                println!("{}", job_line(j));
            }
            if let Some(next) = page.next {
                eprintln!("more jobs: add --cursor {next}");
            }
            Ok(())
        }
        JobsAction::Show { id, server } => {
            let (j, raw) = block_on(
                server
                    .server(config)
                    .get::<JobRow>(&format!("/api/jobs/{}", encode(id))),
            )?
            .map_err(failed)?;
            if server.json {
                println!("{raw}");
                return Ok(());
            }
            println!("job         {}", j.id);
            println!(
                "state       {} (attempt {} of {})",
                j.state, j.attempts, j.max_attempts
            );
            println!("priority    {}", j.priority);
            println!("progress    {}%", j.progress);
            println!("project     {}", j.project.as_deref().unwrap_or("-"));
            println!(
                "image       {} ({} x {})",
                j.image.name, j.image.width, j.image.height
            );
            println!("segmenter   {}", j.segmenter);
            if let Some(n) = j.objects {
                println!("objects     {n}");
            }
            if let Some(e) = &j.error {
                println!("error       {}: {}", e.code, e.message);
            }
            Ok(())
        }
        JobsAction::Cancel { ids, server } => each(config, server, ids, "DELETE", ""),
        JobsAction::Retry { ids, server } => each(config, server, ids, "POST", "/retry"),
    }
}

/// Sends `method /api/jobs/{id}{suffix}` for every id; prints each job's new state.
fn each(
    config: &Config,
    args: &ServerArgs,
    ids: &[String],
    method: &str,
    suffix: &str,
) -> Result<(), Exit> {
    let server = args.server(config);
    let mut failed_ids = 0;
    let mut raws = Vec::new();
    block_on(async {
        for id in ids {
            let path = format!("/api/jobs/{}{suffix}", encode(id));
            match server.send(method, &path, None).await {
                Ok(raw) => {
                    if !args.json {
                        let state = serde_json::from_str::<JobRow>(&raw)
                            .map_or_else(|_| "?".to_owned(), |j| j.state);
                        println!("{id}\t{state}");
                    }
                    raws.push(raw);
                }
                Err(e) => {
                    failed_ids += 1;
                    eprintln!("FAILED {id}: {e}");
                }
            }
        }
    })?;
    if args.json {
        println!("[{}]", raws.join(","));
    }
    partial(failed_ids, ids.len())
}

/// Streams `GET /api/export` into the file (through a temp name beside it, renamed when whole).
pub(super) fn export(config: &Config, args: &ExportArgs) -> Result<(), Exit> {
    let format = match args.format {
        ExportFormat::Csv => "csv",
        ExportFormat::Xlsx => "xlsx",
        ExportFormat::Zip => "zip",
        ExportFormat::Coco => "coco",
    };
    let path = format!(
        "/api/export{}",
        query(&[
            ("format", Some(format.to_owned())),
            ("project", args.project.clone()),
            ("state", args.state.clone()),
            ("table", args.table.clone()),
            ("originals", args.originals.then(|| "true".to_owned())),
        ])
    );
    let mut part = args.output.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let server = args.server.server(config);
    let got = block_on(server.download("GET", &path, None, &part))?;
    if let Err(e) = got {
        let _ = std::fs::remove_file(&part);
        return Err(failed(e));
    }
    std::fs::rename(&part, &args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let bytes = std::fs::metadata(&args.output).map_or(0, |m| m.len());
    if args.server.json {
        println!(
            "{}",
            serde_json::json!({"file": args.output, "format": format, "bytes": bytes})
        );
    } else {
        println!("{}: {format}, {bytes} bytes", args.output.display());
    }
    Ok(())
}

/// GETs a health route; 200 is success, anything else (or no answer in 5 s) is exit code 1.
pub(super) fn healthcheck(config: &Config, args: &ServerArgs, path: &str) -> Result<(), Exit> {
    let server = args.server(config);
    let url = server.url(path);
    let (status, body) = block_on(crate::segment::http::get(
        &url,
        server.token.as_deref(),
        std::time::Duration::from_secs(5),
    ))?
    .map_err(|e| Exit::Other(anyhow::anyhow!(e)))?;
    if args.json {
        println!("{body}");
    } else {
        println!("{status} {body}");
    }
    if status == 200 {
        Ok(())
    } else {
        Err(Exit::Other(anyhow::anyhow!("{url} answered {status}")))
    }
}
