//! What the process knows about itself: the Prometheus recorder behind `/metrics` (one per process,
//! installed on first use), the machine's CPU and memory via sysinfo, and the data directory's
//! file system (`disk.rs`).
//!
//! Counters and histograms are recorded where things happen (pool, service, HTTP); gauges that
//! mirror the queue (jobs by state and priority, database size, workers) are set when `/metrics` is
//! rendered, from the O(1) counters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use sysinfo::{ProcessesToUpdate, System};

use crate::disk::Disk;

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
    /// The file system that holds the data directory (statvfs of the directory itself).
    pub disk_total_bytes: u64,
    pub disk_available_bytes: u64,
    pub disk_mount: Option<PathBuf>,
    pub disk_fs_type: Option<String>,
    /// Under this much free space no image is taken and spheroseg is not ready.
    pub disk_low_water_bytes: u64,
    pub disk_low: bool,
    /// A write refused for lack of space since the last one that succeeded.
    pub disk_refused: Option<String>,
    pub uptime_secs: u64,
}

impl SystemSnapshot {
    /// Free space is under the low-water mark.
    pub fn disk_low(&self) -> bool {
        self.disk_low
    }

    /// Memory is low under 5 % available.
    pub fn memory_low(&self) -> bool {
        self.memory_total_bytes > 0 && self.memory_available_bytes * 20 < self.memory_total_bytes
    }
}

/// Reads CPU, memory and the disk holding the data directory.
pub struct SystemMonitor {
    sys: Mutex<Option<System>>,
    disk: Arc<Disk>,
    started: std::time::Instant,
}

impl SystemMonitor {
    /// Watches the machine and the file system of `data_dir` with the default low-water mark.
    pub fn new(data_dir: &Path) -> Self {
        Self::with_disk(Arc::new(Disk::new(data_dir, 0)))
    }

    /// Watches the machine and `disk` (shared with the image store).
    pub fn with_disk(disk: Arc<Disk>) -> Self {
        SystemMonitor {
            sys: Mutex::new(System::new().ok()),
            disk,
            started: std::time::Instant::now(),
        }
    }

    pub fn disk(&self) -> &Arc<Disk> {
        &self.disk
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
        let disk = self.disk.status();
        snap.disk_total_bytes = disk.filesystem.total_bytes;
        snap.disk_available_bytes = disk.filesystem.available_bytes;
        snap.disk_mount = disk.filesystem.mount;
        snap.disk_fs_type = disk.filesystem.fs_type;
        snap.disk_low_water_bytes = disk.low_water_bytes;
        snap.disk_low = disk.low;
        snap.disk_refused = disk.refused;
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
    fn low_memory_is_under_five_percent() {
        let s = SystemSnapshot {
            memory_total_bytes: 100,
            memory_available_bytes: 4,
            ..SystemSnapshot::default()
        };
        assert!(s.memory_low());
        let ok = SystemSnapshot {
            memory_total_bytes: 100,
            memory_available_bytes: 50,
            ..SystemSnapshot::default()
        };
        assert!(!ok.memory_low());
    }
}
