//! What one write or read is billed, from the items before and after it and the table's index definitions.

use super::size::{item_size, read_units, write_units, Item, STORAGE_OVERHEAD};
use aws_sdk_dynamodb::types::{ProjectionType, TableDescription};
use std::collections::BTreeMap;

/// A table's key and its global secondary indexes, as `DescribeTable` tells them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSchema {
    /// The table's key attributes (partition, then sort).
    pub key: Vec<String>,
    /// Its global secondary indexes.
    pub indexes: Vec<IndexSchema>,
}

/// One global secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSchema {
    /// Its name.
    pub name: String,
    /// Its key attributes: an item lacking one is not in the index (sparse).
    pub key: Vec<String>,
    /// What it projects.
    pub projection: Projected,
}

/// An index's projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projected {
    /// The whole item.
    All,
    /// The table's and the index's keys only.
    KeysOnly,
    /// The keys and these attributes.
    Include(Vec<String>),
}

impl TableSchema {
    /// The schema `DescribeTable` returned.
    pub fn of(table: &TableDescription) -> Self {
        let names = |key: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
            key.iter().map(|k| k.attribute_name().to_owned()).collect::<Vec<_>>()
        };
        let indexes = table
            .global_secondary_indexes()
            .iter()
            .map(|index| {
                let projection = index.projection();
                let projected = match projection.and_then(|p| p.projection_type()) {
                    Some(ProjectionType::KeysOnly) => Projected::KeysOnly,
                    Some(ProjectionType::Include) => {
                        Projected::Include(projection.map(|p| p.non_key_attributes().to_vec()).unwrap_or_default())
                    }
                    _ => Projected::All,
                };
                IndexSchema {
                    name: index.index_name().unwrap_or_default().to_owned(),
                    key: names(index.key_schema()),
                    projection: projected,
                }
            })
            .collect();
        Self { key: names(table.key_schema()), indexes }
    }

    /// The key of `item`.
    pub fn key_of(&self, item: &Item) -> Item {
        item.iter().filter(|(name, _)| self.key.contains(name)).map(|(n, v)| (n.clone(), v.clone())).collect()
    }

    /// The entry `item` has in `index`, or `None` when it lacks one of the index's key attributes.
    pub fn entry(&self, index: &IndexSchema, item: &Item) -> Option<Item> {
        if !index.key.iter().all(|k| item.contains_key(k)) {
            return None;
        }
        let kept = |name: &String| {
            self.key.contains(name)
                || index.key.contains(name)
                || match &index.projection {
                    Projected::All => true,
                    Projected::KeysOnly => false,
                    Projected::Include(names) => names.contains(name),
                }
        };
        Some(item.iter().filter(|(name, _)| kept(name)).map(|(n, v)| (n.clone(), v.clone())).collect())
    }

    /// Bytes `item` keeps stored, its index entries included (100 bytes of overhead each).
    pub fn stored_bytes(&self, item: &Item) -> (u64, u64) {
        let table = item_size(item) + STORAGE_OVERHEAD;
        let indexes = self
            .indexes
            .iter()
            .filter_map(|index| self.entry(index, item))
            .map(|entry| item_size(&entry) + STORAGE_OVERHEAD)
            .sum();
        (table, indexes)
    }
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was applied.
    Written,
    /// Its condition failed (or its transaction was canceled): nothing changed, yet capacity was consumed.
    Refused,
}

/// Write units of one write: the table's, and each index's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBill {
    /// Units in the table.
    pub table: u64,
    /// Units per index.
    pub indexes: BTreeMap<String, u64>,
}

impl WriteBill {
    /// Units in the table and every index.
    pub fn total(&self) -> u64 {
        self.table + self.indexes.values().sum::<u64>()
    }
}

