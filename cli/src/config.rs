//! The CLI's own constants and defaults: the workloads' settings, the demo's dependency rule, queue and sweep figures.

use crate::error::CliError;
use synctrail::destination::dependencies::DependencyRule;
use synctrail::{Policy, Settings};

/// The entity type whose events are deltas, applied one at a time in order (spec §5).
pub const IN_ORDER_ENTITY_TYPE: &str = "inventory_adjustment";

/// The demo domain's dependency (spec §6): an inventory level needs its product to exist.
pub const DEMO_DEPENDENCY: &str = "inventory_level.product_id=product";

/// The engine settings the workload generators assume: the defaults, with policy `in_order` for
/// [`IN_ORDER_ENTITY_TYPE`].
pub fn base_settings() -> Settings {
    Settings::default().with_policy(IN_ORDER_ENTITY_TYPE, Policy::InOrder)
}

/// The demo's dependency rule ([`DEMO_DEPENDENCY`]): the demo adds it to whatever `SYNCTRAIL_DEPENDENCIES`
/// configures; no other command applies it.
pub fn demo_dependency() -> Result<DependencyRule, CliError> {
    DependencyRule::parse(DEMO_DEPENDENCY).map_err(|e| CliError::InvalidArgument(e.to_string()))
}

/// Receives after which a message goes to the dead-letter queue, for everyday use (SQS `maxReceiveCount`).
pub const MAX_RECEIVES: u32 = synctrail::config::DEFAULT_MAX_RECEIVES;

/// Receives after which a message goes to the dead-letter queue in the demo and the benchmark: 10 instead of 5.
///
/// Not every receive is an attempt: a message that meets its entity busy (its own claim still live after a
/// crash, a duplicate delivery racing the original, a full `in_order` backlog) is returned to the queue with a
/// short delay, and that return costs a receive without costing an attempt. Under the demo's injected faults an
/// event may see several such returns on top of its retries; with only 5 receives the queue could dead-letter a
/// message whose event still has attempts left.
pub const DRILL_MAX_RECEIVES: u32 = 10;

/// The name prefix `synctrail setup --backend aws` gives the resources unless told otherwise.
pub const DEFAULT_PREFIX: &str = "synctrail-dev";

/// How long an SQS queue must look empty before the local runtime calls it drained (its counts are approximate).
pub const SQS_QUIET_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// How often the local runtime polls an SQS queue's depth (two `GetQueueAttributes` requests a poll).
pub const SQS_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// How many expired leases one sweep looks at.
pub const SWEEP_LIMIT: usize = synctrail::config::DEFAULT_SWEEP_LIMIT;

/// The `function` recorded in history entries written by the CLI's sweeper.
pub const SWEEPER_FUNCTION: &str = "sweeper:cli";

/// The `function` recorded in history entries written by `synctrail reprocess` and `dead-letters`.
pub const REPROCESS_FUNCTION: &str = "reprocess:cli";
