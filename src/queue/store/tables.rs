//! The write side of the store: every table of a write transaction, opened on first use, each
//! recording the changes it makes. [`Tables::take_log`] turns a batch's changes into one
//! write-ahead log payload and [`redo`] applies such a payload again after a crash. Changes are
//! kept per table in order; tables are independent of each other, so redoing them table by table
//! gives the same state.

use std::borrow::Borrow;
use std::ops::Deref;

use redb::{Key, ReadableTable, StorageError, Table, Value, WriteTransaction};

use super::{
    BY_PROJECT, DEDUPE, DELAYED, FINISHED, IMAGE_REFS, JOBS, LEASES, MARKS, META, READY,
    READY_TAIL, RESULT_VERSIONS, RESULTS, decode, encode,
};
use crate::queue::QueueError;
use crate::queue::model::{Job, JobId};

/// Declares [`Tables`]: one lazily opened, logged slot per table, its accessor, and its number
/// in a log payload (the order of the list; changing it changes the payload format).
macro_rules! tables {
    ($($n:literal $name:ident: $k:ty => $v:ty = $def:ident;)*) => {
        /// The tables of one write transaction, each opened on first use (a transaction pays, at
        /// its commit, for every table it opened) and logging its changes.
        pub(crate) struct Tables<'txn> {
            tx: &'txn WriteTransaction,
            $($name: Option<Logged<'txn, $k, $v>>,)*
        }

        impl<'txn> Tables<'txn> {
            pub(crate) fn open(tx: &'txn WriteTransaction) -> Result<Self, QueueError> {
                Ok(Tables { tx, $($name: None,)* })
            }

            $(pub(crate) fn $name(&mut self) -> Result<&mut Logged<'txn, $k, $v>, QueueError> {
                if self.$name.is_none() {
                    self.$name = Some(Logged::new(self.tx.open_table($def)?));
                }
                Ok(self.$name.as_mut().expect("opened above"))
            })*

            /// The table numbered `n`, opened if need be.
            fn numbered(&mut self, n: u8) -> Result<Option<&mut dyn Redo>, QueueError> {
                Ok(match n {
                    $($n => Some(self.$name()?),)*
                    _ => None,
                })
            }

            /// Every table this transaction opened, with its number.
            fn opened(&mut self) -> Vec<(u8, &mut dyn Redo)> {
                let mut out: Vec<(u8, &mut dyn Redo)> = Vec::new();
                $(if let Some(t) = self.$name.as_mut() {
                    out.push(($n, t));
                })*
                out
            }
        }
    };
}

tables! {
    0 meta: &'static str => u64 = META;
    1 jobs: u128 => &'static [u8] = JOBS;
    2 ready: (u8, u64) => (u128, u64) = READY;
    3 delayed: (u64, u128) => () = DELAYED;
    4 leases: (u64, u128) => () = LEASES;
    5 by_project: (&'static str, u128) => () = BY_PROJECT;
    6 finished: (u8, u64, u128) => () = FINISHED;
    7 dedupe: &'static str => u128 = DEDUPE;
    8 image_refs: &'static str => u64 = IMAGE_REFS;
    9 results: u128 => &'static [u8] = RESULTS;
    10 ready_tail: (u8, u64) => (u128, u64) = READY_TAIL;
    11 marks: &'static str => &'static [u8] = MARKS;
    12 result_versions: (u128, u32) => &'static [u8] = RESULT_VERSIONS;
}

/// Version byte in front of every write-ahead log payload.
const REDO_V1: u8 = 1;
const OP_INSERT: u8 = 1;
const OP_REMOVE: u8 = 2;

impl Tables<'_> {
    /// Opens every table, creating the missing ones (for a new or migrated file, so that readers
    /// find them all).
    pub(crate) fn create_all(&mut self) -> Result<(), QueueError> {
        for n in 0..=12 {
            self.numbered(n)?;
        }
        Ok(())
    }

    /// The changes made since the last call, as one log payload; `None` if there were none.
    /// Layout: `REDO_V1`, then per changed table `table number u8 | len u32 | changes[len]`.
    pub(crate) fn take_log(&mut self) -> Option<Vec<u8>> {
        let mut out = vec![REDO_V1];
        for (n, table) in self.opened() {
            let log = table.take();
            if !log.is_empty() {
                out.push(n);
                out.extend_from_slice(&(log.len() as u32).to_le_bytes());
                out.extend_from_slice(&log);
            }
        }
        (out.len() > 1).then_some(out)
    }

    pub(crate) fn job(&mut self, id: JobId) -> Result<Job, QueueError> {
        match self.jobs()?.get(id.0)? {
            Some(v) => decode(v.value(), "job record"),
            None => Err(QueueError::NotFound(id)),
        }
    }

    pub(crate) fn put_job(&mut self, job: &Job) -> Result<(), QueueError> {
        self.jobs()?.insert(job.id.0, encode(job).as_slice())?;
        Ok(())
    }
}

