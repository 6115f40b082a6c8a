//! The entities of a workload and the sequence of changes each one goes through.

use super::WorkloadConfig;
use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Utc};
use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::{json, Map, Value};
use synctrail::model::{content_hash, EntityKey, EventId, Kind, OrderKey};

/// 2026-03-02T09:00:00Z: workloads start here, so a seed always gives the same events.
pub(super) const BASE_EPOCH_SECS: i64 = 1_772_442_000;

/// The kinds of resources a workload syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// `github/issue` snapshots: one-second `updated_at`, derived event ids, ties happen.
    GithubIssue,
    /// `shopify/product` snapshots: millisecond `updated_at` in the shop's offset, a `version`, client event ids.
    ShopifyProduct,
    /// `shopify/inventory_adjustment` deltas (`{"delta": n}`), policy `in_order`.
    InventoryAdjustment,
    /// `shopify/inventory_level` snapshots that need their product to exist (the dependency scenario).
    InventoryLevel,
}

impl EntityKind {
    /// Whether its events are snapshots (`latest_wins`) rather than deltas.
    pub fn is_snapshot(self) -> bool {
        self != EntityKind::InventoryAdjustment
    }
}

/// One entity of the workload.
#[derive(Debug, Clone)]
pub struct EntitySpec {
    /// Its key.
    pub key: EntityKey,
    /// What it is.
    pub kind: EntityKind,
    /// Its number in the external system.
    pub number: u64,
    /// The UTC offset its source writes timestamps in, in seconds east.
    pub offset_secs: i32,
}

/// One change of one entity: an event, before delivery.
#[derive(Debug, Clone)]
pub struct Change {
    /// The entity's index.
    pub entity: usize,
    /// `upsert`, `delete` or `create`.
    pub kind: Kind,
    /// `updated_at` (absent for a `create`).
    pub updated_at: Option<DateTime<Utc>>,
    /// The tie-breaker, when the source sends one.
    pub version: Option<i64>,
    /// The resource's state, or the delta.
    pub payload: Value,
    /// The client's `event_id`, when the source sends one.
    pub client_id: Option<String>,
    /// The provider's delivery id of the first delivery.
    pub delivery_id: String,
    /// Same order key as the entity's previous change, other content.
    pub tie: bool,
    /// When the source emitted it: the delivery order before reordering.
    pub emitted_at: DateTime<Utc>,
}

impl Change {
    /// Its order key (spec §1).
    pub fn order(&self) -> OrderKey {
        let version = self.version.unwrap_or(0);
        match self.updated_at.and_then(|at| OrderKey::at(at, version)) {
            Some(order) => order,
            None => OrderKey { version, ..OrderKey::BEFORE_ANY },
        }
    }

    /// Its event id: the client's, or the one derived from entity, order key and content (spec §3).
    pub fn event_id(&self, entity: &EntityKey) -> EventId {
        let derived = || EventId::derived(entity, &self.order(), &content_hash(self.kind, &self.payload));
        self.client_id.as_deref().and_then(|id| EventId::parse(id).ok()).unwrap_or_else(derived)
    }

    /// The envelope, as the source would send it, with `delivery_id`.
    pub fn envelope(&self, spec: &EntitySpec, delivery_id: &str) -> Value {
        let mut map = Map::new();
        if spec.key.tenant != "default" {
            map.insert("tenant".into(), json!(spec.key.tenant));
        }
        map.insert("source".into(), json!(spec.key.source));
        map.insert("entity_type".into(), json!(spec.key.entity_type));
        map.insert("external_id".into(), json!(spec.key.external_id));
        if let Some(at) = self.updated_at {
            map.insert("updated_at".into(), json!(timestamp_text(at, spec)));
        }
        if let Some(version) = self.version {
            map.insert("version".into(), json!(version));
        }
        if let Some(id) = &self.client_id {
            map.insert("event_id".into(), json!(id));
        }
        if self.kind != Kind::Upsert {
            map.insert("kind".into(), json!(self.kind.to_string()));
        }
        map.insert("delivery_id".into(), json!(delivery_id));
        map.insert("payload".into(), self.payload.clone());
        Value::Object(map)
    }
}

/// `at` the way the entity's source writes it: GitHub in whole seconds UTC, Shopify in milliseconds with the
/// shop's offset.
fn timestamp_text(at: DateTime<Utc>, spec: &EntitySpec) -> String {
    match (spec.kind, FixedOffset::east_opt(spec.offset_secs)) {
        (EntityKind::GithubIssue, _) | (_, None) => at.to_rfc3339_opts(SecondsFormat::Secs, true),
        (_, Some(offset)) => at.with_timezone(&offset).to_rfc3339_opts(SecondsFormat::Millis, false),
    }
}

