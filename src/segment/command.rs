//! The `command` segmenter: a local ML program run once per image, such as the replaced system's
//! ResUNet script (ML-CONTRACT.md).
//!
//! The configured argv is run directly (never through a shell) with `{input}`, `{output_dir}` and
//! `{output_json}` replaced. The program writes its JSON result to `{output_json}`: `polygons` on
//! success, `success: false` with `error` and `error_type` on failure. Exit codes: 0 ok, 1 unreadable
//! input (permanent), 2 general error, 3 out of GPU memory, 4 GPU or runtime error (all transient),
//! any other code transient. On timeout or cancel the program's process group gets SIGTERM, then
//! SIGKILL after a grace; whatever the program left running, in its group or out of it, is killed
//! when it ends ([`reap`]). Every process of a run has `SPHEROSEG_RUN` in its environment. The last
//! lines of its stderr go into the job's error.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Control, Failure, Input, SegmentResult, Segmenter, result_from_polygons};
use crate::error_code::ErrorCode;
use crate::outline::Polygon;

mod reap;
use reap::{Marker, ensure_subreaper, stop_group};

/// Lines of stderr kept for the error message.
const STDERR_LINES: usize = 8;
/// The largest result file read.
const MAX_RESULT_BYTES: u64 = 64 << 20;
/// Between SIGTERM to a program's process group and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long stderr is read after the program ended.
const STDERR_DRAIN: Duration = Duration::from_millis(500);
/// How long the processes a program left behind are hunted after it ended.
const LEFTOVER_DEADLINE: Duration = Duration::from_secs(2);
/// The environment variable that marks every process of one run.
pub const MARKER_VAR: &str = "SPHEROSEG_RUN";

/// A configured local program.
#[derive(Clone, Debug)]
pub struct CommandSegmenter {
    pub name: String,
    pub argv: Vec<String>,
    /// Where each run gets its own working directory.
    pub work_dir: PathBuf,
}

/// The program's result JSON.
#[derive(Deserialize)]
pub(crate) struct Reply {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    polygons: Option<Vec<Polygon>>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_type: Option<String>,
}

fn extension(format: &str) -> &'static str {
    match format {
        "PNG" => "png",
        "JPEG" => "jpg",
        "TIFF" => "tif",
        "BMP" => "bmp",
        _ => "img",
    }
}

