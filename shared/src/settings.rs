//! Engine settings: leases, retries, limits and the ordering policy per entity type.

use crate::model::EntityKey;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    /// How many events an `in_order` entity may hold queued in its head (8: every event of a busy entity rewrites
    /// its head, so a small head is cheap; the rest are parked and found through an index of parked events).
    pub max_backlog: usize,
    /// Ordering policy per entity type; types not listed use `default_policy`.
    pub policies: BTreeMap<String, Policy>,
    /// The policy of entity types not listed in `policies`.
    pub default_policy: Policy,
    /// Compare-and-set rounds before a contended decision gives up and retries later.
    pub max_rounds: u32,
    /// Sources whose events end `disabled` on arrival (kept, not applied, re-drivable).
    pub disabled_sources: BTreeSet<String>,
    /// Tenants whose events end `disabled` on arrival.
    pub disabled_tenants: BTreeSet<String>,
    /// How long an event may wait for a missing dependency before it ends `failed` (spec §6).
    pub max_wait: Duration,
    /// The queue of each processor function (its name, without version) when several are deployed, one per
    /// destination: a reprocess sends an event's re-drive to the queue of the processor recorded on the event;
    /// an event no listed processor handled goes to the one queue.
    pub redrive_queues: BTreeMap<String, String>,
    /// What the sweeper does when an entity it verifies (one flagged `needs_verification`) differs from the replay
    /// of its events: re-drive the newest applied event to repair it (`true`), or only report it.
    pub verify_repair: bool,
    /// The least time between two verifications of one entity by the sweeper: an entity flagged again sooner keeps
    /// its flag until then (a replay reads the entity's whole history; spec §7).
    pub verify_interval: Duration,
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
            metadata_retention: Duration::days(430),
            max_backlog: 8,
            policies: BTreeMap::new(),
            default_policy: Policy::LatestWins,
            max_rounds: 32,
            disabled_sources: BTreeSet::new(),
            disabled_tenants: BTreeSet::new(),
            max_wait: Duration::hours(1),
            redrive_queues: BTreeMap::new(),
            verify_repair: false,
            verify_interval: Duration::minutes(15),
        }
    }
}

impl Settings {
    /// The policy that orders events of `entity_type`.
    pub fn policy_for(&self, entity_type: &str) -> Policy {
        self.policies.get(entity_type).copied().unwrap_or(self.default_policy)
    }

    /// Why events of `entity` are disabled, if they are: its source or its tenant is.
    pub fn disabled_reason(&self, entity: &EntityKey) -> Option<String> {
        if self.disabled_sources.contains(&entity.source) {
            Some(format!("source {} is disabled", entity.source))
        } else if self.disabled_tenants.contains(&entity.tenant) {
            Some(format!("tenant {} is disabled", entity.tenant))
        } else {
            None
        }
    }

    /// The queue a re-drive of `record` goes to: the queue of the last processor function that wrote its history
    /// (claimed it, or queued it on arrival), when [`Settings::redrive_queues`] names one; `None`: the one queue.
    /// Functions not named there (the sweeper, the CLI) are passed over.
    pub fn redrive_queue_for(&self, record: &crate::model::EventRecord) -> Option<&str> {
        if self.redrive_queues.is_empty() {
            return None;
        }
        record
            .history
            .iter()
            .rev()
            .filter_map(|entry| entry.function.as_deref())
            .map(|function| function.split_once(':').map_or(function, |(name, _)| name))
            .find_map(|name| self.redrive_queues.get(name))
            .map(String::as_str)
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
    /// What it should be (with an example where that helps).
    pub expected: String,
}

impl Settings {
    /// The defaults, overridden by the variables `vars` looks up (the process environment, or flags over it):
    /// `SYNCTRAIL_IN_ORDER_TYPES` (comma-separated entity types with policy `in_order`), `SYNCTRAIL_DISABLED_SOURCES`
    /// and `SYNCTRAIL_DISABLED_TENANTS` (comma-separated), `SYNCTRAIL_MAX_ATTEMPTS`, `SYNCTRAIL_LEASE_SECONDS`,
    /// `SYNCTRAIL_MAX_WAIT_SECONDS`, `SYNCTRAIL_VERIFY_INTERVAL_SECONDS`, `SYNCTRAIL_MAX_BACKLOG` (at least 1),
    /// `SYNCTRAIL_REDRIVE_QUEUES` (`FUNCTION=QUEUE_URL`, comma-separated), `SYNCTRAIL_METADATA_RETENTION_DAYS` (the
    /// TTL: keep it longer than the payloads' expiry) and `SYNCTRAIL_MAX_PAYLOAD_BYTES`.
    pub fn from_vars(vars: &dyn Fn(&str) -> Option<String>) -> Result<Self, InvalidSetting> {
        Settings::default().overridden_by(vars)
    }