/// The workload's entities: 40 % GitHub issues, 40 % Shopify products, 20 % inventory adjustments; Shopify
/// entities belong to one of two shops (tenants). `only`: every entity of that kind.
pub(super) fn entities(count: usize, only: Option<EntityKind>, rng: &mut SmallRng) -> Vec<EntitySpec> {
    (0..count)
        .map(|i| {
            let number = 1000 + i as u64;
            let kind = match rng.random_range(0..10) {
                0..=3 => EntityKind::GithubIssue,
                4..=7 => EntityKind::ShopifyProduct,
                _ => EntityKind::InventoryAdjustment,
            };
            let kind = only.unwrap_or(kind);
            let (tenant, offset_secs) = if rng.random_bool(0.5) { ("acme", -4 * 3600) } else { ("globex", 2 * 3600) };
            let (tenant, source, entity_type, external_id) = match kind {
                EntityKind::GithubIssue => ("default", "github", "issue", format!("widgets#{number}")),
                EntityKind::ShopifyProduct => (tenant, "shopify", "product", format!("{}", 7_700_000 + number)),
                EntityKind::InventoryAdjustment => (
                    tenant,
                    "shopify",
                    crate::config::IN_ORDER_ENTITY_TYPE,
                    format!("item-{number}@loc-{}", number % 7),
                ),
                EntityKind::InventoryLevel => {
                    (tenant, "shopify", super::INVENTORY_LEVEL, format!("level-{number}@loc-{}", number % 7))
                }
            };
            let key = EntityKey {
                tenant: tenant.to_owned(),
                source: source.to_owned(),
                entity_type: entity_type.to_owned(),
                external_id,
            };
            let offset_secs = if kind == EntityKind::GithubIssue { 0 } else { offset_secs };
            EntitySpec { key, kind, number, offset_secs }
        })
        .collect()
}

/// How many changes each entity gets: one each, the rest spread at random, `hot_share` of it on the hottest 1 %
/// of the entities (snapshot entities only, unless `hot_deltas`).
pub(super) fn counts(config: &WorkloadConfig, specs: &[EntitySpec], rng: &mut SmallRng) -> Vec<usize> {
    let entities = specs.len();
    if config.same_count_per_entity {
        return vec![(config.events / entities.max(1)).max(1); entities];
    }
    let mut counts = vec![1; entities];
    let eligible: Vec<usize> = (0..entities).filter(|&i| config.hot_deltas || specs[i].kind.is_snapshot()).collect();
    let hot = &eligible[..eligible.len().min((entities / 100).max(1))];
    for _ in entities..config.events {
        let index = if !hot.is_empty() && rng.random_bool(config.hot_share) {
            hot[rng.random_range(0..hot.len())]
        } else {
            rng.random_range(0..entities)
        };
        counts[index] += 1;
    }
    counts
}

/// The changes of one entity, in the order its source made them.
pub(super) fn changes(
    config: &WorkloadConfig,
    index: usize,
    spec: &EntitySpec,
    n: usize,
    rng: &mut SmallRng,
) -> Vec<Change> {
    let base = DateTime::<Utc>::from_timestamp(BASE_EPOCH_SECS, 0).unwrap_or_default();
    let mut at = base + Duration::milliseconds(rng.random_range(0..3_600_000));
    if spec.kind == EntityKind::GithubIssue {
        at = base + Duration::seconds((at - base).num_seconds());
    }
    let snapshot = spec.kind.is_snapshot();
    let with_create = snapshot && rng.random_bool(config.create_rate);
    let with_delete = snapshot && n >= 3 && rng.random_bool(config.delete_rate);
    let mut state = initial_state(spec, rng);
    let mut version = 0i64;
    let mut stamped = false;
    let mut out = Vec::with_capacity(n);
    for seq in 0..n {
        let kind = match seq {
            0 if with_create => Kind::Create,
            s if s + 1 == n && with_delete => Kind::Delete,
            _ => Kind::Upsert,
        };
        if seq > 0 && snapshot {
            evolve(&mut state, spec, seq, rng);
        }
        let mut tie = false;
        let updated_at = if kind == Kind::Create {
            None
        } else {
            if stamped {
                // Deltas always move the clock: two equal deltas at one instant would be one event (same derived id).
                let same = snapshot && kind != Kind::Delete && rng.random_bool(config.tie_rate);
                tie = same && spec.kind == EntityKind::GithubIssue;
                if !same {
                    at += step(spec.kind, rng);
                }
            }
            stamped = true;
            Some(at)
        };
        version += 1;
        let payload = match (spec.kind, kind) {
            (EntityKind::InventoryAdjustment, _) => delta(rng),
            (EntityKind::GithubIssue, Kind::Delete) => json!({ "number": spec.number, "action": "deleted" }),
            (EntityKind::ShopifyProduct, Kind::Delete) => json!({ "id": 7_700_000 + spec.number }),
            _ => state.clone(),
        };
        let shopify = spec.kind != EntityKind::GithubIssue;
        let client_id = (spec.kind == EntityKind::ShopifyProduct)
            .then(|| format!("{}:product:{}:v{version}", spec.key.tenant, spec.key.external_id));
        out.push(Change {
            entity: index,
            kind,
            updated_at,
            version: (spec.kind == EntityKind::ShopifyProduct).then_some(version),
            payload,
            client_id,
            delivery_id: delivery_id(shopify, rng),
            tie,
            emitted_at: updated_at.unwrap_or(at - Duration::seconds(1)),
        });
    }
    out
}