/// Applies a payload of [`Tables::take_log`] again: the same changes, in the same order per table.
pub(crate) fn redo(t: &mut Tables<'_>, payload: &[u8]) -> Result<(), QueueError> {
    let bad = |what: &str| QueueError::Corrupt {
        detail: format!("write-ahead log record: {what}"),
    };
    let Some((&REDO_V1, mut rest)) = payload.split_first() else {
        return Err(bad("unknown payload version"));
    };
    while let Some((&n, tail)) = rest.split_first() {
        let (len, tail) = take_u32(tail).ok_or_else(|| bad("truncated table section"))?;
        let changes = tail
            .get(..len)
            .ok_or_else(|| bad("truncated table section"))?;
        let table = t.numbered(n)?.ok_or_else(|| bad("unknown table number"))?;
        table.redo(changes).map_err(|e| match e {
            QueueError::Corrupt { detail } => bad(&detail),
            e => e,
        })?;
        rest = &tail[len..];
    }
    Ok(())
}

fn take_u32(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (n, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*n) as usize, rest))
}

fn take_slice(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = take_u32(bytes)?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

fn push_slice(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A write table that records every change it makes, as `op u8 | key | value` (value only for an
/// insert; key and value each `len u32 | bytes` in redb's own encoding). Reads go through `Deref`
/// to the table; changes only through these methods, so none escapes the log.
pub(crate) struct Logged<'txn, K: Key + 'static, V: Value + 'static> {
    table: Table<'txn, K, V>,
    log: Vec<u8>,
}

impl<'txn, K: Key + 'static, V: Value + 'static> Logged<'txn, K, V> {
    fn new(table: Table<'txn, K, V>) -> Self {
        Logged {
            table,
            log: Vec::new(),
        }
    }

    pub(crate) fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<(), StorageError> {
        let (key, value) = (key.borrow(), value.borrow());
        self.log.push(OP_INSERT);
        push_slice(&mut self.log, K::as_bytes(key).as_ref());
        push_slice(&mut self.log, V::as_bytes(value).as_ref());
        self.table.insert(key, value)?;
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub(crate) fn remove<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<bool, StorageError> {
        let key = key.borrow();
        self.log.push(OP_REMOVE);
        push_slice(&mut self.log, K::as_bytes(key).as_ref());
        Ok(self.table.remove(key)?.is_some())
    }

    /// Removes every entry for which `keep` is false.
    pub(crate) fn retain(
        &mut self,
        mut keep: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> bool,
    ) -> Result<(), StorageError> {
        let log = &mut self.log;
        self.table.retain(|k, v| {
            let bytes = K::as_bytes(&k).as_ref().to_vec();
            let kept = keep(k, v);
            if !kept {
                log.push(OP_REMOVE);
                push_slice(log, &bytes);
            }
            kept
        })
    }
}

impl<'txn, K: Key + 'static, V: Value + 'static> Deref for Logged<'txn, K, V> {
    type Target = Table<'txn, K, V>;

    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

/// Whether bytes are a value of the type in redb's encoding, as its `from_bytes` would read them
/// without a panic. redb trusts its own bytes and panics on others (a wrong width, a string that
/// is not UTF-8); a log record that passed its checksum can still hold them if it was not written
/// by spheroseg, so the redo checks first. Implemented for the key and value types of our tables.
trait Encoded {
    fn valid(bytes: &[u8]) -> bool;
}

macro_rules! fixed_width {
    ($($t:ty),*) => {$(
        impl Encoded for $t {
            fn valid(bytes: &[u8]) -> bool {
                Some(bytes.len()) == <$t as Value>::fixed_width()
            }
        }
    )*};
}
fixed_width!(u8, u32, u64, u128, ());

impl Encoded for &str {
    fn valid(bytes: &[u8]) -> bool {
        std::str::from_utf8(bytes).is_ok()
    }
}

impl Encoded for &[u8] {
    fn valid(_: &[u8]) -> bool {
        true
    }
}

/// Splits a tuple's bytes into its elements as redb lays them out: the lengths of the
/// variable-width elements but the last first (a varint each: one byte under 254, else 254 and a
/// u16, or 255 and a u32), then the elements themselves.
fn split_tuple<const N: usize>(fixed: [Option<usize>; N], data: &[u8]) -> Option<[&[u8]; N]> {
    let mut lens = [0usize; N];
    let mut at = 0;
    for i in 0..N {
        lens[i] = match fixed[i] {
            Some(n) => n,
            None if i + 1 < N => {
                let (len, used) = match *data.get(at)? {
                    n @ 0..=253 => (usize::from(n), 1),
                    254 => (
                        usize::from(u16::from_le_bytes(
                            data.get(at + 1..at + 3)?.try_into().ok()?,
                        )),
                        3,
                    ),
                    255 => (
                        u32::from_le_bytes(data.get(at + 1..at + 5)?.try_into().ok()?) as usize,
                        5,
                    ),
                };
                at += used;
                len
            }
            // The last variable element takes what is left.
            None => usize::MAX,
        };
    }
    let mut out = [&data[..0]; N];
    for i in 0..N {
        let len = if lens[i] == usize::MAX {
            data.len().checked_sub(at)?
        } else {
            lens[i]
        };
        out[i] = data.get(at..at.checked_add(len)?)?;
        at += len;
    }
    (at == data.len()).then_some(out)
}

impl<A: Value + Encoded, B: Value + Encoded> Encoded for (A, B) {
    fn valid(bytes: &[u8]) -> bool {
        split_tuple([A::fixed_width(), B::fixed_width()], bytes)
            .is_some_and(|[a, b]| A::valid(a) && B::valid(b))
    }
}

impl<A: Value + Encoded, B: Value + Encoded, C: Value + Encoded> Encoded for (A, B, C) {
    fn valid(bytes: &[u8]) -> bool {
        split_tuple(
            [A::fixed_width(), B::fixed_width(), C::fixed_width()],
            bytes,
        )
        .is_some_and(|[a, b, c]| A::valid(a) && B::valid(b) && C::valid(c))
    }
}

fn check<T: Encoded + Value>(bytes: &[u8], what: &str) -> Result<(), QueueError> {
    if T::valid(bytes) {
        Ok(())
    } else {
        Err(QueueError::Corrupt {
            detail: format!(
                "a {what} of {} bytes is not a {}",
                bytes.len(),
                T::type_name().name()
            ),
        })
    }
}

/// What [`Tables::take_log`] and [`redo`] need of a table, whatever its key and value types.
trait Redo {
    fn take(&mut self) -> Vec<u8>;
    fn redo(&mut self, changes: &[u8]) -> Result<(), QueueError>;
}

impl<K: Key + Encoded + 'static, V: Value + Encoded + 'static> Redo for Logged<'_, K, V> {
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.log)
    }

    fn redo(&mut self, mut changes: &[u8]) -> Result<(), QueueError> {
        let bad = || QueueError::Corrupt {
            detail: "truncated change".into(),
        };
        while let Some((&op, rest)) = changes.split_first() {
            let (key, rest) = take_slice(rest).ok_or_else(bad)?;
            check::<K>(key, "key")?;
            changes = match op {
                OP_INSERT => {
                    let (value, rest) = take_slice(rest).ok_or_else(bad)?;
                    check::<V>(value, "value")?;
                    self.table
                        .insert(K::from_bytes(key), V::from_bytes(value))?;
                    rest
                }
                OP_REMOVE => {
                    self.table.remove(K::from_bytes(key))?;
                    rest
                }
                _ => {
                    return Err(QueueError::Corrupt {
                        detail: format!("unknown change kind {op}"),
                    });
                }
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: Value>(v: &T::SelfType<'_>) -> Vec<u8> {
        let b = T::as_bytes(v);
        b.as_ref().to_vec()
    }

    /// Every type's own encoding is valid, and the damage the fuzzer found is not.
    #[test]
    fn redb_encodings_are_recognised() {
        let ok = bytes::<(&str, u128)>(&("plate-1", 7u128));
        assert!(<(&str, u128)>::valid(&ok));
        assert!(!<(&str, u128)>::valid(&ok[..ok.len() - 1]));
        let long = "x".repeat(300);
        let long = bytes::<(&str, u128)>(&(long.as_str(), 1u128));
        assert!(<(&str, u128)>::valid(&long));
        let three = bytes::<(u8, u64, u128)>(&(3u8, 9u64, 1u128));
        assert!(<(u8, u64, u128)>::valid(&three));
        assert!(!<(u8, u64, u128)>::valid(&three[1..]));
        assert!(<&str>::valid(b"count.queued.05"));
        assert!(!<&str>::valid(&[0xff, 0xfe]));
        assert!(!u128::valid(&[0; 15]));
        assert!(<()>::valid(&[]));
    }
}
