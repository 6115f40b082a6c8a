//! Shopify deliveries (`X-Shopify-Topic` = `<resource>/<verb>`) mapped to envelopes. See docs/webhooks.md.

use super::draft::{cut, id, parse, text, Draft, Ignored, Mapping, MappingError};
use super::headers::Headers;
use crate::model::Kind;
use chrono::{DateTime, SecondsFormat, TimeDelta, Timelike, Utc};
use serde_json::Value;

/// The header with the time Shopify says the event happened: a delete's order time.
const TRIGGERED_AT: &str = "X-Shopify-Triggered-At";

/// How far ahead of this receiver's clock an `X-Shopify-Triggered-At` may be (clocks drift; Shopify's is not ours).
pub const MAX_TRIGGERED_AHEAD_SECONDS: i64 = 300;

/// The synced resources of a topic and their entity types.
fn entity_type(resource: &str) -> Option<&'static str> {
    match resource {
        "products" => Some("product"),
        "inventory_levels" => Some("inventory_level"),
        _ => None,
    }
}

/// Maps one authenticated Shopify delivery received at `now`.
pub(super) fn map(headers: &Headers, body: &[u8], now: DateTime<Utc>) -> Result<Mapping, MappingError> {
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
    let updated_at = match kind {
        Kind::Delete => deleted_at(&body, topic, headers, now)?,
        Kind::Create | Kind::Upsert => text(&body, "/updated_at")?.to_owned(),
    };
    let external_id = match entity_type {
        "inventory_level" => format!("{}@{}", id(&body, "/inventory_item_id")?, id(&body, "/location_id")?),
        _ => id(&body, "/id")?,
    };
    Ok(Mapping::Change(Draft {
        entity_type: entity_type.to_owned(),
        external_id,
        updated_at,
        kind,
        tenant: Some(tenant(shop)),
        event_key: headers.get("X-Shopify-Event-Id").map(str::to_owned),
        delivery_id: headers.get("X-Shopify-Webhook-Id").map(str::to_owned),
        payload: body,
    }))
}

/// A delete's order time: its body carries only ids, so the time Shopify says the event happened
/// (`X-Shopify-Triggered-At`, after the last state it deletes), cut to the whole second: the resolution of
/// Shopify's `updated_at`, which the delete is ordered against. That header is not signed, so a time more than
/// [`MAX_TRIGGERED_AHEAD_SECONDS`] ahead of `now` is refused (it would order after every later change), and so is a
/// body with `updated_at` (a resource's state relabelled as a delete through the unsigned topic).
fn deleted_at(body: &Value, topic: &str, headers: &Headers, now: DateTime<Utc>) -> Result<String, MappingError> {
    if body.get("updated_at").is_some() {
        return Err(MappingError::StateUnderDeleteTopic { topic: topic.to_owned() });
    }
    let value = headers.get(TRIGGERED_AT).ok_or(MappingError::MissingHeader(TRIGGERED_AT))?;
    let invalid =
        || MappingError::InvalidHeader { header: TRIGGERED_AT, value: cut(value), expected: "an RFC 3339 time" };
    let at = DateTime::parse_from_rfc3339(value.trim()).map_err(|_| invalid())?.with_timezone(&Utc);
    let at = at.with_nanosecond(0).ok_or_else(invalid)?;
    let whole_second = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let latest = TimeDelta::try_seconds(MAX_TRIGGERED_AHEAD_SECONDS).and_then(|ahead| now.checked_add_signed(ahead));
    if latest.is_some_and(|latest| at > latest) {
        return Err(MappingError::AheadOfClock {
            header: TRIGGERED_AT,
            value: whole_second(at),
            now: whole_second(now),
            ahead_seconds: MAX_TRIGGERED_AHEAD_SECONDS,
        });
    }
    Ok(whole_second(at))
}

/// `johns-apparel.myshopify.com` → `johns-apparel` (a tenant name has no dots).
fn tenant(shop_domain: &str) -> String {
    let shop = shop_domain.trim().to_ascii_lowercase();
    shop.strip_suffix(".myshopify.com").map(str::to_owned).unwrap_or(shop)
}
