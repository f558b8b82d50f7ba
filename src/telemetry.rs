//! What the process knows about itself: the Prometheus recorder behind `/metrics` (one per process,
//! installed on first use) and the machine's CPU, memory and data-directory disk via sysinfo.
//!
//! Counters and histograms are recorded where things happen (pool, service, HTTP); gauges that
//! mirror the queue (jobs by state and priority, database size, workers) are set when `/metrics` is
//! rendered, from the O(1) counters.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use sysinfo::{Disks, ProcessesToUpdate, System};

/// Latency buckets for the `_seconds` histograms: from 1 ms to 10 min.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The process's Prometheus handle, installing the recorder the first time.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("the bucket list is not empty");
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program's): render our own, unfed.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// Bytes free to an unprivileged writer on the file system holding `path` (statvfs), the figure
/// that matters for the data directory; `None` if it cannot be read.
pub fn free_space(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(path).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let path = path.canonicalize().ok()?;
        let disks = Disks::new_with_refreshed_list().ok()?;
        disks
            .iter()
            .filter(|d| path.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
            .map(|d| d.available_space())
    }
}

/// The machine's memory in bytes (0 if it cannot be read).
pub fn memory_total() -> u64 {
    System::new().map_or(0, |mut s| {
        s.refresh_memory();
        s.total_memory()
    })
}

/// A moment's view of the machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SystemSnapshot {
    pub cpu_percent: f32,
    pub cores: usize,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub process_rss_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_available_bytes: u64,
    pub disk_mount: Option<PathBuf>,
    pub uptime_secs: u64,
}

impl SystemSnapshot {
    /// Disk space is low under 1 GiB or 5 % free.
    pub fn disk_low(&self) -> bool {
        self.disk_total_bytes > 0
            && (self.disk_available_bytes < (1 << 30)
                || self.disk_available_bytes * 20 < self.disk_total_bytes)
    }

    /// Memory is low under 5 % available.
    pub fn memory_low(&self) -> bool {
        self.memory_total_bytes > 0 && self.memory_available_bytes * 20 < self.memory_total_bytes
    }
}

/// Reads CPU, memory and the disk holding the data directory.
pub struct SystemMonitor {
    sys: Mutex<Option<System>>,
    data_dir: PathBuf,
    started: std::time::Instant,
}

impl SystemMonitor {
    pub fn new(data_dir: &Path) -> Self {
        SystemMonitor {
            sys: Mutex::new(System::new().ok()),
            data_dir: data_dir
                .canonicalize()
                .unwrap_or_else(|_| data_dir.to_owned()),
            started: std::time::Instant::now(),
        }
    }

    pub fn snapshot(&self) -> SystemSnapshot {
        let mut snap = SystemSnapshot {
            uptime_secs: self.started.elapsed().as_secs(),
            ..SystemSnapshot::default()
        };
        if let Some(sys) = self.sys.lock().expect("system lock").as_mut() {
            sys.refresh_memory();
            sys.refresh_cpu_usage();
            snap.cpu_percent = sys.global_cpu_usage();
            snap.cores = sys.cpus().len();
            snap.memory_total_bytes = sys.total_memory();
            snap.memory_available_bytes = sys.available_memory();
            if let Ok(pid) = sysinfo::get_current_pid() {
                sys.refresh_processes(ProcessesToUpdate::Some(&[pid]), false);
                snap.process_rss_bytes = sys.process(pid).map_or(0, |p| p.memory());
            }
        }
        if let Ok(disks) = Disks::new_with_refreshed_list() {
            // The disk whose mount point is the longest prefix of the data directory.
            if let Some(d) = disks
                .iter()
                .filter(|d| self.data_dir.starts_with(d.mount_point()))
                .max_by_key(|d| d.mount_point().as_os_str().len())
            {
                snap.disk_total_bytes = d.total_space();
                snap.disk_available_bytes = d.available_space();
                snap.disk_mount = Some(d.mount_point().to_owned());
            }
        }
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_measured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SystemMonitor::new(dir.path()).snapshot();
        assert!(s.memory_total_bytes > 0);
        assert!(s.process_rss_bytes > 0);
        assert!(s.cores >= 1);
        assert!(s.disk_total_bytes > 0 && s.disk_mount.is_some(), "{s:?}");
    }

    #[test]
    fn low_thresholds() {
        let s = SystemSnapshot {
            disk_total_bytes: 100 << 30,
            disk_available_bytes: 4 << 30,
            memory_total_bytes: 100,
            memory_available_bytes: 4,
            ..SystemSnapshot::default()
        };
        assert!(s.disk_low() && s.memory_low());
        let ok = SystemSnapshot {
            disk_total_bytes: 100 << 30,
            disk_available_bytes: 50 << 30,
            memory_total_bytes: 100,
            memory_available_bytes: 50,
            ..SystemSnapshot::default()
        };
        assert!(!ok.disk_low() && !ok.memory_low());
    }
}
