//! The built-in HTTP destination: every change is a `POST` of its JSON to the team's endpoint, and the answer's
//! status code says what happened. The protocol, written for receivers, is `docs/destination-protocol.md`.
//!
//! - [`config`]: [`HttpDestinationConfig`], read once from `SYNCTRAIL_DESTINATION_*` variables.
//! - [`wire`]: the request body ([`WireChange`]).
//! - [`signature`]: `Synctrail-Signature` (HMAC-SHA256), signing and verifying.
//! - [`outcome`]: an answer (status, `Retry-After`, body) as an [`ApplyOutcome`](crate::destination::ApplyOutcome) or a
//!   [`DestinationError`](crate::destination::DestinationError).
//! - [`client`]: [`HttpDestination`], one signed `POST` per change.
//! - [`read`]: reading back (`GET ?entity=<key>`), for `reconcile` and `verify`.
//! - [`transport`]: the pooled HTTP/1.1 client (hyper, rustls on ring, the platform's TLS roots), the timeouts and
//!   the limit of requests in flight — shared with the outbound connectors.

pub mod client;
pub mod config;
pub mod outcome;
pub mod read;
pub mod signature;
pub mod transport;
pub mod wire;

pub use client::HttpDestination;
pub use config::{HttpConfigError, HttpDestinationConfig};
pub use signature::{Secret, SignatureError};
pub use wire::{WireChange, WireEntity, WireOrder};
