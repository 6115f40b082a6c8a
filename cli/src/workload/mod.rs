//! A realistic, deterministic (seeded) two-source workload, and what a correct pipeline must make of it.
//!
//! GitHub issue snapshots (one-second `updated_at`, so ties happen), Shopify product snapshots (milliseconds and a
//! `version`, client event ids) and Shopify inventory deltas (policy `in_order`), delivered out of order, with
//! duplicates, client resubmissions, idempotency conflicts, malformed lines and local edits of the destination.
//! [`generate`] returns the lines to send, the local edits to make first, and per entity the acceptable final
//! states of the destination.

mod delivery;
mod dependent;
mod entities;
mod expect;
mod malformed;

pub use delivery::{Delivery, Role};
pub use dependent::INVENTORY_LEVEL;
pub use entities::{Change, EntityKind, EntitySpec};
pub use expect::{quantity, snapshot, Edit, Expected, Final, SnapshotChange};

use chrono::{DateTime, Duration, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use synctrail::model::{EntityKey, EventId, Kind};

/// What to generate.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Distinct changes (events); duplicates, resubmissions, conflicts and malformed lines come on top.
    pub events: usize,
    /// Entities the changes are spread over (at most `events`).
    pub entities: usize,
    /// The seed: the same configuration always gives the same workload.
    pub seed: u64,
    /// Deliveries move up to this many places from the order they were emitted in (0 or 1: in order).
    pub reorder_window: usize,
    /// Share of changes delivered twice (the exact same body again, later).
    pub duplicate_rate: f64,
    /// Malformed lines per change.
    pub malformed_rate: f64,
    /// How many of the malformed lines carry a payload over the 256 KiB limit.
    pub oversized: usize,
    /// Client resubmissions: the same `event_id` and content again, with another delivery id.
    pub resubmissions: usize,
    /// Idempotency conflicts: the same client `event_id` with other content (must end `rejected`).
    pub conflicts: usize,
    /// Share of snapshot entities whose first change is a `create` without `updated_at`.
    pub create_rate: f64,
    /// Share of snapshot entities (with 3 changes or more) whose last change is a delete.
    pub delete_rate: f64,
    /// Chance that a change keeps the previous `updated_at` (a tie for GitHub; a `version` bump for Shopify).
    pub tie_rate: f64,
    /// Local edits of the destination, made before the run.
    pub local_edits: usize,
    /// Share of the changes that go to the hottest 1 % of the entities.
    pub hot_share: f64,
    /// Pairs of (new product, inventory level naming it) whose level arrives before the product exists (spec §6).
    pub dependency_pairs: usize,
    /// Whether delta (`in_order`) entities may be hot too. A hot delta entity can hold more events waiting than
    /// the engine's `max_backlog`; see the report of `synctrail demo --hot-deltas`.
    pub hot_deltas: bool,
    /// Every entity of this kind (the kinds are drawn all the same, so the rest of the workload stays as seeded).
    pub only: Option<EntityKind>,
    /// Every entity gets the same number of changes (`events / entities`) instead of a random share.
    pub same_count_per_entity: bool,
}

impl WorkloadConfig {
    /// The demo's workload: everything that happens in production, at realistic rates.
    pub fn realistic(events: usize, entities: usize, seed: u64) -> Self {
        Self {
            events,
            entities,
            seed,
            reorder_window: 50,
            duplicate_rate: 0.05,
            malformed_rate: 0.005,
            oversized: 2,
            resubmissions: (events / 2000).clamp(1, 10),
            conflicts: 2,
            create_rate: 0.15,
            delete_rate: 0.03,
            tie_rate: 0.06,
            local_edits: (entities / 150).clamp(2, 12),
            hot_share: 0.1,
            dependency_pairs: (events / 2000).clamp(2, 10),
            hot_deltas: false,
            only: None,
            same_count_per_entity: false,
        }
    }

    /// `rounds` happy-path changes of each of `entities` entities (what `synctrail bench growth` sends one round at
    /// a time).
    pub fn rounds(entities: usize, rounds: usize, seed: u64) -> Self {
        Self { same_count_per_entity: true, ..Self::happy_path(entities.saturating_mul(rounds), entities, seed) }
    }

