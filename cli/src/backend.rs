//! Opening the backend a command works on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use synctrail::engine::Ports;
use synctrail::store::sqlite::{Embedded, EmbeddedOptions};
use synctrail::store::StoreError;
use synctrail::{Clock, SystemClock};

/// The embedded backend under a home directory, with the engine's ports over it.
pub struct Backend {
    /// The home directory.
    pub home: PathBuf,
    /// The embedded adapters (the mirror, the queue's extra operations).
    pub embedded: Embedded,
    /// The engine's ports: the store, payloads, queue, the mirror as destination, the clock.
    pub ports: Ports,
}

impl Backend {
    /// Opens (creating when missing) the embedded backend under `home`, on the system clock.
    pub fn open(home: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        Self::open_with_clock(home, options, Arc::new(SystemClock))
    }

    /// Opens the embedded backend under `home` on `clock`.
    pub fn open_with_clock(home: &Path, options: EmbeddedOptions, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let embedded = Embedded::open(home, Arc::clone(&clock), options)?;
        let ports = Ports {
            store: embedded.store.clone(),
            payloads: embedded.payloads.clone(),
            queue: embedded.queue.clone(),
            destination: embedded.mirror.clone(),
            clock,
        };
        Ok(Self { home: home.to_owned(), embedded, ports })
    }
}
