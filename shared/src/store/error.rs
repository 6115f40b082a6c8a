//! Storage errors by meaning, each keeping the backend's own error as its source.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// What went wrong in a port, by meaning; each adapter converts its own errors into these, keeping them as the
/// [`Error::source`] (an AWS SDK error, a rusqlite error) so a caller can still look at the original.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-set expectation did not hold: re-read and decide again.
    #[error("conflict: {0}")]
    Conflict(#[source] Detail),
    /// The item does not exist.
    #[error("not found: {0}")]
    NotFound(#[source] Detail),
    /// The backend is rate-limiting us: retry later, or raise its capacity.
    #[error("throttled by the backend: {0}; retry later or raise the table's capacity")]
    Throttled(#[source] Detail),
    /// The backend could not be reached or failed transiently: retry later.
    #[error("backend unavailable: {0}; retry later")]
    Unavailable(#[source] Detail),
    /// Stored data does not match its checksum or cannot be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(#[source] Detail),
    /// The object was archived (e.g. to Glacier) and must be restored before it can be read.
    #[error("archived: {0}; restore it first")]
    Archived(#[source] Detail),
    /// The backend is misconfigured or was used wrongly.
    #[error("backend error: {0}")]
    Backend(#[source] Detail),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict(_) | Self::Throttled(_) | Self::Unavailable(_))
    }

    /// A stable name of the error's meaning, for machines (a Lambda's `errorType`, metrics): `StoreConflict`,
    /// `StoreNotFound`, `StoreThrottled`, `StoreUnavailable`, `StoreCorrupt`, `PayloadArchived`, `StoreBackend`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Conflict(_) => "StoreConflict",
            Self::NotFound(_) => "StoreNotFound",
            Self::Throttled(_) => "StoreThrottled",
            Self::Unavailable(_) => "StoreUnavailable",
            Self::Corrupt(_) => "StoreCorrupt",
            Self::Archived(_) => "PayloadArchived",
            Self::Backend(_) => "StoreBackend",
        }
    }

    /// What happened, without the meaning's prefix.
    pub fn detail(&self) -> &Detail {
        match self {
            Self::Conflict(d)
            | Self::NotFound(d)
            | Self::Throttled(d)
            | Self::Unavailable(d)
            | Self::Corrupt(d)
            | Self::Archived(d)
            | Self::Backend(d) => d,
        }
    }
}

/// What happened: a message for people (it reads as a `str`) and, when a backend reported it, that backend's error
/// as the source.
#[derive(Clone)]
pub struct Detail {
    message: String,
    source: Option<Arc<dyn Error + Send + Sync + 'static>>,
}

impl Detail {
    /// `message`, caused by the backend's `source`.
    pub fn caused_by(message: impl Into<String>, source: impl Error + Send + Sync + 'static) -> Self {
        Self { message: message.into(), source: Some(Arc::new(source)) }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for Detail {
    fn from(message: String) -> Self {
        Self { message, source: None }
    }
}

impl From<&str> for Detail {
    fn from(message: &str) -> Self {
        Self::from(message.to_owned())
    }
}

impl std::ops::Deref for Detail {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Detail");
        d.field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl Error for Detail {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("socket closed")]
    struct Closed;

    #[test]
    fn the_backends_error_is_kept_as_the_source_and_the_message_reads_as_text() {
        let error = StoreError::Unavailable(Detail::caused_by("reading event e-1", Closed));
        assert_eq!(error.to_string(), "backend unavailable: reading event e-1; retry later");
        assert!(error.detail().contains("e-1"));
        let detail = error.source().expect("the detail is the source");
        let backend = detail.source().expect("the backend's error is the detail's source");
        assert!(backend.downcast_ref::<Closed>().is_some());
        assert!(StoreError::Conflict("no backend error".into()).detail().source().is_none());
    }
}
