//! Delivery: the order in which the queue sees the changes — reordered within a window, with duplicates, client
//! resubmissions, idempotency conflicts and malformed lines mixed in.

use super::entities::{delivery_id, Change, EntitySpec};
use super::malformed::{malformed, oversized};
use super::WorkloadConfig;
use chrono::Duration;
use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::{json, Value};
use synctrail::model::{content_hash, EventId, Kind};

/// Why a line is on the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The first delivery of a change.
    Original,
    /// The very same message body again, later (an at-least-once redelivery).
    Duplicate,
    /// The client sending the same change again under its `event_id`, with a new delivery id.
    Resubmission,
    /// The client reusing an `event_id` for other content: must end `rejected`, conflicting with `original`.
    Conflict {
        /// The event whose id was reused.
        original: EventId,
    },
    /// Not a valid envelope: must end `rejected`. Says what is wrong with it.
    Malformed(&'static str),
}

/// One line of the workload: a message body as it goes on the queue.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The body.
    pub line: String,
    /// Why it is sent.
    pub role: Role,
    /// The event it is recorded under: the change's id, or the rejected record's id.
    pub event_id: EventId,
}

/// Puts the changes in delivery order and mixes in the extra lines the configuration asks for.
pub(super) fn schedule(
    config: &WorkloadConfig,
    specs: &[EntitySpec],
    changes: &[Change],
    rng: &mut SmallRng,
) -> Vec<Delivery> {
    let mut emitted: Vec<usize> = (0..changes.len()).collect();
    emitted.sort_by_key(|&i| (changes[i].emitted_at, changes[i].entity, i));
    let window = config.reorder_window as f64;
    let mut placed: Vec<(f64, Delivery)> = Vec::with_capacity(changes.len() * 11 / 10);
    let mut products = Vec::new();
    for (position, &i) in emitted.iter().enumerate() {
        let change = &changes[i];
        let spec = &specs[change.entity];
        // Bounded displacement: each message moves at most `window` places from where it was emitted.
        let key = position as f64 + if window > 1.0 { rng.random::<f64>() * window } else { 0.0 };
        let event_id = change.event_id(&spec.key);
        let line = change.envelope(spec, &change.delivery_id).to_string();
        if config.duplicate_rate > 0.0 && rng.random_bool(config.duplicate_rate) {
            let later = key + rng.random_range(10.0..1000.0);
            placed.push((later, Delivery { line: line.clone(), role: Role::Duplicate, event_id: event_id.clone() }));
        }
        if change.client_id.is_some() && change.kind != Kind::Delete {
            products.push((key, i));
        }
        placed.push((key, Delivery { line, role: Role::Original, event_id }));
    }
    let end = placed.iter().map(|(k, _)| *k).fold(0.0, f64::max);
    if !products.is_empty() {
        for _ in 0..config.resubmissions {
            let (key, i) = products[rng.random_range(0..products.len())];
            let change = &changes[i];
            let spec = &specs[change.entity];
            let line = change.envelope(spec, &delivery_id(true, rng)).to_string();
            let later = key + rng.random_range(200.0..2000.0);
            placed.push((later, Delivery { line, role: Role::Resubmission, event_id: change.event_id(&spec.key) }));
        }
        // A conflict goes after every other line; its original is one delivered in the first half, so that the
        // original is recorded first even when the run delays its message (a crash, a retry) or two workers race
        // for the last batches. Which message of the two arrives first decides which one is rejected (spec §3).
        let half = emitted.len() as f64 / 2.0;
        let early: Vec<(f64, usize)> = products.iter().copied().filter(|(key, _)| *key <= half).collect();
        let originals = if early.is_empty() { &products } else { &early };
        for n in 0..config.conflicts {
            let (_, i) = originals[rng.random_range(0..originals.len())];
            let (line, event_id, original) = conflict(&changes[i], &specs[changes[i].entity], n, rng);
            placed.push((end + 1.0 + n as f64, Delivery { line, role: Role::Conflict { original }, event_id }));
        }
    }
    let count = (config.events as f64 * config.malformed_rate).round() as usize;
    let big = config.oversized.min(count);
    for n in 0..count {
        let (line, what) = if n < big { oversized(n) } else { malformed(n - big, rng) };
        let event_id = EventId::for_rejected(line.as_bytes());
        placed.push((rng.random::<f64>() * end, Delivery { line, role: Role::Malformed(what), event_id }));
    }
    placed.sort_by(|a, b| a.0.total_cmp(&b.0));
    placed.into_iter().map(|(_, d)| d).collect()
}

/// The same client `event_id` as `change`, later and with other content: (line, id it is stored under, original id).
fn conflict(change: &Change, spec: &EntitySpec, n: usize, rng: &mut SmallRng) -> (String, EventId, EventId) {
    let original = change.event_id(&spec.key);
    let mut other = change.clone();
    other.updated_at = change.updated_at.map(|at| at + Duration::hours(1));
    if let Value::Object(map) = &mut other.payload {
        map.insert("title".into(), json!(format!("Reused event id, other content #{n}")));
    }
    let line = other.envelope(spec, &delivery_id(true, rng)).to_string();
    let stored_as = EventId::derived(&spec.key, &other.order(), &content_hash(other.kind, &other.payload));
    (line, stored_as, original)
}
