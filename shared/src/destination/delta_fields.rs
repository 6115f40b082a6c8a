//! [`DeltaFields`]: which payload fields of an `in_order` event are amounts, and which state fields of the
//! reference mirror they add into, per entity type (`SYNCTRAIL_DELTA_FIELDS`).
//!
//! `inventory_adjustment.delta=quantity,inventory_adjustment.reserved_delta=reserved` says: an
//! `inventory_adjustment` event's `delta` is added into the state's `quantity` and its `reserved_delta` into
//! `reserved`. An `in_order` type with nothing configured adds `delta` into `quantity`.

use crate::model::check_name;
use crate::settings::InvalidSetting;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The variable [`DeltaFields::parse`] reads (`synctrail::config` reads it).
pub const DELTA_FIELDS_VARIABLE: &str = "SYNCTRAIL_DELTA_FIELDS";

/// A valid value of [`DELTA_FIELDS_VARIABLE`], quoted in its errors.
pub const DELTA_FIELDS_EXAMPLE: &str =
    "inventory_adjustment.delta=quantity,inventory_adjustment.reserved_delta=reserved";

/// The payload field an `in_order` event of a type with nothing configured carries: the integer to add.
pub const DEFAULT_DELTA_FIELD: &str = "delta";
/// The state field that [`DEFAULT_DELTA_FIELD`] adds into.
pub const DEFAULT_TOTAL_FIELD: &str = "quantity";

/// One amount of an `in_order` event: the payload's `delta` field is added into the state's `total` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaField {
    /// The payload field holding the integer to add.
    pub delta: String,
    /// The state field the integers add up in.
    pub total: String,
}

/// The delta fields per entity type; a type not listed uses `delta` → `quantity`. The default configures none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaFields {
    by_type: BTreeMap<String, Vec<DeltaField>>,
}

/// The delta field of a type with nothing configured.
static UNCONFIGURED: LazyLock<[DeltaField; 1]> =
    LazyLock::new(|| [DeltaField { delta: DEFAULT_DELTA_FIELD.to_owned(), total: DEFAULT_TOTAL_FIELD.to_owned() }]);

impl DeltaFields {
    /// Parses `TYPE.DELTA_FIELD=TOTAL_FIELD` items separated by commas (empty: nothing configured). Within a type
    /// each delta field and each total field may appear once.
    pub fn parse(text: &str) -> Result<Self, InvalidSetting> {
        let invalid = |problem: String| InvalidSetting {
            name: DELTA_FIELDS_VARIABLE,
            value: text.to_owned(),
            expected: format!(
                "TYPE.DELTA_FIELD=TOTAL_FIELD items separated by commas, e.g. {DELTA_FIELDS_EXAMPLE} ({problem})"
            ),
        };
        let mut fields = Self::default();
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let (left, total) =
                item.split_once('=').ok_or_else(|| invalid(format!("item {item:?} has no `=TOTAL_FIELD`")))?;
            let (entity_type, delta) = left
                .split_once('.')
                .ok_or_else(|| invalid(format!("item {item:?} has no `TYPE.` before its field")))?;
            let (entity_type, delta, total) = (entity_type.trim(), delta.trim(), total.trim());
            check_name("entity_type", entity_type)
                .map_err(|e| invalid(format!("item {item:?}: entity type {:?} is not {}", e.value, e.expected)))?;
            if delta.is_empty() || total.is_empty() {
                return Err(invalid(format!("item {item:?} names an empty field")));
            }
            let of_type = fields.by_type.entry(entity_type.to_owned()).or_default();
            if of_type.iter().any(|f| f.delta == delta) {
                return Err(invalid(format!("type {entity_type} names delta field {delta:?} twice")));
            }
            if of_type.iter().any(|f| f.total == total) {
                return Err(invalid(format!("type {entity_type} adds two delta fields into {total:?}")));
            }
            of_type.push(DeltaField { delta: delta.to_owned(), total: total.to_owned() });
        }
        Ok(fields)
    }

    /// The delta fields of `entity_type`'s `in_order` events.
    pub fn of(&self, entity_type: &str) -> &[DeltaField] {
        self.by_type.get(entity_type).map_or(&UNCONFIGURED[..], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(fields: &DeltaFields, entity_type: &str) -> Vec<(String, String)> {
        fields.of(entity_type).iter().map(|f| (f.delta.clone(), f.total.clone())).collect()
    }

    #[test]
    fn configured_types_use_their_fields_and_others_add_delta_into_quantity() {
        let fields = DeltaFields::parse(&format!(" {DELTA_FIELDS_EXAMPLE}, pallet.boxes = boxes ,")).expect("valid");
        let inventory = [("delta", "quantity"), ("reserved_delta", "reserved")].map(|(d, t)| (d.into(), t.into()));
        assert_eq!(pairs(&fields, "inventory_adjustment"), inventory);
        assert_eq!(pairs(&fields, "pallet"), [("boxes".to_owned(), "boxes".to_owned())]);
        assert_eq!(pairs(&fields, "stock"), [("delta".to_owned(), "quantity".to_owned())]);
        assert_eq!(DeltaFields::parse("").expect("empty"), DeltaFields::default());
    }

    #[test]
    fn an_invalid_item_is_named_with_the_variable_and_an_example() {
        for (text, problem) in [
            ("inventory_adjustment.delta", "has no `=TOTAL_FIELD`"),
            ("delta=quantity", "has no `TYPE.`"),
            ("Inventory.delta=quantity", "entity type \"Inventory\" is not"),
            ("stock.=quantity", "names an empty field"),
            ("stock.delta=", "names an empty field"),
            ("stock.delta=a,stock.delta=b", "names delta field \"delta\" twice"),
            ("stock.in=quantity,stock.out=quantity", "adds two delta fields into \"quantity\""),
        ] {
            let error = DeltaFields::parse(text).expect_err(text).to_string();
            assert!(error.contains(DELTA_FIELDS_VARIABLE), "{error}");
            assert!(error.contains(DELTA_FIELDS_EXAMPLE), "{error}");
            assert!(error.contains(problem), "{text}: {error}");
        }
    }
}
