//! Seldon MLServer (Open Inference Protocol V2) from the venv `.ci/run` makes from
//! `tests/ml/mlserver/requirements.txt`, on loopback, serving models of the threshold runtime in
//! `tests/ml/mlserver/threshold.py`. Found at `SPHEROSEG_MLSERVER` (the `mlserver` program) or
//! the cache path `.ci/run` uses. Without it a test is skipped with a message, unless
//! `SPHEROSEG_REQUIRE_MLSERVER` is set (CI sets it), when it fails.
//!
//! The server binds port 0 and its address is read from its log; a restarted one takes the same
//! port again. Readiness is waited on (`/v2/health/ready` and each model's `/ready`), never slept.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `mlserver` program, or `None` (after saying why) when its venv is absent outside CI.
pub fn program() -> Option<PathBuf> {
    let bin = std::env::var_os("SPHEROSEG_MLSERVER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/spheroseg-venv-mlserver/bin/mlserver"))
        })
        .filter(|p| p.exists());
    if bin.is_none() {
        assert!(
            std::env::var_os("SPHEROSEG_REQUIRE_MLSERVER").is_none(),
            "SPHEROSEG_REQUIRE_MLSERVER is set but the MLServer venv is missing: run .ci/run"
        );
        eprintln!("skipped: no MLServer venv (make it as .ci/run does, or set SPHEROSEG_MLSERVER)");
    }
    bin
}

/// One model of the threshold runtime: its `model-settings.json` fields.
pub struct Model {
    pub name: &'static str,
    pub input: (&'static str, &'static str, Vec<i64>),
    pub output: (&'static str, &'static str),
    /// `map` or `polygons`.
    pub reply: &'static str,
    pub sleep_ms: u64,
}

impl Model {
    /// A model taking an FP32 NCHW image of `size`×`size` and answering an FP32 mask.
    pub fn map(name: &'static str, size: i64) -> Model {
        Model {
            name,
            input: ("image", "FP32", vec![-1, 1, size, size]),
            output: ("mask", "FP32"),
            reply: "map",
            sleep_ms: 0,
        }
    }
}

/// A running MLServer.
pub struct MlServer {
    program: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    models: Vec<&'static str>,
}

impl MlServer {
    /// Starts a server for `models` and waits until each is ready.
    pub async fn start(program: &Path, models: &[Model]) -> MlServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ml/mlserver/threshold.py");
        for m in models {
            let d = dir.path().join(m.name);
            std::fs::create_dir(&d).expect("model dir");
            std::fs::copy(&runtime, d.join("threshold.py")).expect("runtime");
            let settings = serde_json::json!({
                "name": m.name,
                "implementation": "threshold.ThresholdModel",
                "inputs": [{"name": m.input.0, "datatype": m.input.1, "shape": m.input.2}],
                "outputs": [{"name": m.output.0, "datatype": m.output.1, "shape": [-1]}],
                "parameters": {"extra": {"reply": m.reply, "sleep_ms": m.sleep_ms}},
            });
            std::fs::write(d.join("model-settings.json"), settings.to_string()).expect("write");
        }
        let mut s = MlServer {
            program: program.to_owned(),
            dir,
            child: None,
            port: 0,
            url: String::new(),
            models: models.iter().map(|m| m.name).collect(),
        };
        s.launch(0).await;
        s
    }

    async fn launch(&mut self, port: u16) {
        let settings = serde_json::json!({
            "host": "127.0.0.1", "http_port": port, "grpc_port": 0,
            "metrics_endpoint": null, "parallel_workers": 0, "debug": false,
        });
        std::fs::write(self.dir.path().join("settings.json"), settings.to_string()).expect("write");
        let log_path = self.dir.path().join("log");
        let log = std::fs::File::create(&log_path).expect("log");
        let child = Command::new(&self.program)
            .arg("start")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("mlserver starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        const MARK: &str = "Uvicorn running on http://127.0.0.1:";
        self.port = loop {
            let text =
                String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
            if let Some(port) = text
                .split(MARK)
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse().ok())
            {
                break port;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("mlserver exited with {status}:\n{text}");
            }
            assert!(Instant::now() < deadline, "mlserver did not start:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.url = format!("http://127.0.0.1:{}", self.port);
        let mut ready = vec![format!("{}/v2/health/ready", self.url)];
        ready.extend(
            self.models
                .iter()
                .map(|m| format!("{}/v2/models/{m}/ready", self.url)),
        );
        for url in ready {
            loop {
                let r = spheroseg::segment::http::get(&url, None, Duration::from_secs(5)).await;
                if matches!(r, Ok((200, _))) {
                    break;
                }
                assert!(Instant::now() < deadline, "{url} never became ready: {r:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and waits until it is ready.
    pub async fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.launch(port).await;
    }
}

impl Drop for MlServer {
    fn drop(&mut self) {
        self.kill();
    }
}
