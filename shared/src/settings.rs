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
