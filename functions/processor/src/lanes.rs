//! Lanes: the records of one batch that may run side by side. Records of one entity (envelopes, and re-drives that
//! name it) or naming one stored event share a lane and run in arrival order; lanes run concurrently. The key is read
//! cheaply from the body; a body that names no entity gets a lane of its own (it can only be rejected).

use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;
use synctrail::model::DEFAULT_TENANT;

/// The fields that name an envelope's entity, or a re-drive's event, borrowed from the body (copied only when the
/// JSON escapes a character in them).
#[derive(Deserialize)]
struct Key<'a> {
    #[serde(borrow, default)]
    tenant: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    entity_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    external_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "synctrail_redrive")]
    redrive: Option<Redrive<'a>>,
}

/// A re-drive's body: `{"synctrail_redrive": {"event_id": …, "entity": {…}}}`.
#[derive(Deserialize)]
struct Redrive<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow, default)]
    entity: Option<Entity<'a>>,
}

/// A re-drive's entity.
#[derive(Deserialize)]
struct Entity<'a> {
    #[serde(borrow)]
    tenant: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    entity_type: Cow<'a, str>,
    #[serde(borrow)]
    external_id: Cow<'a, str>,
}

/// The lane a body belongs to: its entity's parts (an envelope's, or those a re-drive names), or the event a
/// re-drive names; `None` when it names neither.
fn lane_key(body: &str) -> Option<String> {
    let key: Key<'_> = serde_json::from_str(body).ok()?;
    let entity = |tenant: &str, source: &str, entity_type: &str, external_id: &str| {
        format!("e\u{1f}{tenant}\u{1f}{source}\u{1f}{entity_type}\u{1f}{external_id}")
    };
    match (key.source, key.entity_type, key.external_id, key.redrive) {
        (Some(source), Some(entity_type), Some(external_id), _) => {
            Some(entity(key.tenant.as_deref().unwrap_or(DEFAULT_TENANT), &source, &entity_type, &external_id))
        }
        (.., Some(Redrive { entity: Some(e), .. })) => {
            Some(entity(&e.tenant, &e.source, &e.entity_type, &e.external_id))
        }
        (.., redrive) => redrive.map(|r| r.event_id).or(key.event_id).map(|id| format!("r\u{1f}{id}")),
    }
}

/// The indexes of `bodies` grouped into lanes, each lane in arrival order, lanes ordered by their first record.
pub(crate) fn lanes<'a>(bodies: impl IntoIterator<Item = Option<&'a str>>) -> Vec<Vec<usize>> {
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (index, body) in bodies.into_iter().enumerate() {
        match body.and_then(lane_key) {
            Some(key) => match by_key.get(&key) {
                Some(&lane) => lanes[lane].push(index),
                None => {
                    by_key.insert(key, lanes.len());
                    lanes.push(vec![index]);
                }
            },
            None => lanes.push(vec![index]),
        }
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    use synctrail::model::{EntityKey, EventId, Message, RedriveReason};

    #[test]
    fn records_of_one_entity_share_a_lane_in_arrival_order_and_others_run_beside_them() {
        let event = EventId::parse("ev-9").expect("an id");
        let issue = |n: u32, at: &str| {
            format!(
                r#"{{"source":"github","entity_type":"issue","external_id":"{n}","updated_at":"{at}","payload":{{}}}}"#
            )
        };
        let bodies = [
            issue(1, "2026-05-01T12:00:00Z"),
            issue(2, "2026-05-01T12:00:00Z"),
            issue(1, "2026-05-01T12:00:01Z"),
            "not json".to_owned(),
            Message::redrive_body(&event, None, RedriveReason::Promotion, false),
            Message::redrive_body(&event, None, RedriveReason::Reprocess, true),
        ];
        let lanes = lanes(bodies.iter().map(|b| Some(b.as_str())).chain([None]));
        assert_eq!(lanes, vec![vec![0, 2], vec![1], vec![3], vec![4, 5], vec![6]]);
    }

    #[test]
    fn a_redrive_naming_its_entity_runs_in_that_entitys_lane_in_arrival_order() {
        let issue = |n: u32| {
            format!(
                r#"{{"source":"github","entity_type":"issue","external_id":"{n}","updated_at":"2026-05-01T12:00:00Z","payload":{{}}}}"#
            )
        };
        let entity = |n: &str| EntityKey::new("default", "github", "issue", n).expect("an entity");
        let redrive = |id: &str, n: &str| {
            let id = EventId::parse(id).expect("an id");
            Message::redrive_body(&id, Some(&entity(n)), RedriveReason::Promotion, false)
        };
        let bodies = [redrive("ev-1", "1"), issue(2), issue(1), redrive("ev-2", "2"), redrive("ev-3", "3")];
        let lanes = lanes(bodies.iter().map(|b| Some(b.as_str())));
        assert_eq!(lanes, vec![vec![0, 2], vec![1, 3], vec![4]], "an envelope without a tenant is the default's");
    }

    #[test]
    fn an_entity_named_with_escaped_characters_shares_the_lane_of_the_same_entity_named_plainly() {
        let plain = r#"{"source":"github","entity_type":"issue","external_id":"o/r#1","payload":{}}"#;
        let escaped = r#"{"source":"github","entity_type":"issue","external_id":"o\/r\u00231","payload":{}}"#;
        let other = r#"{"source":"github","entity_type":"issue","external_id":"o/r#2","payload":{}}"#;
        assert_eq!(lanes([Some(plain), Some(other), Some(escaped)]), vec![vec![0, 2], vec![1]]);
    }

    #[test]
    fn the_tenant_separates_lanes() {
        let a = r#"{"tenant":"a","source":"s","entity_type":"t","external_id":"1","payload":{}}"#;
        let b = r#"{"tenant":"b","source":"s","entity_type":"t","external_id":"1","payload":{}}"#;
        assert_eq!(lanes([Some(a), Some(b)]), vec![vec![0], vec![1]]);
    }
}
