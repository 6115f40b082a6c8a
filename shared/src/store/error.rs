//! Storage errors by meaning.

/// What went wrong in a port, by meaning; each adapter converts its own errors into these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-set expectation did not hold: re-read and decide again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The item does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend is rate-limiting us: retry later, or raise its capacity.
    #[error("throttled by the backend: {0}; retry later or raise the table's capacity")]
    Throttled(String),
    /// The backend could not be reached or failed transiently: retry later.
    #[error("backend unavailable: {0}; retry later")]
    Unavailable(String),
    /// Stored data does not match its checksum or cannot be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The object was archived (e.g. to Glacier) and must be restored before it can be read.
    #[error("archived: {0}; restore it first")]
    Archived(String),
    /// The backend is misconfigured or was used wrongly.
    #[error("backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict(_) | Self::Throttled(_) | Self::Unavailable(_))
    }
}
