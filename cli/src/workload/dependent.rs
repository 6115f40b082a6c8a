//! The dependency scenario of spec §6: inventory levels of products that don't exist yet. Each pair is a new
//! product (a `create`) and an inventory level that names it in `product_id`; the level's events are emitted halfway
//! through the workload and the product's creation last, so the level waits, the product is created, and the level then applies.

use super::entities::{delivery_id, Change, EntityKind, EntitySpec};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::json;
use synctrail::model::{EntityKey, Kind};

/// The entity type whose events need their product (the demo's dependency rule, `crate::config::DEMO_DEPENDENCY`).
pub const INVENTORY_LEVEL: &str = "inventory_level";

/// `count` pairs of (new product, its inventory level), as entities from index `first` on, with their changes.
/// `last_emitted` is when the rest of the workload's last change was emitted: the products are created after it.
pub(super) fn pairs(
    count: usize,
    first: usize,
    base: DateTime<Utc>,
    last_emitted: DateTime<Utc>,
    rng: &mut SmallRng,
) -> (Vec<EntitySpec>, Vec<Vec<Change>>) {
    let mut specs = Vec::with_capacity(count * 2);
    let mut changes = Vec::with_capacity(count * 2);
    for pair in 0..count {
        let number = 9_000 + pair as u64;
        let product_id = format!("{}", 9_900_000 + number);
        let product = EntitySpec {
            key: key("product", &product_id),
            kind: EntityKind::ShopifyProduct,
            number,
            offset_secs: -4 * 3600,
        };
        let level = EntitySpec {
            key: key(INVENTORY_LEVEL, &format!("level-{product_id}@loc-1")),
            kind: EntityKind::InventoryLevel,
            number,
            offset_secs: -4 * 3600,
        };
        let (product_index, level_index) = (first + 2 * pair, first + 2 * pair + 1);
        let created = Change {
            entity: product_index,
            kind: Kind::Create,
            updated_at: None,
            version: None,
            payload: json!({
                "id": 9_900_000 + number,
                "title": format!("New arrival #{number}"),
                "status": "active",
                "body_html": "<p>Just added to the catalog.</p>",
            }),
            client_id: None,
            delivery_id: delivery_id(true, rng),
            tie: false,
            emitted_at: last_emitted + Duration::seconds(1 + pair as i64),
        };
        let mut at = base + Duration::milliseconds(rng.random_range(0..600_000));
        let mut level_changes = Vec::new();
        for seq in 0..2 {
            at += Duration::milliseconds(rng.random_range(1..=60_000));
            level_changes.push(Change {
                entity: level_index,
                kind: Kind::Upsert,
                updated_at: Some(at),
                version: None,
                payload: json!({ "product_id": product_id, "available": rng.random_range(0..500), "seq": seq }),
                client_id: None,
                delivery_id: delivery_id(true, rng),
                tie: false,
                // Mid-workload: after the demo's destination outage, well before the product's creation.
                emitted_at: base + (last_emitted - base) / 2 + Duration::seconds(seq),
            });
        }
        specs.extend([product, level]);
        changes.extend([vec![created], level_changes]);
    }
    (specs, changes)
}

fn key(entity_type: &str, external_id: &str) -> EntityKey {
    EntityKey {
        tenant: "acme".to_owned(),
        source: "shopify".to_owned(),
        entity_type: entity_type.to_owned(),
        external_id: external_id.to_owned(),
    }
}