    /// The benchmark's workload: in order, no duplicates, no bad input, no edits.
    pub fn happy_path(events: usize, entities: usize, seed: u64) -> Self {
        Self {
            events,
            entities,
            seed,
            reorder_window: 0,
            duplicate_rate: 0.0,
            malformed_rate: 0.0,
            oversized: 0,
            resubmissions: 0,
            conflicts: 0,
            create_rate: 0.0,
            delete_rate: 0.0,
            tie_rate: 0.0,
            local_edits: 0,
            hot_share: 0.0,
            dependency_pairs: 0,
            hot_deltas: false,
            only: None,
            same_count_per_entity: false,
        }
    }
}

/// A local edit of the destination, to make before the run.
#[derive(Debug, Clone)]
pub struct LocalEdit {
    /// The entity edited.
    pub entity: EntityKey,
    /// The state it was given.
    pub state: Value,
    /// When: between two of its changes' `updated_at`, or after all of them.
    pub modified_at: DateTime<Utc>,
    /// Whether it is newer than every change of its entity (then it must survive).
    pub newest: bool,
}

/// Counts describing a workload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Distinct changes.
    pub events: usize,
    /// Entities.
    pub entities: usize,
    /// GitHub issues.
    pub github_issues: usize,
    /// Shopify products.
    pub shopify_products: usize,
    /// Shopify inventory items (deltas).
    pub inventory_items: usize,
    /// Lines to send.
    pub lines: usize,
    /// Exact duplicate deliveries.
    pub duplicates: usize,
    /// Client resubmissions (same event_id, same content).
    pub resubmissions: usize,
    /// Idempotency conflicts (same event_id, other content).
    pub conflicts: usize,
    /// Malformed lines (oversized ones included).
    pub malformed: usize,
    /// Changes with the same order key as their entity's previous one and other content.
    pub ties: usize,
    /// `create` changes without `updated_at`.
    pub creates: usize,
    /// Deletes.
    pub deletes: usize,
    /// Local edits.
    pub local_edits: usize,
    /// Inventory levels sent before their product exists: they wait for it (spec §6).
    pub dependency_waits: usize,
}

/// A generated workload and its expectations.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The entities.
    pub entities: Vec<EntitySpec>,
    /// The lines, in the order they go on the queue.
    pub deliveries: Vec<Delivery>,
    /// Edits of the destination to make before the run.
    pub local_edits: Vec<LocalEdit>,
    /// Per entity, what the destination must hold at the end.
    pub expectations: BTreeMap<EntityKey, Expected>,
    /// Counts.
    pub summary: Summary,
}

impl Workload {
    /// The message bodies, in delivery order.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.deliveries.iter().map(|d| d.line.clone())
    }

    /// Every distinct event id the lines are recorded under (rejected ones included).
    pub fn event_ids(&self) -> BTreeSet<EventId> {
        self.deliveries.iter().map(|d| d.event_id.clone()).collect()
    }

    /// The ids that must end `rejected`, with the event each conflicts with (for idempotency conflicts).
    pub fn rejections(&self) -> BTreeMap<EventId, Option<EventId>> {
        self.deliveries
            .iter()
            .filter_map(|d| match &d.role {
                Role::Malformed(_) => Some((d.event_id.clone(), None)),
                Role::Conflict { original } => Some((d.event_id.clone(), Some(original.clone()))),
                _ => None,
            })
            .collect()
    }
}

/// Generates the workload `config` describes.
pub fn generate(config: &WorkloadConfig) -> Workload {
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let entity_count = config.entities.clamp(1, config.events.max(1));
    let mut specs = entities::entities(entity_count, config.only, &mut rng);
    let counts = entities::counts(config, &specs, &mut rng);
    let mut per_entity: Vec<Vec<Change>> =
        specs.iter().enumerate().map(|(i, spec)| entities::changes(config, i, spec, counts[i], &mut rng)).collect();
    let base = DateTime::<Utc>::from_timestamp(entities::BASE_EPOCH_SECS, 0).unwrap_or_default();
    let last_emitted = per_entity.iter().flatten().map(|c| c.emitted_at).max().unwrap_or(base);
    let (pair_specs, pair_changes) =
        dependent::pairs(config.dependency_pairs, specs.len(), base, last_emitted, &mut rng);
    specs.extend(pair_specs);
    per_entity.extend(pair_changes);
    let local_edits = local_edits(config, &specs, &per_entity, &mut rng);
    let expectations = expectations(&specs, &per_entity, &local_edits);
    let changes: Vec<Change> = per_entity.into_iter().flatten().collect();
    let deliveries = delivery::schedule(config, &specs, &changes, &mut rng);
    let summary = summarize(&specs, &changes, &deliveries, &local_edits);
    Workload { entities: specs, deliveries, local_edits, expectations, summary }
}

