//! The CLI as the client of a running server: the binary run against a real [`App`] on a
//! loopback port (`tests/util/api.rs`), driven by a multi-threaded runtime so the server goes
//! on while the test waits for the child process.

mod backup;
mod commands;

use std::process::Output;

use spheroseg::config::Layer;

use crate::util::api::{Api, api_with};

/// A server the CLI can reach: its runtime, its harness, and its base URL.
pub struct Served {
    pub rt: tokio::runtime::Runtime,
    pub api: Api,
    pub url: String,
}

impl Served {
    pub fn start(token: Option<&str>, configure: impl FnOnce(&mut Layer)) -> Served {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let api = rt.block_on(api_with(dir, token, 64 << 20, configure));
        let addr = api.app.as_ref().expect("running").addr();
        Served {
            rt,
            url: format!("http://{addr}"),
            api,
        }
    }

    /// Runs `spheroseg ARGS --server URL`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(args, &[])
    }

    /// [`Served::cli`] with extra environment variables.
    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = crate::cli::spheroseg();
        c.args(args).args(["--server", &self.url]);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("runs")
    }

    pub fn stop(self) {
        let Served { rt, api, .. } = self;
        rt.block_on(api.stop());
    }
}

/// Stdout, and the whole output for an assertion message.
pub fn text(out: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!(
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, all)
}
