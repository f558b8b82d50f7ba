//! A write-ahead log of arbitrary bytes replayed by `Queue::open` beside a healthy database, then
//! the queue read from: every open gives a queue or an error, and the queue it gives answers
//! reads or errors, never panics.
//!
//! The first byte picks the mode. Even: the rest is the log file as it is. Odd: the rest is a
//! list of `len u16 | payload[len]` that become records framed as `queue/wal.rs` frames them
//! (`crc32 u32 | len u32 | generation u64 | lsn u64 | payload`, and in its second layout
//! `durable u64` before the payload), with the database's generation and the sequence numbers it
//! expects next, so the payloads reach the redo code instead of stopping at the checksum or the
//! generation.
//!
//! Two more things count as crashes: a panic that `Queue::open` contained as an error
//! (`contain.rs` does that for the storage engine, and so for the redo code it runs: the redo
//! checks every key and value before redb sees it), and a panic of the writer while it leases
//! from what the log left (a job without its counter is clamped and logged, not asserted).

#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use spheroseg::clock::SystemClock;
use spheroseg::queue::{ImageRef, JobFilter, NewJob, Queue, QueueOptions};

/// The log's size: a replay reads all of it.
const WAL_BYTES: u64 = 64 << 10;

fn options() -> QueueOptions {
    QueueOptions {
        wal_bytes: WAL_BYTES,
        cache_bytes: 1 << 20,
        // Thousands of opens a second need no space kept back.
        reserve_bytes: 0,
        ..QueueOptions::default()
    }
}

/// A database made once, holding one queued job and closed cleanly, and the log position it
/// expects.
struct Template {
    database: Vec<u8>,
    generation: u64,
    lsn: u64,
    /// Bytes in front of a payload: 24, or 32 where the header holds `durable` too.
    header: usize,
    runtime: tokio::runtime::Runtime,
}

/// The last panic, contained or not: where and what.
static PANICKED: Mutex<Option<String>> = Mutex::new(None);

static TEMPLATE: LazyLock<Template> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("q.redb");
    let (queue, _) = Queue::open(&path, options(), Arc::new(SystemClock)).expect("a new queue");
    runtime
        .block_on(queue.enqueue(NewJob {
            image: ImageRef {
                hash: "0".repeat(64),
                name: "spheroid.tif".into(),
                width: 64,
                height: 48,
                bytes: 4096,
            },
            ..NewJob::default()
        }))
        .expect("enqueue");
    // The enqueue's record is the log's first: its header holds this open's generation and the
    // sequence number that the closing checkpoint covers.
    let log = std::fs::read(path.with_extension("wal")).expect("read the log");
    let word = |at: usize| u64::from_le_bytes(log[at..at + 8].try_into().expect("8 bytes"));
    let (generation, lsn) = (word(8), word(16));
    let len = u32::from_le_bytes(log[4..8].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(log[..4].try_into().expect("4 bytes"));
    let header = [24, 32]
        .into_iter()
        .find(|h| crc32fast::hash(&log[4..h + len]) == crc)
        .expect("the log's first record has a 24- or 32-byte header");
    queue.close();
    // After the queue's first open, so this hook runs before the one `contain` installed.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut last) = PANICKED.lock() {
            *last = Some(info.to_string());
        }
        previous(info);
    }));
    Template {
        database: std::fs::read(&path).expect("read the database"),
        generation,
        lsn,
        header,
        runtime,
    }
});

/// The records of `data`, framed with the template's generation and the next sequence numbers.
fn framed(data: &[u8], t: &Template) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut lsn = t.lsn;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        lsn += 1;
        let mut body = Vec::with_capacity(20 + len);
        body.extend_from_slice(&(len as u32).to_le_bytes());
        body.extend_from_slice(&t.generation.to_le_bytes());
        body.extend_from_slice(&lsn.to_le_bytes());
        if t.header == 32 {
            // Nothing after the checkpoint was on disk before these records.
            body.extend_from_slice(&t.lsn.to_le_bytes());
        }
        body.extend_from_slice(payload);
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        rest = tail;
    }
    out
}

fn replay(dir: &Path, wal: &[u8], t: &Template) {
    let path = dir.join("q.redb");
    std::fs::write(&path, &t.database).expect("write the database");
    std::fs::write(dir.join("q.wal"), wal).expect("write the log");
    let Ok((queue, _recovery)) = Queue::open(&path, options(), Arc::new(SystemClock)) else {
        return;
    };
    // What the replayed changes left must read back as jobs or as an error.
    let _ = queue.stats();
    let _ = queue.next_due();
    if let Ok(page) = queue.list(&JobFilter::default(), None, 20) {
        for job in page.jobs {
            let _ = queue.get(job.id);
            let _ = queue.result(job.id);
        }
    }
    let _ = t.runtime.block_on(queue.lease(4, Duration::from_secs(60)));
    queue.close();
}

fuzz_target!(|data: &[u8]| {
    let t = &*TEMPLATE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let wal = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        framed(rest, t)
    };
    if wal.len() as u64 > WAL_BYTES {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    *PANICKED.lock().expect("panic record") = None;
    replay(dir.path(), &wal, t);
    let contained = PANICKED.lock().expect("panic record").take();
    if let Some(panic) = contained {
        panic!("Queue::open contained this panic as an error: {panic}");
    }
});