/// Picks snapshot entities (no create, no delete, two changes or more) and edits each between two of its
/// changes — or, for every third, after all of them.
fn local_edits(
    config: &WorkloadConfig,
    specs: &[EntitySpec],
    changes: &[Vec<Change>],
    rng: &mut SmallRng,
) -> Vec<LocalEdit> {
    let mut candidates: Vec<usize> = (0..specs.len())
        .filter(|&i| {
            specs[i].kind.is_snapshot() && changes[i].len() >= 2 && changes[i].iter().all(|c| c.kind == Kind::Upsert)
        })
        .collect();
    let mut edits = Vec::new();
    while edits.len() < config.local_edits && !candidates.is_empty() {
        let i = candidates.swap_remove(rng.random_range(0..candidates.len()));
        let stamps: Vec<DateTime<Utc>> = changes[i].iter().filter_map(|c| c.updated_at).collect();
        let newest = edits.len() % 3 == 0;
        let (modified_at, base) = if newest {
            let last = stamps.iter().max().copied().unwrap_or_default();
            (last + Duration::seconds(rng.random_range(1..3600)), changes[i].len() - 1)
        } else {
            // Between change j and j + 1 (in the upper half, so several older changes meet the edit).
            let gaps: Vec<usize> = (stamps.len() / 2..stamps.len() - 1)
                .filter(|&j| stamps[j + 1] - stamps[j] >= Duration::milliseconds(2))
                .collect();
            let Some(&j) = gaps.get(rng.random_range(0..gaps.len().max(1))) else { continue };
            (stamps[j] + (stamps[j + 1] - stamps[j]) / 2, j)
        };
        let mut state = changes[i][base].payload.clone();
        if let Value::Object(map) = &mut state {
            map.insert("title".into(), json!(format!("Edited in our admin ({})", crate::output::time(modified_at))));
            map.insert("edited_locally".into(), json!(true));
        }
        edits.push(LocalEdit { entity: specs[i].key.clone(), state, modified_at, newest });
    }
    edits
}

fn expectations(specs: &[EntitySpec], changes: &[Vec<Change>], edits: &[LocalEdit]) -> BTreeMap<EntityKey, Expected> {
    let edits: BTreeMap<&EntityKey, &LocalEdit> = edits.iter().map(|e| (&e.entity, e)).collect();
    specs
        .iter()
        .zip(changes)
        .map(|(spec, changes)| {
            let expected = if spec.kind.is_snapshot() {
                let seen: Vec<SnapshotChange<'_>> = changes
                    .iter()
                    .map(|c| SnapshotChange {
                        order: c.order(),
                        updated_at: c.updated_at,
                        kind: c.kind,
                        payload: &c.payload,
                    })
                    .collect();
                let edit = edits.get(&spec.key).map(|e| Edit { modified_at: e.modified_at, state: &e.state });
                snapshot(&seen, edit)
            } else {
                quantity(changes.iter().filter_map(|c| c.payload.get("delta").and_then(Value::as_i64)))
            };
            (spec.key.clone(), expected)
        })
        .collect()
}

