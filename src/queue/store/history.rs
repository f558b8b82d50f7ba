//! The `history` table: `job id -> history record`, what happened to each job after its
//! enqueue (see `model/history.rs`). Not an index: it cannot be rebuilt from `jobs`, and it goes
//! with its job (the writer removes it when the job is deleted). A job with no row (not run yet,
//! or in a file from before histories, which has no table) has only its enqueue.
//!
//! Record layout: a version byte, then the postcard of [`History`].

use redb::{ReadableDatabase, TableDefinition, TableError};

use super::{JOBS, Store, decode};
use crate::queue::QueueError;
use crate::queue::model::{History, JobId};

/// `job id -> history record`.
pub(crate) const HISTORY: TableDefinition<u128, &[u8]> = TableDefinition::new("history");

/// Version byte in front of every history record.
const HISTORY_V1: u8 = 1;

/// A history record in today's layout.
pub(crate) fn encode_history(h: &History) -> Vec<u8> {
    let mut out = vec![HISTORY_V1];
    // postcard into a Vec cannot fail for plain structs
    out.extend(postcard::to_stdvec(h).expect("postcard encodes plain structs"));
    out
}

/// A history record of any version this build knows.
pub(crate) fn decode_history(bytes: &[u8]) -> Result<History, QueueError> {
    match bytes.split_first() {
        Some((&HISTORY_V1, rest)) => postcard::from_bytes(rest).map_err(|e| QueueError::Corrupt {
            detail: format!("history record: {e}"),
        }),
        Some((v, _)) => Err(QueueError::Corrupt {
            detail: format!("history record: unknown record version {v}"),
        }),
        None => Err(QueueError::Corrupt {
            detail: "history record: empty record".into(),
        }),
    }
}

impl Store {
    /// A job's history from one snapshot, with what its record says (`History::of_job`); `None`
    /// when there is no such job.
    pub(crate) fn history(&self, id: JobId) -> Result<Option<History>, QueueError> {
        let tx = self.db.begin_read()?;
        let job = match tx.open_table(JOBS)?.get(id.0)? {
            Some(v) => decode(v.value(), "job record")?,
            None => return Ok(None),
        };
        let stored = match tx.open_table(HISTORY) {
            Ok(table) => match table.get(id.0)? {
                Some(v) => decode_history(v.value())?,
                None => History::default(),
            },
            Err(TableError::TableDoesNotExist(_)) => History::default(),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(stored.of_job(&job)))
    }
}
