//! Reading results: the latest version of a job's result, or any version by number. The first
//! version is in `results`, the later ones in `result_versions` (see `model::ResultRef`).

use redb::{ReadTransaction, TableError};

use super::{JOBS, RESULT_VERSIONS, RESULTS, Store, decode};
use crate::queue::QueueError;
use crate::queue::model::JobId;

impl Store {
    /// The latest version of a job's result.
    pub(crate) fn result(&self, id: JobId) -> Result<Option<Vec<u8>>, QueueError> {
        let tx = self.read()?;
        let latest = match tx.open_table(JOBS)?.get(id.0)? {
            Some(v) => decode(v.value(), "job record")?
                .result
                .map_or(1, |r| r.version()),
            None => return Ok(None),
        };
        version_in(&tx, id, latest)
    }

    /// Version `version` of a job's result.
    pub(crate) fn result_version(
        &self,
        id: JobId,
        version: u32,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        version_in(&self.read()?, id, version)
    }
}

/// Version `version` of a job's result as of `tx`: the first in `results`, the others in
/// `result_versions` (absent from a file no one corrected a result in).
fn version_in(
    tx: &ReadTransaction,
    id: JobId,
    version: u32,
) -> Result<Option<Vec<u8>>, QueueError> {
    if version <= 1 {
        let results = tx.open_table(RESULTS)?;
        return Ok(results.get(id.0)?.map(|v| v.value().to_vec()));
    }
    match tx.open_table(RESULT_VERSIONS) {
        Ok(t) => Ok(t.get((id.0, version))?.map(|v| v.value().to_vec())),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
