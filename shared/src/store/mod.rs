//! The storage ports the engine needs, with no backend's types in them, and the adapters behind cargo features.
//!
//! Every backend passes one conformance suite (`tests/tests/conformance.rs`). Errors are by meaning
//! ([`StoreError`]); each adapter converts its own.

mod error;
mod events;
mod payloads;
mod queue;
pub mod snapshots;

#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "aws")]
pub mod aws;

pub use error::{Detail, StoreError};
pub use events::{EventQuery, EventStore, Expect, HeadPage, PartialCommit, Write};
pub use payloads::PayloadStore;
pub use queue::{OutgoingMessage, Queue, QueueDepth, QueueMessage, RECEIVE_RECHECK};
pub use snapshots::{FileSnapshot, Snapshot, SnapshotStore};
