//! What a converged destination must hold per entity, worked out from the changes alone (not from the engine).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use synctrail::destination::guard::MirrorRecord;
use synctrail::model::{Kind, OrderKey};

/// One acceptable final state of a snapshot entity.
#[derive(Debug, Clone, PartialEq)]
pub enum Final {
    /// The entity holds this state.
    State(Value),
    /// The entity was deleted.
    Deleted,
}

/// What the mirror must hold for one entity.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Snapshots: any one of these (more than one only for a tie at the newest order key).
    OneOf(Vec<Final>),
    /// Deltas: `{"quantity": sum}` of every distinct delta.
    Quantity(i64),
}

/// A snapshot change, as the expectation sees it.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotChange<'a> {
    /// Its order key.
    pub order: OrderKey,
    /// `updated_at` (absent for a `create`).
    pub updated_at: Option<DateTime<Utc>>,
    /// `upsert`, `delete` or `create`.
    pub kind: Kind,
    /// The state it carries.
    pub payload: &'a Value,
}

/// A local edit of the destination, as the expectation sees it.
#[derive(Debug, Clone, Copy)]
pub struct Edit<'a> {
    /// When it was made.
    pub modified_at: DateTime<Utc>,
    /// The state it left.
    pub state: &'a Value,
}

/// The final state of a snapshot entity: the change with the greatest order key wins (for a tie at that key any
/// of the tied contents is acceptable, since the source could not order them); a delete leaves it deleted; a
/// local edit newer than the winner's `updated_at` stays (a winner without `updated_at`, a `create`, counts as
/// older than any edit).
pub fn snapshot(changes: &[SnapshotChange<'_>], edit: Option<Edit<'_>>) -> Expected {
    let Some(max) = changes.iter().map(|c| c.order).max() else {
        return Expected::OneOf(edit.map(|e| Final::State(e.state.clone())).into_iter().collect());
    };
    let newest: Vec<&SnapshotChange<'_>> = changes.iter().filter(|c| c.order == max).collect();
    let newest_at = newest.iter().filter_map(|c| c.updated_at).max();
    if let Some(edit) = edit {
        if newest_at.is_none_or(|at| edit.modified_at > at) {
            return Expected::OneOf(vec![Final::State(edit.state.clone())]);
        }
    }
    let mut finals: Vec<Final> = Vec::new();
    for change in newest {
        let f = match change.kind {
            Kind::Delete => Final::Deleted,
            Kind::Upsert | Kind::Create => Final::State(change.payload.clone()),
        };
        if !finals.contains(&f) {
            finals.push(f);
        }
    }
    Expected::OneOf(finals)
}

/// The final state of a delta entity: the sum of its distinct deltas.
pub fn quantity(deltas: impl IntoIterator<Item = i64>) -> Expected {
    Expected::Quantity(deltas.into_iter().sum())
}

impl Expected {
    /// Whether `record` (the mirror's row, if any) is acceptable.
    pub fn matches(&self, record: Option<&MirrorRecord>) -> bool {
        let Some(record) = record else { return false };
        match self {
            Expected::Quantity(q) => !record.deleted && record.state == json!({ "quantity": q }),
            Expected::OneOf(finals) => finals.iter().any(|f| match f {
                Final::Deleted => record.deleted,
                Final::State(state) => !record.deleted && &record.state == state,
            }),
        }
    }

    /// A short description, for mismatch reports.
    pub fn describe(&self) -> String {
        match self {
            Expected::Quantity(q) => format!("{{\"quantity\":{q}}}"),
            Expected::OneOf(finals) => {
                let parts: Vec<String> = finals
                    .iter()
                    .map(|f| match f {
                        Final::Deleted => "(deleted)".to_owned(),
                        Final::State(s) => crate::output::shorten(&s.to_string(), 120),
                    })
                    .collect();
                parts.join(" or ")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_772_442_000 + secs, 0).unwrap_or_default()
    }

    fn change(secs: i64, kind: Kind, payload: &Value) -> SnapshotChange<'_> {
        let updated_at = (kind != Kind::Create).then(|| at(secs));
        let order = updated_at.and_then(|t| OrderKey::at(t, 0)).unwrap_or(OrderKey::BEFORE_ANY);
        SnapshotChange { order, updated_at, kind, payload }
    }

    #[test]
    fn the_newest_change_wins_whatever_the_delivery_order() {
        let (a, b, c) = (json!({"v": 1}), json!({"v": 2}), json!({"v": 3}));
        let changes = [change(30, Kind::Upsert, &c), change(10, Kind::Upsert, &a), change(20, Kind::Upsert, &b)];
        assert_eq!(snapshot(&changes, None), Expected::OneOf(vec![Final::State(c)]));
    }

    #[test]
    fn a_tie_at_the_max_order_key_accepts_both_contents() {
        let (a, b, c) = (json!({"v": 1}), json!({"v": 2}), json!({"v": 3}));
        let changes = [change(10, Kind::Upsert, &a), change(20, Kind::Upsert, &b), change(20, Kind::Upsert, &c)];
        let expected = snapshot(&changes, None);
        assert_eq!(expected, Expected::OneOf(vec![Final::State(b.clone()), Final::State(c.clone())]));
        let row = |state: &Value| MirrorRecord {
            entity_key: "default/github/issue/1".into(),
            state: state.clone(),
            order: None,
            content_hash: None,
            event_id: None,
            fence: 1,
            deleted: false,
            modified_at: None,
            applied_at: at(0),
        };
        assert!(expected.matches(Some(&row(&b))));
        assert!(expected.matches(Some(&row(&c))));
        assert!(!expected.matches(Some(&row(&a))));
        assert!(!expected.matches(None));
    }

    #[test]
    fn a_tie_below_the_max_order_key_does_not_matter() {
        let (a, b, c) = (json!({"v": 1}), json!({"v": 2}), json!({"v": 3}));
        let changes = [change(10, Kind::Upsert, &a), change(10, Kind::Upsert, &b), change(20, Kind::Upsert, &c)];
        assert_eq!(snapshot(&changes, None), Expected::OneOf(vec![Final::State(c)]));
    }

    #[test]
    fn a_delete_at_the_end_leaves_the_entity_deleted() {
        let (a, gone) = (json!({"v": 1}), json!({"id": 1}));
        let changes = [change(10, Kind::Upsert, &a), change(20, Kind::Delete, &gone)];
        assert_eq!(snapshot(&changes, None), Expected::OneOf(vec![Final::Deleted]));
    }

    #[test]
    fn a_create_without_timestamp_loses_to_any_timestamped_change() {
        let (created, a) = (json!({"v": 0}), json!({"v": 1}));
        let changes = [change(10, Kind::Upsert, &a), change(0, Kind::Create, &created)];
        assert_eq!(snapshot(&changes, None), Expected::OneOf(vec![Final::State(a)]));
        let only = [change(0, Kind::Create, &created)];
        assert_eq!(snapshot(&only, None), Expected::OneOf(vec![Final::State(created)]));
    }

    #[test]
    fn a_local_edit_stays_only_when_newer_than_the_newest_change() {
        let (a, b, edited) = (json!({"v": 1}), json!({"v": 2}), json!({"v": "local"}));
        let changes = [change(10, Kind::Upsert, &a), change(20, Kind::Upsert, &b)];
        let between = Edit { modified_at: at(15), state: &edited };
        assert_eq!(snapshot(&changes, Some(between)), Expected::OneOf(vec![Final::State(b.clone())]));
        let after = Edit { modified_at: at(20) + Duration::milliseconds(1), state: &edited };
        assert_eq!(snapshot(&changes, Some(after)), Expected::OneOf(vec![Final::State(edited.clone())]));
        let same_time = Edit { modified_at: at(20), state: &edited };
        assert_eq!(snapshot(&changes, Some(same_time)), Expected::OneOf(vec![Final::State(b)]));
    }

    #[test]
    fn deltas_add_up() {
        assert_eq!(quantity([3, -1, 5]), Expected::Quantity(7));
        let row = MirrorRecord {
            entity_key: "acme/shopify/inventory_adjustment/item-1@loc-1".into(),
            state: json!({"quantity": 7}),
            order: None,
            content_hash: None,
            event_id: None,
            fence: 3,
            deleted: false,
            modified_at: None,
            applied_at: at(0),
        };
        assert!(Expected::Quantity(7).matches(Some(&row)));
        assert!(!Expected::Quantity(8).matches(Some(&row)));
    }
}