fn summarize(specs: &[EntitySpec], changes: &[Change], deliveries: &[Delivery], edits: &[LocalEdit]) -> Summary {
    let of_kind = |k: EntityKind| specs.iter().filter(|s| s.kind == k).count();
    let role = |f: &dyn Fn(&Role) -> bool| deliveries.iter().filter(|d| f(&d.role)).count();
    Summary {
        events: changes.len(),
        entities: specs.len(),
        github_issues: of_kind(EntityKind::GithubIssue),
        shopify_products: of_kind(EntityKind::ShopifyProduct),
        inventory_items: of_kind(EntityKind::InventoryAdjustment),
        lines: deliveries.len(),
        duplicates: role(&|r| *r == Role::Duplicate),
        resubmissions: role(&|r| *r == Role::Resubmission),
        conflicts: role(&|r| matches!(r, Role::Conflict { .. })),
        malformed: role(&|r| matches!(r, Role::Malformed(_))),
        ties: changes.iter().filter(|c| c.tie).count(),
        creates: changes.iter().filter(|c| c.kind == Kind::Create).count(),
        deletes: changes.iter().filter(|c| c.kind == Kind::Delete).count(),
        local_edits: edits.len(),
        dependency_waits: specs.iter().filter(|s| s.kind == EntityKind::InventoryLevel).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synctrail::model::Message;

    #[test]
    fn the_same_seed_gives_the_same_workload() {
        let a = generate(&WorkloadConfig::realistic(600, 40, 7));
        let b = generate(&WorkloadConfig::realistic(600, 40, 7));
        assert_eq!(a.lines().collect::<Vec<_>>(), b.lines().collect::<Vec<_>>());
        let c = generate(&WorkloadConfig::realistic(600, 40, 8));
        assert_ne!(a.lines().collect::<Vec<_>>(), c.lines().collect::<Vec<_>>());
    }

    #[test]
    fn every_entity_has_an_expectation_and_every_change_a_distinct_id() {
        let config = WorkloadConfig::realistic(2000, 100, 3);
        let w = generate(&config);
        // The dependency pairs come on top: a product (one create) and its inventory level (two snapshots) each.
        assert_eq!(w.expectations.len(), 100 + 2 * config.dependency_pairs);
        assert_eq!(w.summary.events, 2000 + 3 * config.dependency_pairs);
        assert_eq!(w.summary.dependency_waits, config.dependency_pairs);
        let originals: Vec<&Delivery> = w.deliveries.iter().filter(|d| d.role == Role::Original).collect();
        let ids: BTreeSet<&EventId> = originals.iter().map(|d| &d.event_id).collect();
        assert_eq!(ids.len(), originals.len(), "two changes share an event id");
    }

    #[test]
    fn lines_parse_as_the_roles_say() {
        let w = generate(&WorkloadConfig::realistic(3000, 100, 11));
        assert!(w.summary.malformed >= 10 && w.summary.duplicates > 0 && w.summary.conflicts == 2);
        assert!(w.summary.ties > 0 && w.summary.creates > 0 && w.summary.local_edits > 0);
        let limit = crate::config::base_settings().max_payload_bytes;
        for d in &w.deliveries {
            let parsed = Message::parse(&d.line, limit);
            match (&d.role, parsed) {
                (Role::Malformed(what), Ok(_)) => panic!("malformed line ({what}) parses: {}", d.line),
                (Role::Malformed(_), Err(_)) => {}
                (Role::Conflict { original }, Ok(Message::Envelope(e))) => assert_eq!(&e.event_id, original),
                (_, Ok(Message::Envelope(e))) => assert_eq!(e.event_id, d.event_id, "{}", d.line),
                (role, other) => panic!("{role:?} line does not parse as an envelope: {other:?}"),
            }
        }
    }

    #[test]
    fn conflicts_come_after_every_original_and_reuse_an_early_one() {
        for seed in 0..20 {
            let w = generate(&WorkloadConfig::realistic(150, 30, seed));
            let originals: Vec<(usize, &EventId)> = (w.deliveries.iter().enumerate())
                .filter(|(_, d)| d.role == Role::Original)
                .map(|(at, d)| (at, &d.event_id))
                .collect();
            let last = originals.iter().map(|(at, _)| *at).max().unwrap_or(0);
            for (at, d) in w.deliveries.iter().enumerate() {
                if let Role::Conflict { original } = &d.role {
                    assert!(at > last, "seed {seed}: a conflict at {at}, before the last original at {last}");
                    let first = originals.iter().find(|(_, id)| *id == original).map_or(usize::MAX, |(at, _)| *at);
                    assert!(
                        first * 5 < w.deliveries.len() * 3,
                        "seed {seed}: original at {first} of {}",
                        w.deliveries.len()
                    );
                }
            }
        }
    }

    #[test]
    fn the_happy_path_has_nothing_but_originals() {
        let w = generate(&WorkloadConfig::happy_path(500, 50, 1));
        assert_eq!(w.deliveries.len(), 500);
        assert!(w.deliveries.iter().all(|d| d.role == Role::Original));
        assert!(w.local_edits.is_empty());
    }

    #[test]
    fn edits_newer_than_every_change_are_expected_to_stay() {
        let w = generate(&WorkloadConfig::realistic(3000, 150, 5));
        for edit in &w.local_edits {
            let expected = &w.expectations[&edit.entity];
            let keeps_edit = *expected == Expected::OneOf(vec![Final::State(edit.state.clone())]);
            assert_eq!(keeps_edit, edit.newest, "{}", edit.entity);
        }
    }
}