impl CommandSegmenter {
    fn run(
        &self,
        input: &Input<'_>,
        control: &mut Control<'_>,
        dir: &Path,
    ) -> Result<SegmentResult, Failure> {
        let start = Instant::now();
        // The program sees a file with the extension its format has (some tools look at it).
        let format = super::decode::probe(input.bytes, input.limits)
            .map(|h| h.format)
            .unwrap_or("image");
        // A private copy (a reflink where the file system has them): the program may write to
        // its input, but never to the stored original.
        let image = dir.join(format!("input.{}", extension(format)));
        if std::fs::copy(input.path, &image).is_err() {
            std::fs::write(&image, input.bytes).map_err(|e| {
                Failure::transient(
                    ErrorCode::COMMAND_IO,
                    format!("cannot prepare the input: {e}"),
                )
            })?;
        }
        let out_dir = dir.join("out");
        std::fs::create_dir_all(&out_dir).map_err(|e| {
            Failure::transient(
                ErrorCode::COMMAND_IO,
                format!("cannot prepare the output: {e}"),
            )
        })?;
        let out_json = out_dir.join("result.json");
        let fill = |arg: &str| {
            arg.replace("{input}", &image.to_string_lossy())
                .replace("{output_dir}", &out_dir.to_string_lossy())
                .replace("{output_json}", &out_json.to_string_lossy())
        };
        let (program, args) = self.argv.split_first().ok_or_else(|| {
            Failure::permanent(ErrorCode::COMMAND_CONFIG, "the command's argv is empty")
        })?;
        ensure_subreaper();
        let marker = Marker::next();
        let mut child = Process::new(fill(program))
            .args(args.iter().map(|a| fill(a)))
            // Its own process group, so a signal reaches whatever the program started too; and a
            // mark in its environment, inherited by every descendant, for those that leave it.
            .process_group(0)
            .env(MARKER_VAR, &marker.value)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Failure::unavailable(
                    ErrorCode::COMMAND_SPAWN,
                    format!("cannot start {program}: {e}"),
                    None,
                )
            })?;
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        // The reader says it is done by dropping its sender; a pipe held open by a process that
        // escaped every kill is left to its (detached) reader rather than waited for.
        let (done, drained) = std::sync::mpsc::channel::<()>();
        if let Some(err) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || {
                let _done = done;
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut t = tail.lock().expect("stderr tail lock");
                    if t.len() == STDERR_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        let group = rustix::process::Pid::from_child(&child);
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| Failure::transient(ErrorCode::COMMAND_WAIT, e.to_string()))?
            {
                break Some(status);
            }
            if control.stop.stopped() || Instant::now() >= control.deadline {
                stop_group(&mut child, group);
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Anything the program left running would hold stderr open (and the GPU): end it too.
        marker.end_leftovers(group);
        let _ = drained.recv_timeout(STDERR_DRAIN);
        let stderr = tail
            .lock()
            .expect("stderr tail lock")
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        let with_stderr = |msg: String| {
            if stderr.is_empty() {
                msg
            } else {
                format!("{msg}; stderr: {stderr}")
            }
        };
        let Some(status) = status else {
            if control.stop.stopped() {
                return Err(Failure::Stopped);
            }
            return Err(Failure::transient(
                ErrorCode::TIMEOUT,
                with_stderr(format!("{} ran out of time and was killed", self.name)),
            ));
        };
        let reply = read_reply(&out_json);
        match status.code() {
            Some(0) => {}
            Some(1) => {
                return Err(Failure::permanent(
                    ErrorCode::UNREADABLE_INPUT,
                    with_stderr(
                        reply_error(&reply)
                            .unwrap_or_else(|| "the program could not read the image".into()),
                    ),
                ));
            }
            code => {
                let kind = match (code, reply_type(&reply).as_deref()) {
                    (Some(3), _) | (_, Some("cuda_out_of_memory")) => ErrorCode::GPU_OUT_OF_MEMORY,
                    (Some(4), _) | (_, Some("cuda_error" | "runtime_error")) => {
                        ErrorCode::GPU_ERROR
                    }
                    (None, _) => ErrorCode::KILLED,
                    _ => ErrorCode::COMMAND_FAILED,
                };
                let what = code.map_or_else(
                    || "was killed by a signal".to_owned(),
                    |c| format!("exited with code {c}"),
                );
                let detail = reply_error(&reply)
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(Failure::transient(
                    kind,
                    with_stderr(format!("{} {what}{detail}", self.name)),
                ));
            }
        }
        // Output that is not the contract's is classified as the http segmenter's is.
        let reply =
            reply.map_err(|m| Failure::transient(ErrorCode::ML_MALFORMED, with_stderr(m)))?;
        let polygons = reply_polygons(reply)?;
        let run_ms = start.elapsed().as_secs_f64() * 1e3;
        result_from_polygons(
            &polygons,
            input,
            &self.name,
            vec![("command".into(), run_ms)],
        )
    }
}

