//! Engine settings: leases, retries, limits and the ordering policy per entity type.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the events of one entity type are ordered (spec §4, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Snapshots: the newest wins; stale events are dropped, superseded queued ones canceled.
    #[default]
    LatestWins,
    /// Deltas: every event is applied, one at a time, in order-key order.
    InOrder,
}

/// Everything the engine needs to know that is not in an event.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a claim holds an entity when the invocation's deadline is unknown.
    pub lease: Duration,
    /// Added when judging another writer's lease expired (clocks differ between writers).
    pub clock_margin: Duration,
    /// Attempts of one event before it ends `failed` (counted by the engine, not by SQS).
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, with jitter, up to `backoff_max`.
    pub backoff_base: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// The largest payload accepted, in bytes of its JSON text.
    pub max_payload_bytes: usize,
    /// How long event metadata is kept (its TTL).
    pub metadata_retention: Duration,
    /// How many events an `in_order` entity may hold queued in its head.
    pub max_backlog: usize,
    /// Ordering policy per entity type; types not listed use `default_policy`.
    pub policies: BTreeMap<String, Policy>,
    /// The policy of entity types not listed in `policies`.
    pub default_policy: Policy,
    /// Compare-and-set rounds before a contended decision gives up and retries later.
    pub max_rounds: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease: Duration::seconds(30),
            clock_margin: Duration::milliseconds(500),
            max_attempts: 5,
            backoff_base: Duration::seconds(2),
            backoff_max: Duration::minutes(5),
            max_payload_bytes: 256 * 1024,
            metadata_retention: Duration::days(400),
            max_backlog: 64,
            policies: BTreeMap::new(),
            default_policy: Policy::LatestWins,
            max_rounds: 32,
        }
    }
}

impl Settings {
    /// The policy that orders events of `entity_type`.
    pub fn policy_for(&self, entity_type: &str) -> Policy {
        self.policies.get(entity_type).copied().unwrap_or(self.default_policy)
    }

    /// Sets the policy of one entity type.
    pub fn with_policy(mut self, entity_type: &str, policy: Policy) -> Self {
        self.policies.insert(entity_type.to_owned(), policy);
        self
    }
}

/// A setting from the environment that can't be used.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: expected {expected}")]
pub struct InvalidSetting {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What it should be.
    pub expected: &'static str,
}

impl Settings {
    /// The defaults, overridden by `SYNCTRAIL_IN_ORDER_TYPES` (comma-separated entity types with policy
    /// `in_order`), `SYNCTRAIL_MAX_ATTEMPTS`, `SYNCTRAIL_LEASE_SECONDS` and `SYNCTRAIL_MAX_PAYLOAD_BYTES`.
    pub fn from_env() -> Result<Self, InvalidSetting> {
        let mut settings = Settings::default();
        if let Ok(types) = std::env::var("SYNCTRAIL_IN_ORDER_TYPES") {
            for entity_type in types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                settings = settings.with_policy(entity_type, Policy::InOrder);
            }
        }
        if let Some(n) = number("SYNCTRAIL_MAX_ATTEMPTS")? {
            settings.max_attempts = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        }
        if let Some(n) = number("SYNCTRAIL_LEASE_SECONDS")? {
            settings.lease = Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1_000_000));
        }
        if let Some(n) = number("SYNCTRAIL_MAX_PAYLOAD_BYTES")? {
            settings.max_payload_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        Ok(settings)
    }
}

fn number(name: &'static str) -> Result<Option<u64>, InvalidSetting> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(value) => {
            value.trim().parse().map(Some).map_err(|_| InvalidSetting { name, value, expected: "a whole number" })
        }
    }
}
