//! The ledger: one durable record per file a watched folder took, kept as a queue mark
//! (`queue::Mark`) under `watch␟{folder}␟{path below it}`, written in the same commit as the
//! file's jobs. It says what the file was when taken (size, modification time, content hash)
//! and how far it got, so a restart takes nothing twice and finishes what a crash interrupted:
//!
//! - `Queued`: its jobs are in the queue; their results are not written yet.
//! - `Done`: the results are written (or the error file of a failed job).
//! - `Refused`: it never decoded; its error file is written. Taken again once it changes.
//!
//! Value layout: a version byte, the postcard record, then the ids of the file's jobs (16 bytes
//! each, little-endian), which the queue's writer appends for the jobs of the same commit.

use serde::{Deserialize, Serialize};

use crate::queue::{JobId, Mark};

const RECORD_V1: u8 = 1;
/// Between the parts of a key (ASCII unit separator: in no path).
const SEP: char = '\u{1f}';

/// How far a taken file got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Queued,
    /// Results written: `failed` when a job failed (the error file says why).
    Done {
        failed: bool,
    },
    /// It did not decode; the reason is in its error file.
    Refused {
        reason: String,
    },
}

/// One file's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub size: u64,
    pub mtime: u64,
    /// SHA-256 of the content, lowercase hex (the image store's name for it).
    pub hash: String,
    pub state: State,
    /// Results of this path were written before (a changed file's new ones replace their rows).
    pub written: bool,
    /// The pages its jobs segment, in the order of the ids (`None`: the first, as one job).
    pub pages: Vec<Option<u32>>,
}

/// A record and the ids of its jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub record: Record,
    pub jobs: Vec<JobId>,
}

/// The key prefix of every file of the folder `root` (its canonical path).
pub fn prefix(root: &str) -> String {
    format!("watch{SEP}{root}{SEP}")
}

/// The mark that stores `record` for the file `rel` of the folder with key prefix `prefix`;
/// the ids of `new_jobs` (indices into the same enqueue) follow `known` ids.
pub fn mark(
    prefix: &str,
    rel: &str,
    record: &Record,
    known: &[JobId],
    new_jobs: Vec<usize>,
) -> Mark {
    let mut value = vec![RECORD_V1];
    value.extend(postcard::to_stdvec(record).expect("postcard encodes plain structs"));
    for id in known {
        value.extend_from_slice(&id.0.to_le_bytes());
    }
    Mark {
        key: format!("{prefix}{rel}"),
        value: Some(value),
        jobs: new_jobs,
    }
}

/// A stored mark's file (below the folder) and entry; `None` for a key or value this build
/// cannot read (they are passed over, and the file taken again as if new).
pub fn parse(prefix: &str, key: &str, value: &[u8]) -> Option<(String, Entry)> {
    let rel = key.strip_prefix(prefix)?;
    let (&RECORD_V1, rest) = value.split_first()? else {
        return None;
    };
    let (record, ids) = postcard::take_from_bytes::<Record>(rest).ok()?;
    if ids.len() % 16 != 0 {
        return None;
    }
    let jobs = ids
        .chunks_exact(16)
        .map(|c| JobId(u128::from_le_bytes(c.try_into().expect("16 bytes"))))
        .collect();
    Some((rel.to_owned(), Entry { record, jobs }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_with_its_job_ids() {
        let p = prefix("/mnt/scope");
        let r = Record {
            size: 10,
            mtime: 20,
            hash: "ab".into(),
            state: State::Refused {
                reason: "not an image".into(),
            },
            written: true,
            pages: vec![Some(0), Some(1)],
        };
        let ids = [JobId(7), JobId(u128::MAX)];
        let m = mark(&p, "plate/A01.tif", &r, &ids, vec![]);
        assert!(m.key.ends_with("plate/A01.tif"));
        let (rel, e) = parse(&p, &m.key, m.value.as_deref().expect("value")).expect("parses");
        assert_eq!(rel, "plate/A01.tif");
        assert_eq!(
            e,
            Entry {
                record: r,
                jobs: ids.to_vec()
            }
        );
        assert!(parse(&p, &m.key, &[9, 1, 2]).is_none(), "unknown version");
        assert!(parse(&prefix("/other"), &m.key, &[]).is_none());
    }
}