fn read_reply(path: &Path) -> Result<Reply, String> {
    let meta =
        std::fs::metadata(path).map_err(|_| "the program wrote no result JSON".to_owned())?;
    if meta.len() > MAX_RESULT_BYTES {
        return Err(format!(
            "the result JSON is larger than {} MiB",
            MAX_RESULT_BYTES >> 20
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the result JSON: {e}"))?;
    parse_reply(&text)
}

/// The result JSON's text read as the contract's reply.
pub(crate) fn parse_reply(text: &str) -> Result<Reply, String> {
    serde_json::from_str(text).map_err(|e| format!("the result JSON is malformed: {e}"))
}

/// What a program that exited 0 reported: its polygons, or the failure it wrote down.
pub(crate) fn reply_polygons(reply: Reply) -> Result<Vec<Polygon>, Failure> {
    if reply.success == Some(false) {
        let msg = reply
            .error
            .unwrap_or_else(|| "the program reported a failure".into());
        return Err(match reply.error_type.as_deref() {
            Some("cuda_out_of_memory" | "cuda_error" | "runtime_error") => {
                Failure::transient(ErrorCode::GPU_ERROR, msg)
            }
            _ => Failure::transient(ErrorCode::COMMAND_FAILED, msg),
        });
    }
    reply.polygons.ok_or_else(|| {
        Failure::transient(ErrorCode::ML_MALFORMED, "the result JSON has no polygons")
    })
}

fn reply_error(r: &Result<Reply, String>) -> Option<String> {
    r.as_ref().ok().and_then(|r| r.error.clone())
}

fn reply_type(r: &Result<Reply, String>) -> Option<String> {
    r.as_ref().ok().and_then(|r| r.error_type.clone())
}

impl Segmenter for CommandSegmenter {
    fn name(&self) -> &str {
        &self.name
    }

    fn segment(
        &self,
        input: &Input<'_>,
        control: &mut Control<'_>,
    ) -> Result<SegmentResult, Failure> {
        static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self
            .work_dir
            .join(format!("{}-{}-{n}", self.name, std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            Failure::transient(
                ErrorCode::COMMAND_IO,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        (control.progress)(5);
        let r = self.run(input, control, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{DecodeLimits, SegmentParams, Stop, StopReason};

    struct Env {
        dir: tempfile::TempDir,
        png: Vec<u8>,
        path: PathBuf,
    }

    fn env() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(40, 30, image::Luma([90])))
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        let png = out.into_inner();
        let path = dir.path().join("stored");
        std::fs::write(&path, &png).expect("write");
        Env { dir, png, path }
    }

    /// Runs `script` (sh) as the program, with the output JSON path as $1 and input as $2.
    fn run(
        env: &Env,
        script: &str,
        stop: &Stop,
        timeout: Duration,
    ) -> Result<SegmentResult, Failure> {
        let seg = CommandSegmenter {
            name: "resunet".into(),
            argv: vec![
                "sh".into(),
                "-c".into(),
                script.into(),
                "sh".into(),
                "{output_json}".into(),
                "{input}".into(),
            ],
            work_dir: env.dir.path().join("work"),
        };
        let params = SegmentParams::default();
        let limits = DecodeLimits::default();
        let input = Input {
            bytes: &env.png,
            path: &env.path,
            name: "a.png",
            params: &params,
            limits: &limits,
            budget: &Default::default(),
            decoded: None,
        };
        let mut progress = |_| {};
        let mut control = Control {
            stop,
            deadline: Instant::now() + timeout,
            progress: &mut progress,
        };
        seg.segment(&input, &mut control)
    }

    const OK: &str = r#"case "$2" in *.png) ;; *) exit 1;; esac
echo '{"status":"completed","success":true,"polygons":[{"id":"p1","points":[{"x":2,"y":2},{"x":12,"y":2},{"x":12,"y":12},{"x":2,"y":12}],"type":"external","class":"spheroid"}]}' > "$1""#;

    #[test]
    fn a_good_run_gives_measured_objects() {
        let e = env();
        let r = run(&e, OK, &Stop::default(), Duration::from_secs(10)).expect("ok");
        assert_eq!(r.objects.len(), 1);
        assert_eq!(r.metrics[0].area, 100.0);
        assert_eq!(r.metrics[0].mean_intensity, Some(90.0));
        assert_eq!(r.segmenter, "resunet");
        assert!(
            !e.dir
                .path()
                .join("work")
                .read_dir()
                .expect("dir")
                .any(|_| true),
            "work dir cleaned"
        );
    }

    #[test]
    fn exit_codes_classify_and_stderr_is_kept() {
        let e = env();
        let cases = [
            (
                "echo 'cannot open image' >&2; exit 1",
                false,
                "unreadable-input",
            ),
            ("echo boom >&2; exit 2", true, "command-failed"),
            (
                r#"echo '{"success":false,"error":"CUDA out of memory","error_type":"cuda_out_of_memory"}' > "$1"; exit 3"#,
                true,
                "gpu-out-of-memory",
            ),
            ("exit 4", true, "gpu-error"),
            ("exit 9", true, "command-failed"),
            ("kill -9 $$", true, "killed"),
        ];
        for (script, transient, code) in cases {
            let f = run(&e, script, &Stop::default(), Duration::from_secs(10)).unwrap_err();
            assert_eq!(
                (f.is_transient(), f.code().expect("a code")),
                (transient, code),
                "{script}: {f:?}"
            );
        }
        let f = run(
            &e,
            "echo 'cannot open image' >&2; exit 1",
            &Stop::default(),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(
            f.message()
                .expect("message")
                .contains("stderr: cannot open image"),
            "{f:?}"
        );
        let f = run(&e, r#"echo '{"success":false,"error":"CUDA out of memory","error_type":"cuda_out_of_memory"}' > "$1"; exit 3"#, &Stop::default(), Duration::from_secs(10)).unwrap_err();
        assert!(f.message().expect("message").contains("CUDA out of memory"));
    }

    #[test]
    fn the_program_cannot_change_the_stored_original() {
        let e = env();
        let vandal = format!(r#"printf garbage > "$2"; chmod 000 "$2" 2>/dev/null; {OK}"#);
        run(&e, &vandal, &Stop::default(), Duration::from_secs(10)).expect("ok");
        assert_eq!(
            std::fs::read(&e.path).expect("read"),
            e.png,
            "the original is untouched"
        );
    }

    #[test]
    fn bad_output_is_an_error_not_a_result() {
        let e = env();
        let f = run(&e, "exit 0", &Stop::default(), Duration::from_secs(10)).unwrap_err();
        assert!(f.message().expect("message").contains("no result JSON"));
        let f = run(
            &e,
            r#"echo '{not json' > "$1""#,
            &Stop::default(),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(f.message().expect("message").contains("malformed"));
        let outside = r#"echo '{"success":true,"polygons":[{"id":"p","points":[[0,0],[500,0],[500,5]],"type":"external","class":"spheroid"}]}' > "$1""#;
        let f = run(&e, outside, &Stop::default(), Duration::from_secs(10)).unwrap_err();
        assert_eq!(
            (f.code(), f.is_transient()),
            (Some("polygons-out-of-image"), false)
        );
    }

    #[test]
    fn a_hanging_program_is_killed_on_timeout_or_stop() {
        let e = env();
        let started = Instant::now();
        let f = run(&e, "sleep 30", &Stop::default(), Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(f.code(), Some("timeout"));
        let stop = Stop::default();
        stop.request(StopReason::Cancelled);
        let f = run(&e, "sleep 30", &stop, Duration::from_secs(60)).unwrap_err();
        assert_eq!(f, Failure::Stopped);
    }

    /// Whether `pid` (written by the program to `file`) still runs.
    fn alive(file: &Path) -> bool {
        let pid = std::fs::read_to_string(file).expect("pid file");
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        // Gone, or a zombie its parent has not reaped yet.
        stat.is_ok_and(|s| !s.contains(") Z "))
    }

    #[test]
    fn a_child_that_leaves_the_group_and_keeps_stderr_cannot_wedge_a_run() {
        let e = env();
        let pid = e.dir.path().join("escaped.pid");
        let escape = format!(
            r#"setsid sh -c 'echo $$ > "{}"; exec sleep 3600' & sleep 0.2; echo 'working' >&2; sleep 3600"#,
            pid.display()
        );
        let started = Instant::now();
        let f = run(&e, &escape, &Stop::default(), Duration::from_secs(2)).unwrap_err();
        let took = started.elapsed();
        assert_eq!(f.code(), Some("timeout"), "{f:?}");
        assert!(f.message().expect("message").contains("stderr: working"));
        assert!(
            took < Duration::from_secs(2) + TERM_GRACE + Duration::from_secs(2),
            "ended {took:?} after it started"
        );
        assert!(!alive(&pid), "the escaped child was killed");

        // A program that succeeds but leaves such a child behind returns at once.
        let leave = format!(
            r#"setsid sh -c 'echo $$ > "{}"; exec sleep 3600' & sleep 0.2; {OK}"#,
            pid.display()
        );
        let started = Instant::now();
        run(&e, &leave, &Stop::default(), Duration::from_secs(30)).expect("ok");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(!alive(&pid), "the escaped child was killed");
    }

    #[test]
    fn a_program_that_ignores_sigterm_is_killed_after_the_grace() {
        let e = env();
        let stop = Stop::default();
        stop.request(StopReason::Cancelled);
        let started = Instant::now();
        let f = run(
            &e,
            "trap '' TERM; while :; do sleep 1; done",
            &stop,
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert_eq!(f, Failure::Stopped);
        assert!(started.elapsed() < TERM_GRACE + Duration::from_secs(2));
    }

    #[test]
    fn arguments_are_not_interpreted_by_a_shell() {
        let e = env();
        // A name with shell syntax reaches the program as one literal argument.
        let seg = CommandSegmenter {
            name: "echo".into(),
            argv: vec![
                "sh".into(),
                "-c".into(),
                r#"[ "$1" = '$(touch pwned)' ] && exit 2"#.into(),
                "sh".into(),
                "$(touch pwned)".into(),
            ],
            work_dir: e.dir.path().join("work"),
        };
        let params = SegmentParams::default();
        let limits = DecodeLimits::default();
        let input = Input {
            bytes: &e.png,
            path: &e.path,
            name: "a.png",
            params: &params,
            limits: &limits,
            budget: &Default::default(),
            decoded: None,
        };
        let stop = Stop::default();
        let mut progress = |_| {};
        let mut control = Control {
            stop: &stop,
            deadline: Instant::now() + Duration::from_secs(5),
            progress: &mut progress,
        };
        let f = seg.segment(&input, &mut control).unwrap_err();
        assert_eq!(
            f.code(),
            Some("command-failed"),
            "exit 2: the literal argument arrived"
        );
        assert!(!e.dir.path().join("work").join("pwned").exists());
    }
}