/// How far a source's clock moves between two changes of one entity.
fn step(kind: EntityKind, rng: &mut SmallRng) -> Duration {
    match kind {
        EntityKind::GithubIssue => Duration::seconds(rng.random_range(1..=900)),
        EntityKind::ShopifyProduct => Duration::milliseconds(rng.random_range(1..=600_000)),
        EntityKind::InventoryAdjustment | EntityKind::InventoryLevel => {
            Duration::milliseconds(rng.random_range(1..=120_000))
        }
    }
}

/// A provider delivery id: a GitHub-style UUID or a Shopify-style number.
pub(super) fn delivery_id(shopify: bool, rng: &mut SmallRng) -> String {
    if shopify {
        format!("{}", rng.random_range(10_000_000_000u64..99_999_999_999))
    } else {
        let b: u128 = rng.random();
        let hex = format!("{b:032x}");
        format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
    }
}

/// An inventory adjustment: `{"delta": n}`, n ≠ 0.
fn delta(rng: &mut SmallRng) -> Value {
    let mut delta = rng.random_range(-5..=12);
    if delta == 0 {
        delta = 1;
    }
    json!({ "delta": delta })
}

fn initial_state(spec: &EntitySpec, rng: &mut SmallRng) -> Value {
    match spec.kind {
        EntityKind::GithubIssue => json!({
            "number": spec.number,
            "title": format!("Widget #{} fails to sync", spec.number),
            "state": "open",
            "labels": ["bug"],
            "comments": 0,
            "assignee": null,
            "body": "Steps to reproduce: open the widget and press sync. (edit 0)",
        }),
        EntityKind::ShopifyProduct => json!({
            "id": 7_700_000 + spec.number,
            "title": format!("Organic cotton tee #{}", spec.number),
            "status": "active",
            "tags": "summer",
            "variants": [{ "sku": format!("TEE-{}-M", spec.number), "price": format!("{}.00", rng.random_range(15..60)) }],
            "body_html": "<p>Soft and light.</p><!-- rev 0 -->",
        }),
        EntityKind::InventoryAdjustment | EntityKind::InventoryLevel => Value::Null,
    }
}

/// The next state of a snapshot entity: always different from every earlier one.
fn evolve(state: &mut Value, spec: &EntitySpec, seq: usize, rng: &mut SmallRng) {
    let Value::Object(map) = state else { return };
    match spec.kind {
        EntityKind::GithubIssue => {
            let comments = map.get("comments").and_then(Value::as_u64).unwrap_or(0) + rng.random_range(0..3);
            map.insert("comments".into(), json!(comments));
            if rng.random_bool(0.1) {
                let open = map.get("state").and_then(Value::as_str) == Some("open");
                map.insert("state".into(), json!(if open { "closed" } else { "open" }));
            }
            if rng.random_bool(0.2) {
                let labels = [["bug"].as_slice(), &["bug", "sync"], &["needs-triage"], &["bug", "p1"]];
                map.insert("labels".into(), json!(labels[rng.random_range(0..labels.len())]));
            }
            if rng.random_bool(0.2) {
                let people = ["octocat", "hubot", "monalisa"];
                map.insert("assignee".into(), json!(people[rng.random_range(0..people.len())]));
            }
            map.insert(
                "body".into(),
                json!(format!("Steps to reproduce: open the widget and press sync. (edit {seq})")),
            );
        }
        EntityKind::ShopifyProduct => {
            if rng.random_bool(0.3) {
                let price = format!("{}.{:02}", rng.random_range(15..60), rng.random_range(0..100));
                map.insert("variants".into(), json!([{ "sku": format!("TEE-{}-M", spec.number), "price": price }]));
            }
            if rng.random_bool(0.1) {
                let active = map.get("status").and_then(Value::as_str) == Some("active");
                map.insert("status".into(), json!(if active { "draft" } else { "active" }));
            }
            map.insert("body_html".into(), json!(format!("<p>Soft and light.</p><!-- rev {seq} -->")));
        }
        EntityKind::InventoryAdjustment | EntityKind::InventoryLevel => {}
    }
}
