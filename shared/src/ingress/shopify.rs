//! Shopify deliveries (`X-Shopify-Topic` = `<resource>/<verb>`) mapped to envelopes. See docs/webhooks.md.

use super::draft::{id, optional_text, parse, Draft, Ignored, Mapping, MappingError};
use super::headers::Headers;
use crate::model::Kind;
use serde_json::Value;

/// The synced resources of a topic and their entity types.
fn entity_type(resource: &str) -> Option<&'static str> {
    match resource {
        "products" => Some("product"),
        "inventory_levels" => Some("inventory_level"),
        _ => None,
    }
}

/// Maps one authenticated Shopify delivery.
pub(super) fn map(headers: &Headers, body: &[u8]) -> Result<Mapping, MappingError> {
    let topic = headers.get("X-Shopify-Topic").ok_or(MappingError::MissingHeader("X-Shopify-Topic"))?;
    let (resource, verb) = topic.split_once('/').unwrap_or((topic, ""));
    let Some(entity_type) = entity_type(resource) else {
        return Ok(Mapping::Ignore(Ignored::NotSynced { event: topic.to_owned() }));
    };
    let kind = match verb {
        "create" | "connect" => Kind::Create,
        "delete" | "disconnect" => Kind::Delete,
        _ => Kind::Upsert,
    };
    let shop = headers.get("X-Shopify-Shop-Domain").ok_or(MappingError::MissingHeader("X-Shopify-Shop-Domain"))?;
    let body = parse(body)?;
    let external_id = match entity_type {
        "inventory_level" => format!("{}@{}", id(&body, "/inventory_item_id")?, id(&body, "/location_id")?),
        _ => id(&body, "/id")?,
    };
    Ok(Mapping::Change(Draft {
        entity_type: entity_type.to_owned(),
        external_id,
        updated_at: updated_at(&body, kind, headers)?,
        kind,
        tenant: Some(tenant(shop)),
        event_key: headers.get("X-Shopify-Event-Id").map(str::to_owned),
        delivery_id: headers.get("X-Shopify-Webhook-Id").map(str::to_owned),
        payload: body,
    }))
}

/// The payload's `updated_at`; a delete's body carries only ids, so a delete falls back to the time Shopify
/// says the event happened (`X-Shopify-Triggered-At`), which is after the last state it deletes.
fn updated_at(body: &Value, kind: Kind, headers: &Headers) -> Result<String, MappingError> {
    if let Some(at) = optional_text(body, "/updated_at") {
        return Ok(at.to_owned());
    }
    if kind != Kind::Delete {
        return Err(MappingError::Missing { pointer: "/updated_at".into(), expected: "a string" });
    }
    headers
        .get("X-Shopify-Triggered-At")
        .map(str::to_owned)
        .ok_or(MappingError::MissingHeader("X-Shopify-Triggered-At"))
}

/// `johns-apparel.myshopify.com` → `johns-apparel` (a tenant name has no dots).
fn tenant(shop_domain: &str) -> String {
    let shop = shop_domain.trim().to_ascii_lowercase();
    shop.strip_suffix(".myshopify.com").map(str::to_owned).unwrap_or(shop)
}