/// The bill of one write of an item from `before` to `after` (`None`: absent; a condition check has `after` =
/// `before`):
///
/// - the table: one unit per started KB of the larger of the two, doubled in a transaction; a refused write bills
///   the stored item's size (at least one unit), doubled in a transaction, and writes no index;
/// - each index: nothing when the item is in it neither before nor after or its entry is unchanged; one write
///   of the entry when it is added, removed or changed under the same index key; two (delete + put) when its
///   index key changes. Entries are sized by the index's projection. Index writes are not doubled in
///   transactions.
pub fn bill_write(
    schema: &TableSchema,
    before: Option<&Item>,
    after: Option<&Item>,
    transactional: bool,
    outcome: Outcome,
) -> WriteBill {
    let factor = if transactional { 2 } else { 1 };
    let size = |item: Option<&Item>| item.map_or(0, item_size);
    if outcome == Outcome::Refused {
        return WriteBill { table: factor * write_units(size(before)), indexes: BTreeMap::new() };
    }
    let table = factor * write_units(size(before).max(size(after)));
    let mut indexes = BTreeMap::new();
    for index in &schema.indexes {
        let old = before.and_then(|item| schema.entry(index, item));
        let new = after.and_then(|item| schema.entry(index, item));
        let units = match (&old, &new) {
            (None, None) => 0,
            (Some(entry), None) | (None, Some(entry)) => write_units(item_size(entry)),
            (Some(old), Some(new)) if old == new => 0,
            (Some(old), Some(new)) => {
                let same_key = index.key.iter().all(|k| old.get(k) == new.get(k));
                if same_key {
                    write_units(item_size(old).max(item_size(new)))
                } else {
                    write_units(item_size(old)) + write_units(item_size(new))
                }
            }
        };
        if units > 0 {
            indexes.insert(index.name.clone(), units);
        }
    }
    WriteBill { table, indexes }
}

/// Read units of reading `bytes`: one per started 4 KB, halved when eventually consistent, doubled in a
/// transaction.
pub fn bill_read(bytes: u64, consistent: bool, transactional: bool) -> f64 {
    let units = read_units(bytes) as f64;
    match (transactional, consistent) {
        (true, _) => 2.0 * units,
        (false, true) => units,
        (false, false) => units / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn item(pairs: &[(&str, &str)]) -> Item {
        pairs.iter().map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string()))).collect()
    }

    fn schema(projection: Projected) -> TableSchema {
        TableSchema {
            key: vec!["pk".into()],
            indexes: vec![IndexSchema { name: "by_status".into(), key: vec!["status".into()], projection }],
        }
    }

    #[test]
    fn a_transactional_put_doubles_the_table_units_and_not_the_index_ones() {
        let body = "x".repeat(1500);
        let new = item(&[("pk", "a"), ("status", "done"), ("body", &body)]);
        let bill = bill_write(&schema(Projected::All), None, Some(&new), true, Outcome::Written);
        assert_eq!(bill.table, 4);
        assert_eq!(bill.indexes.get("by_status"), Some(&2));
        let keys_only = bill_write(&schema(Projected::KeysOnly), None, Some(&new), true, Outcome::Written);
        assert_eq!(keys_only.indexes.get("by_status"), Some(&1));
    }

    #[test]
    fn an_index_key_change_is_a_delete_and_a_put_and_an_unchanged_entry_costs_nothing() {
        let old = item(&[("pk", "a"), ("status", "processing"), ("body", "1")]);
        let new = item(&[("pk", "a"), ("status", "completed"), ("body", "2")]);
        let moved = bill_write(&schema(Projected::KeysOnly), Some(&old), Some(&new), false, Outcome::Written);
        assert_eq!((moved.table, moved.indexes.get("by_status")), (1, Some(&2)));
        let same = item(&[("pk", "a"), ("status", "processing"), ("body", "2")]);
        let kept = bill_write(&schema(Projected::KeysOnly), Some(&old), Some(&same), false, Outcome::Written);
        assert!(kept.indexes.is_empty(), "{kept:?}");
        let sparse = item(&[("pk", "a"), ("body", "2")]);
        let left = bill_write(&schema(Projected::All), Some(&old), Some(&sparse), false, Outcome::Written);
        assert_eq!(left.indexes.get("by_status"), Some(&1));
    }

    #[test]
    fn a_refused_write_bills_the_stored_item_and_no_index() {
        let stored = item(&[("pk", "a"), ("status", "done"), ("body", &"y".repeat(3000))]);
        let bill = bill_write(&schema(Projected::All), Some(&stored), None, false, Outcome::Refused);
        assert_eq!((bill.table, bill.indexes.len()), (3, 0));
    }

    #[test]
    fn reads_bill_per_started_4_kb() {
        assert_eq!(bill_read(5000, true, false), 2.0);
        assert_eq!(bill_read(100, false, false), 0.5);
        assert_eq!(bill_read(100, true, true), 2.0);
    }
}
