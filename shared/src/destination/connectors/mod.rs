//! Outbound connectors: destinations that write our own changes (`direction: outbound`) into an external system
//! through its API — [`GitHubConnector`] (issues and issue comments) and [`ShopifyConnector`] (products). Each
//! answers [`ApplyOutcome::Written`](crate::destination::ApplyOutcome::Written) with what the system now holds, so
//! the engine recognises the system's webhook echoing the write back (spec §10). docs/connectors.md has the
//! configuration, what each writes, idempotency and rate limits.
//!
//! - [`config`]: [`OutboundConfig`], read once from `SYNCTRAIL_OUTBOUND` and the chosen connector's variables.
//! - `pace`: keeping to the API's rate limits between requests (a pause up to [`INLINE_WAIT`] is waited out).
//! - `rest`: JSON requests over the HTTP destination's [`Transport`](crate::destination::http::transport::Transport),
//!   following redirects on the API's own origin (at most [`MAX_REDIRECTS`]).

pub mod config;
pub mod github;
mod pace;
mod rest;
pub mod shopify;

pub use config::{GitHubConfig, Limits, OutboundConfig, ShopifyConfig, Token};
pub use github::GitHubConnector;
pub use pace::INLINE_WAIT;
pub use rest::MAX_REDIRECTS;
pub use shopify::ShopifyConnector;

use crate::clock::Clock;
use crate::destination::http::HttpConfigError;
use crate::destination::Destination;
use std::sync::Arc;

/// The connector `config` describes, on `clock`: one pooled client per cold start.
pub fn connector(config: &OutboundConfig, clock: Arc<dyn Clock>) -> Result<Arc<dyn Destination>, HttpConfigError> {
    Ok(match config {
        OutboundConfig::GitHub(github) => Arc::new(GitHubConnector::new(github.clone(), clock)?),
        OutboundConfig::Shopify(shopify) => Arc::new(ShopifyConnector::new(shopify.clone(), clock)?),
    })
}
