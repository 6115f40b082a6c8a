//! Webhook ingress: verify a delivery's signature, then map a GitHub, Shopify or configured delivery to the
//! envelope the ingest queue takes (spec §1). No I/O; the one time it reads (to refuse a Shopify delete timed
//! ahead of ours) comes from an injected [`Clock`]. The HTTP Lambda (`POST /webhooks/{source}`) and `synctrail
//! serve` call [`Ingress::handle`] and act on the [`Verdict`]; docs/webhooks.md has the routes, the mapping tables
//! and the event-id choice.
//!
//! Order of checks: unknown source (404) → body over the limit (413) → signature (401) → mapping. Nothing reads
//! the body as JSON before its signature is verified.

mod config;
mod draft;
mod generic;
mod github;
mod headers;
mod shopify;
mod signature;

pub use config::{
    synctrail_vars, ConfigError, IngressConfig, Provider, SourceConfig, MAPPING_PREFIX, MAX_BODY_VARIABLE,
    MAX_PAYLOAD_VARIABLE, SECRET_PREFIX,
};
pub use draft::{Ignored, MappedEvent, MappingError, CREATE_VERSION, DELETE_VERSION};
pub use generic::{EntityTypeAt, GenericMapping};
pub use headers::Headers;
pub use shopify::MAX_TRIGGERED_AHEAD_SECONDS;
pub use signature::{AuthFailure, Encoding, Secret, SignatureScheme};

use crate::clock::{Clock, SystemClock};
use draft::Mapping;
use std::fmt;
use std::sync::Arc;

/// Verifies and maps webhook deliveries.
#[derive(Clone)]
pub struct Ingress {
    config: IngressConfig,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Ingress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ingress").field("config", &self.config).finish_non_exhaustive()
    }
}

/// What to do with one delivery. [`Verdict::status`] is the HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No source of that name: 404, nothing kept.
    UnknownSource,
    /// The body is over the limit: 413, nothing kept (the body was not read).
    TooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The signature is missing, malformed or wrong: 401 with no detail, nothing kept; the reason is for
    /// metrics and logs only.
    Unauthenticated(AuthFailure),
    /// Authenticated but not synced (GitHub `ping`, event types and topics with no mapping): 200, not queued.
    Ignored(Ignored),
    /// Authenticated and mapped: queue the envelope body, then answer 202.
    Mapped(Box<MappedEvent>),
    /// Authenticated but not mappable: answer 202, record it `rejected` with the reason and archive the raw body.
    Unmappable(MappingError),
}

impl Verdict {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownSource => 404,
            Self::TooLarge { .. } => 413,
            Self::Unauthenticated(_) => 401,
            Self::Ignored(_) => 200,
            Self::Mapped(_) | Self::Unmappable(_) => 202,
        }
    }

    /// A short label for metrics: `unknown_source`, `too_large`, `unauthenticated`, `ignored`, `mapped` or
    /// `unmappable`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::UnknownSource => "unknown_source",
            Self::TooLarge { .. } => "too_large",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Ignored(_) => "ignored",
            Self::Mapped(_) => "mapped",
            Self::Unmappable(_) => "unmappable",
        }
    }
}

impl Ingress {
    /// An ingress for these sources and limits, on the machine's clock.
    pub fn new(config: IngressConfig) -> Self {
        Self { config, clock: Arc::new(SystemClock) }
    }

    /// The same ingress on `clock` (the composition's: `Ingest::new` passes its engine's).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// An ingress configured by the environment ([`IngressConfig::from_vars`] lists the variables).
    pub fn from_env() -> Result<Self, ConfigError> {
        IngressConfig::from_env().map(Self::new)
    }

    /// The configuration in use.
    pub fn config(&self) -> &IngressConfig {
        &self.config
    }

    /// The verdict on one delivery to `POST /webhooks/{source}` with these headers and raw body bytes.
    pub fn handle(&self, source: &str, headers: &Headers, body: &[u8]) -> Verdict {
        let Some(config) = self.config.sources.get(source) else {
            return Verdict::UnknownSource;
        };
        if body.len() > self.config.max_body_bytes {
            return Verdict::TooLarge { size: body.len(), limit: self.config.max_body_bytes };
        }
        if let Err(failure) = config.provider.signature().verify(&config.secret, headers, body) {
            return Verdict::Unauthenticated(failure);
        }
        let mapping = match &config.provider {
            Provider::GitHub => github::map(headers, body),
            Provider::Shopify => shopify::map(headers, body, self.clock.now()),
            Provider::Generic(mapping) => mapping.map(headers, body),
        };
        match mapping {
            Ok(Mapping::Ignore(ignored)) => Verdict::Ignored(ignored),
            Ok(Mapping::Change(draft)) => match draft.finish(source, self.config.max_payload_bytes) {
                Ok(mapped) => Verdict::Mapped(Box::new(mapped)),
                Err(error) => Verdict::Unmappable(error),
            },
            Err(error) => Verdict::Unmappable(error),
        }
    }
}
