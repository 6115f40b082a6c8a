//! Malformed messages: what a misbehaving client or proxy puts on the queue. Each must end `rejected`.

use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::json;

/// Over the 256 KiB payload limit.
const OVERSIZED_BYTES: usize = 300 * 1024;

/// How many kinds of ordinary malformed lines [`malformed`] makes (the oversized one apart).
pub(super) const KINDS: usize = 14;

/// An envelope with a payload over the size limit, made unique by `n`.
pub(super) fn oversized(n: usize) -> (String, &'static str) {
    let line = json!({
        "source": "shopify",
        "tenant": "acme",
        "entity_type": "product",
        "external_id": format!("oversized-{n}"),
        "updated_at": "2026-03-02T10:00:00.000-04:00",
        "payload": { "images_base64": "A".repeat(OVERSIZED_BYTES) },
    });
    (line.to_string(), "oversized payload")
}

/// Malformed line number `n` (its kind is `n % KINDS`), unique by `n`, with what is wrong with it.
pub(super) fn malformed(n: usize, rng: &mut SmallRng) -> (String, &'static str) {
    let issue = format!("widgets#{}", 90_000 + n);
    let at = format!("2026-03-02T{:02}:{:02}:{:02}Z", 9 + rng.random_range(0..3), rng.random_range(0..60), n % 60);
    let good = |extra: serde_json::Value| {
        let mut v = json!({
            "source": "github",
            "entity_type": "issue",
            "external_id": issue,
            "updated_at": at,
            "delivery_id": format!("bad-{n}"),
            "payload": { "number": 90_000 + n, "title": "a broken delivery" },
        });
        if let (Some(map), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
            for (k, val) in extra {
                if val.is_null() {
                    map.remove(&k);
                } else {
                    map.insert(k, val);
                }
            }
        }
        v.to_string()
    };
    match n % KINDS {
        0 => {
            let full = good(json!({}));
            let half = full.chars().count() / 2;
            (full.chars().take(half).collect(), "truncated JSON")
        }
        1 => (format!("<html><body>502 Bad Gateway (request {n})</body></html>"), "not JSON"),
        2 => (json!(["github", "issue", issue]).to_string(), "JSON array, not an object"),
        3 => (good(json!({ "external_id": null })), "missing external_id"),
        4 => (good(json!({ "payload": null })), "missing payload"),
        5 => (good(json!({ "updated_at": null })), "upsert without updated_at"),
        6 => (good(json!({ "version": "seven" })), "version is a string"),
        7 => (good(json!({ "external_id": 90_000 + n })), "external_id is a number"),
        8 => (good(json!({ "updated_at": "2026-02-30T25:61:00Z" })), "impossible timestamp"),
        9 => (good(json!({ "updated_at": "yesterday at noon" })), "timestamp is not RFC 3339"),
        10 => (good(json!({ "event_id": format!("evt #{n}/retry") })), "event_id with forbidden characters"),
        11 => (good(json!({ "source": "GitHub" })), "source with upper-case letters"),
        12 => (good(json!({ "kind": "merge" })), "unknown kind"),
        _ => (good(json!({ "entity_type": "inventory level" })), "entity_type with a space"),
    }
}
