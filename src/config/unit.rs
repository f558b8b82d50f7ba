//! How durations and optional limits are written back to TOML (`config show`): in the unit of
//! their key, and 0 for no limit.

use std::time::Duration;

use serde::Serializer;

pub fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

pub fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

pub fn secs_or_zero<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.map_or(0, |d| d.as_secs()))
}

pub fn days_or_zero<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.map_or(0, |d| d.as_secs() / 86_400))
}

pub fn count_or_zero<S: Serializer>(n: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(n.unwrap_or(0))
}
