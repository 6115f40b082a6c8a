//! How values are stored: times as i64 UTC nanoseconds, counters as i64, records as JSON text.

use crate::store::StoreError;
use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A time as UTC nanoseconds since the Unix epoch (representable from 1677 to 2262).
pub(crate) fn nanos(at: DateTime<Utc>) -> Result<i64, StoreError> {
    at.timestamp_nanos_opt()
        .ok_or_else(|| StoreError::Backend(format!("time {at} is outside 1677..2262 and cannot be stored").into()))
}

/// The time stored as `n` UTC nanoseconds.
pub(crate) fn time(n: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(n)
}

/// `now + by` in nanoseconds, saturating; negative durations count as zero.
pub(crate) fn after(now: i64, by: Duration) -> i64 {
    let by = by.num_nanoseconds().unwrap_or(i64::MAX).max(0);
    now.saturating_add(by)
}

/// A version, fence or count as an SQLite integer.
pub(crate) fn int(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{what} {value} is too large to store").into()))
}

/// A stored integer as u64 (negative values are corrupt).
pub(crate) fn uint(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{what} is {value}, expected a non-negative number").into()))
}

/// `value` as JSON text.
pub(crate) fn to_json<T: Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding {what} as JSON: {e}").into()))
}

/// Decodes stored JSON text: a failure means the row is corrupt.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str, what: impl std::fmt::Display) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{what}: stored JSON does not decode: {e}").into()))
}

/// 128 random bits as 32 hex digits: receipt handles.
pub(crate) fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// 16 hex digits of `now` (UTC nanoseconds) then 64 random bits: message ids. Ids that sort by the time they
/// were made keep the queue's unique index on them growing at its end: a send or a delete touches its newest
/// pages, shared by the whole batch, instead of a random page per message.
pub(crate) fn time_ordered_id(now: i64) -> String {
    format!("{:016x}{}", now.max(0), hex::encode(rand::random::<[u8; 8]>()))
}

/// Statements through the connection's statement cache: parsed once per connection, not once per call.
pub(crate) trait Cached {
    /// `execute` with a cached statement.
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// `query_row` with a cached statement.
    fn one<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for rusqlite::Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn one<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}
