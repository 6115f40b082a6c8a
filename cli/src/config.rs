//! The one place the CLI's engine settings and backend options are defined (run, sweep, demo and bench use it).

use crate::error::CliError;
use synctrail::destination::dependencies::DependencyRule;
use synctrail::store::sqlite::EmbeddedOptions;
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

/// The engine settings: [`base_settings`] overridden by the environment (`SYNCTRAIL_DISABLED_SOURCES`,
/// `SYNCTRAIL_DISABLED_TENANTS`, `SYNCTRAIL_MAX_WAIT_SECONDS`, …; see `Settings::from_env`).
pub fn settings() -> Result<Settings, CliError> {
    base_settings().overridden_by_env().map_err(|e| CliError::InvalidArgument(e.to_string()))
}

/// The mirror's dependency rules: `SYNCTRAIL_DEPENDENCIES` (comma-separated `TYPE.FIELD=NEEDED_TYPE`; unset or empty:
/// none). Only `synctrail demo` adds [`DEMO_DEPENDENCY`], for its own workload.
pub fn dependency_rules() -> Result<Vec<DependencyRule>, CliError> {
    DependencyRule::from_env().map_err(|e| CliError::InvalidArgument(e.to_string()))
}

/// The demo's dependency rules: [`DEMO_DEPENDENCY`] plus whatever `SYNCTRAIL_DEPENDENCIES` adds.
pub fn demo_dependency_rules() -> Result<Vec<DependencyRule>, CliError> {
    let demo = DependencyRule::parse(DEMO_DEPENDENCY).map_err(|e| CliError::InvalidArgument(e.to_string()))?;
    let mut rules = dependency_rules()?;
    if !rules.contains(&demo) {
        rules.push(demo);
    }
    Ok(rules)
}

/// Receives after which a message goes to the dead-letter queue, for everyday use (SQS `maxReceiveCount`).
pub const MAX_RECEIVES: u32 = 5;

/// Receives after which a message goes to the dead-letter queue in the demo and the benchmark (see
/// [`drill_embedded_options`]).
pub const DRILL_MAX_RECEIVES: u32 = 10;

/// The name prefix `synctrail setup --backend aws` gives the resources unless told otherwise.
pub const DEFAULT_PREFIX: &str = "synctrail-dev";

/// The embedded backend's options for everyday commands (SQS-like `maxReceiveCount` 5).
pub fn embedded_options() -> EmbeddedOptions {
    EmbeddedOptions { max_receives: MAX_RECEIVES, ..EmbeddedOptions::default() }
}

/// The embedded backend's options for the demo and the benchmark: `max_receives` 10 instead of 5.
///
/// Not every receive is an attempt: a message that meets its entity busy (its own claim still live after a
/// crash, a duplicate delivery racing the original, a full `in_order` backlog) is returned to the queue with a
/// short delay, and that return costs a receive without costing an attempt. Under the demo's injected faults an
/// event may see several such returns on top of its retries; with only 5 receives the queue could dead-letter a
/// message whose event still has attempts left.
pub fn drill_embedded_options() -> EmbeddedOptions {
    EmbeddedOptions { max_receives: DRILL_MAX_RECEIVES, ..EmbeddedOptions::default() }
}

/// How long an SQS queue must look empty before the local runtime calls it drained (its counts are approximate).
pub const SQS_QUIET_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// How often the local runtime polls an SQS queue's depth (two `GetQueueAttributes` requests a poll).
pub const SQS_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// How many expired leases one sweep looks at.
pub const SWEEP_LIMIT: usize = 1000;

/// The `function` recorded in history entries written by the CLI's sweeper.
pub const SWEEPER_FUNCTION: &str = "sweeper:cli";

/// The `function` recorded in history entries written by `synctrail reprocess` and `dead-letters`.
pub const REPROCESS_FUNCTION: &str = "reprocess:cli";
