//! Converting SQLite's errors into [`StoreError`]s by meaning.

use crate::store::{Detail, StoreError};
use rusqlite::{ffi, ErrorCode};
use std::fmt::Display;

/// Whether `e` is a primary-key or unique violation: an insert of a key that exists.
fn is_duplicate_key(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY || f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// Maps a rusqlite error met while doing `what`: busy or locked → `Unavailable` (retryable), and so are what the
/// machine may get over (a full disk, an I/O error, a file that can't be opened now — too many open files —, a lock
/// protocol error, out of memory); a duplicate key → `Conflict`, an undecodable column → `Corrupt`, anything else
/// (other constraints included) → `Backend`.
pub(crate) fn from_sqlite(what: impl Display, e: rusqlite::Error) -> StoreError {
    if is_duplicate_key(&e) {
        return StoreError::Conflict(Detail::caused_by(format!("{what}: {e}"), e));
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable(Detail::caused_by(
            format!("{what}: the SQLite database is busy ({e}); another writer held it past the busy timeout"),
            e,
        )),
        Some(
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::OutOfMemory,
        ) => StoreError::Unavailable(Detail::caused_by(
            format!("{what}: SQLite failed ({e}); free disk space or file handles, then retry"),
            e,
        )),
        _ => match e {
            rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
                StoreError::Corrupt(Detail::caused_by(format!("{what}: {e}"), e))
            }
            other => StoreError::Backend(Detail::caused_by(format!("{what}: {other}"), other)),
        },
    }
}

/// Adds what was being done to a rusqlite result, converting its error. `what` is written out only for an error:
/// on a hot path pass `format_args!(…)` rather than a `format!`ed string.
pub(crate) trait SqlContext<T> {
    /// Converts the error with [`from_sqlite`].
    fn ctx(self, what: impl Display) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn ctx(self, what: impl Display) -> Result<T, StoreError> {
        self.map_err(|e| from_sqlite(what, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_full_disk_or_an_io_error_is_retryable_and_a_misuse_is_not() {
        let failure =
            |code: std::ffi::c_int| from_sqlite("writing", rusqlite::Error::SqliteFailure(ffi::Error::new(code), None));
        for code in [ffi::SQLITE_FULL, ffi::SQLITE_IOERR, ffi::SQLITE_CANTOPEN, ffi::SQLITE_PROTOCOL, ffi::SQLITE_NOMEM]
        {
            assert!(failure(code).is_retryable(), "{code}: {:?}", failure(code));
        }
        assert!(matches!(failure(ffi::SQLITE_MISUSE), StoreError::Backend(_)));
        assert!(matches!(failure(ffi::SQLITE_CONSTRAINT_CHECK), StoreError::Backend(_)));
    }

    #[test]
    fn the_sqlite_error_stays_the_source() {
        let error = from_sqlite("reading event e-1", rusqlite::Error::QueryReturnedNoRows);
        assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
        let source = error.detail().source().expect("a source");
        assert!(matches!(source.downcast_ref::<rusqlite::Error>(), Some(rusqlite::Error::QueryReturnedNoRows)));
    }
}