    /// These settings, overridden by the variables [`Settings::from_vars`] reads.
    pub fn overridden_by(self, vars: &dyn Fn(&str) -> Option<String>) -> Result<Self, InvalidSetting> {
        let mut settings = self;
        for entity_type in list(vars, "SYNCTRAIL_IN_ORDER_TYPES") {
            settings = settings.with_policy(&entity_type, Policy::InOrder);
        }
        settings.disabled_sources.extend(list(vars, "SYNCTRAIL_DISABLED_SOURCES"));
        settings.disabled_tenants.extend(list(vars, "SYNCTRAIL_DISABLED_TENANTS"));
        if let Some(retention) = duration(vars, "SYNCTRAIL_METADATA_RETENTION_DAYS", DAY)? {
            settings.metadata_retention = retention;
        }
        if let Some(max_wait) = duration(vars, "SYNCTRAIL_MAX_WAIT_SECONDS", SECOND)? {
            settings.max_wait = max_wait;
        }
        if let Some(n) = number(vars, "SYNCTRAIL_MAX_ATTEMPTS")? {
            settings.max_attempts = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        }
        if let Some(n) = number(vars, "SYNCTRAIL_MAX_BACKLOG")? {
            settings.max_backlog = usize::try_from(n).unwrap_or(usize::MAX).max(1);
        }
        if let Some(interval) = duration(vars, "SYNCTRAIL_VERIFY_INTERVAL_SECONDS", SECOND)? {
            settings.verify_interval = interval;
        }
        if let Some(lease) = duration(vars, "SYNCTRAIL_LEASE_SECONDS", SECOND)? {
            settings.lease = lease;
        }
        for item in list(vars, "SYNCTRAIL_REDRIVE_QUEUES") {
            let (function, queue) = item.split_once('=').ok_or_else(|| InvalidSetting {
                name: "SYNCTRAIL_REDRIVE_QUEUES",
                value: item.clone(),
                expected: "FUNCTION=QUEUE_URL items separated by commas, e.g. synctrail-erp-processor=https://sqs.…/erp-ingest".into(),
            })?;
            settings.redrive_queues.insert(function.trim().to_owned(), queue.trim().to_owned());
        }
        if let Some(n) = number(vars, "SYNCTRAIL_MAX_PAYLOAD_BYTES")? {
            settings.max_payload_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        match vars("SYNCTRAIL_VERIFY_REPAIR").as_deref().map(str::trim) {
            None => {}
            Some("true" | "1") => settings.verify_repair = true,
            Some("false" | "0") => settings.verify_repair = false,
            Some(other) => {
                return Err(InvalidSetting {
                    name: "SYNCTRAIL_VERIFY_REPAIR",
                    value: other.to_owned(),
                    expected: "true (the sweeper repairs differences it finds) or false (it reports them)".into(),
                })
            }
        }
        Ok(settings)
    }
}

/// The comma-separated items of a variable (none when unset).
fn list(vars: &dyn Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    vars(name)
        .map(|v| v.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn number(vars: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<Option<u64>, InvalidSetting> {
    match vars(name) {
        None => Ok(None),
        Some(value) => value.trim().parse().map(Some).map_err(|_| InvalidSetting {
            name,
            value,
            expected: "a whole number".into(),
        }),
    }
}

/// One second and one day, in seconds: the units duration variables are given in.
const SECOND: u64 = 1;
const DAY: u64 = 86_400;

/// The longest duration a variable may give: 100 years (times added to a record's stay far inside what the time type
/// holds; a longer retention, wait or lease is a typo).
const LONGEST_SECONDS: u64 = 100 * 365 * DAY;

/// A duration variable given in whole `unit`s of seconds, at most [`LONGEST_SECONDS`].
fn duration(
    vars: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    unit: u64,
) -> Result<Option<Duration>, InvalidSetting> {
    let Some(n) = number(vars, name)? else { return Ok(None) };
    match n.checked_mul(unit).filter(|s| *s <= LONGEST_SECONDS).and_then(|s| i64::try_from(s).ok()) {
        Some(seconds) => Ok(Some(Duration::seconds(seconds))),
        None => Err(InvalidSetting {
            name,
            value: n.to_string(),
            expected: format!("a whole number up to {} (100 years)", LONGEST_SECONDS / unit),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_past_a_hundred_years_is_refused_naming_its_variable() {
        for (name, longest) in [
            ("SYNCTRAIL_METADATA_RETENTION_DAYS", 36_500_u64),
            ("SYNCTRAIL_MAX_WAIT_SECONDS", 3_153_600_000),
            ("SYNCTRAIL_VERIFY_INTERVAL_SECONDS", 3_153_600_000),
            ("SYNCTRAIL_LEASE_SECONDS", 3_153_600_000),
        ] {
            let at_most = |value: u64| move |n: &str| (n == name).then(|| value.to_string());
            assert!(Settings::from_vars(&at_most(longest)).is_ok(), "{name}={longest}");
            let refused = Settings::from_vars(&at_most(longest + 1)).expect_err("past 100 years");
            assert_eq!(refused.name, name);
            assert!(refused.expected.contains(&longest.to_string()), "{}", refused.expected);
            assert!(Settings::from_vars(&at_most(u64::MAX)).is_err(), "{name} overflowing its unit");
        }
        let retention = |n: &str| (n == "SYNCTRAIL_METADATA_RETENTION_DAYS").then(|| "365".to_owned());
        assert_eq!(Settings::from_vars(&retention).expect("valid").metadata_retention, Duration::days(365));
    }

    #[test]
    fn variables_override_the_defaults_and_a_bad_number_names_its_variable() {
        let vars = |name: &str| match name {
            "SYNCTRAIL_IN_ORDER_TYPES" => Some("stock, ledger".to_owned()),
            "SYNCTRAIL_MAX_ATTEMPTS" => Some("9".to_owned()),
            "SYNCTRAIL_MAX_BACKLOG" => Some("0".to_owned()),
            "SYNCTRAIL_VERIFY_INTERVAL_SECONDS" => Some("3600".to_owned()),
            _ => None,
        };
        let settings = Settings::from_vars(&vars).expect("valid");
        assert_eq!(
            (settings.policy_for("ledger"), settings.policy_for("issue")),
            (Policy::InOrder, Policy::LatestWins)
        );
        assert_eq!(settings.max_attempts, 9);
        assert_eq!(settings.max_backlog, 1, "a backlog holds at least one event");
        assert_eq!(settings.verify_interval, Duration::hours(1));
        let bad = |name: &str| (name == "SYNCTRAIL_LEASE_SECONDS").then(|| "soon".to_owned());
        let error = Settings::from_vars(&bad).expect_err("not a number");
        assert!(error.to_string().contains("SYNCTRAIL_LEASE_SECONDS"), "{error}");
    }
}
