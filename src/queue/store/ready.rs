//! The ready index in two halves: `ready` and the small `ready_tail` that newly queued jobs go to
//! (see `queue/store.rs` for why). Everything that looks for "the next queued job" asks both
//! through these functions, so no caller has to know which half holds a job.

use redb::{ReadableTable, ReadableTableMetadata, StorageError};

use super::Tables;
use crate::queue::QueueError;
use crate::queue::model::Priority;

/// A `ready` key and its value.
pub(crate) type ReadyEntry = ((u8, u64), (u128, u64));

/// The first entry of `table` in `range`.
pub(crate) fn first_in<T: ReadableTable<(u8, u64), (u128, u64)>>(
    table: &T,
    range: std::ops::RangeInclusive<(u8, u64)>,
) -> Result<Option<ReadyEntry>, StorageError> {
    match table.range(range)?.next() {
        Some(entry) => {
            let (k, v) = entry?;
            Ok(Some((k.value(), v.value())))
        }
        None => Ok(None),
    }
}

/// The smaller of two first entries.
pub(crate) fn earlier(a: Option<ReadyEntry>, b: Option<ReadyEntry>) -> Option<ReadyEntry> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The queued job that comes first in `range` of keys, from both halves of the index.
pub(crate) fn ready_first(
    ready: &impl ReadableTable<(u8, u64), (u128, u64)>,
    tail: &impl ReadableTable<(u8, u64), (u128, u64)>,
    range: std::ops::RangeInclusive<(u8, u64)>,
) -> Result<Option<ReadyEntry>, QueueError> {
    let a = first_in(ready, range.clone())?;
    let b = first_in(tail, range)?;
    Ok(earlier(a, b))
}

/// Every key of one priority level, by its `ready` prefix.
pub(crate) fn level(inv: u8) -> std::ops::RangeInclusive<(u8, u64)> {
    (inv, 0)..=(inv, u64::MAX)
}

/// Adds a queued job's entry: to `ready_tail`, unless the tail already holds more than `spill`
/// (a batch that queues many jobs), in which case straight to `ready`, where the batch would move
/// it anyway.
pub(crate) fn add_ready(
    t: &mut Tables<'_>,
    entry: ReadyEntry,
    spill: u64,
) -> Result<(), QueueError> {
    let tail = t.ready_tail()?;
    if tail.len()? > spill {
        t.ready()?.insert(entry.0, entry.1)?;
    } else {
        tail.insert(entry.0, entry.1)?;
    }
    Ok(())
}

/// Moves every entry of `ready_tail` into `ready` if it holds more than `over`.
pub(crate) fn spill_ready_tail(t: &mut Tables<'_>, over: u64) -> Result<(), QueueError> {
    if t.ready_tail()?.len()? <= over {
        return Ok(());
    }
    let entries: Vec<ReadyEntry> = t
        .ready_tail()?
        .iter()?
        .map(|e| e.map(|(k, v)| (k.value(), v.value())))
        .collect::<Result<_, _>>()?;
    let ready = t.ready()?;
    for (k, v) in entries {
        ready.insert(k, v)?;
    }
    t.ready_tail()?.retain(|_, _| false)?;
    Ok(())
}

pub(crate) fn ready_key(p: Priority, seq: u64) -> (u8, u64) {
    (Priority::MAX.get() - p.get(), seq)
}
