//! [`RequireDependencies`]: a destination decorator that answers "missing dependency" (spec §6) by rule, for
//! destinations that can tell whether an entity exists (every [`MirrorView`]).
//!
//! A rule `inventory_level.product_id=product` says: an event of type `inventory_level` whose payload has
//! `product_id = P` needs the entity `<tenant>/<source>/product/P` to exist (applied, not deleted) first.

use crate::destination::{
    ApplyOutcome, Change, Destination, DestinationError, DestinationRecord, MirrorView, ReadError,
};
use crate::model::{Direction, EntityKey};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;

/// One rule: events of `entity_type` need the `needs_type` entity named by their payload's `field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyRule {
    /// The dependent entity type.
    pub entity_type: String,
    /// The payload field holding the dependency's external id.
    pub field: String,
    /// The dependency's entity type (same tenant and source).
    pub needs_type: String,
}

/// A rule that can't be parsed.
#[derive(Debug, thiserror::Error)]
#[error(
    "dependency rule {rule:?} is invalid: expected TYPE.FIELD=NEEDED_TYPE, e.g. inventory_level.product_id=product"
)]
pub struct InvalidRule {
    /// The text.
    pub rule: String,
}

impl DependencyRule {
    /// Parses `TYPE.FIELD=NEEDED_TYPE`.
    pub fn parse(text: &str) -> Result<Self, InvalidRule> {
        let invalid = || InvalidRule { rule: text.to_owned() };
        let (left, needs_type) = text.trim().split_once('=').ok_or_else(invalid)?;
        let (entity_type, field) = left.split_once('.').ok_or_else(invalid)?;
        if [entity_type, field, needs_type].iter().any(|part| part.trim().is_empty()) {
            return Err(invalid());
        }
        Ok(Self {
            entity_type: entity_type.trim().into(),
            field: field.trim().into(),
            needs_type: needs_type.trim().into(),
        })
    }

    /// Comma-separated rules, as `SYNCTRAIL_DEPENDENCIES` holds them (none when blank).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, InvalidRule> {
        text.split(',').filter(|r| !r.trim().is_empty()).map(Self::parse).collect()
    }

    /// The entity `change` needs under this rule, if the rule covers it.
    fn needed_by(&self, change: &Change<'_>) -> Option<EntityKey> {
        if change.entity.entity_type != self.entity_type {
            return None;
        }
        let id = match change.payload.get(&self.field)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        EntityKey::new(&change.entity.tenant, &change.entity.source, &self.needs_type, &id).ok()
    }
}

/// A destination that refuses a change whose dependency is missing from the mirror, and otherwise passes it on.
pub struct RequireDependencies {
    inner: Arc<dyn Destination>,
    mirror: Arc<dyn MirrorView>,
    rules: Vec<DependencyRule>,
}

impl RequireDependencies {
    /// Passes changes on to `inner` once `mirror` holds what `rules` say they need.
    pub fn new(inner: Arc<dyn Destination>, mirror: Arc<dyn MirrorView>, rules: Vec<DependencyRule>) -> Self {
        Self { inner, mirror, rules }
    }
}

#[async_trait]
impl Destination for RequireDependencies {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        for key in self.rules.iter().filter_map(|rule| rule.needed_by(change)) {
            let found = self
                .mirror
                .get(&key)
                .await
                .map_err(|e| DestinationError::retryable(format!("checking that dependency {key} exists: {e}")))?;
            if found.is_none_or(|record| record.deleted) {
                return Ok(ApplyOutcome::MissingDependency { key, request: None });
            }
        }
        self.inner.apply(change).await
    }

    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        self.inner.read(entity).await
    }

    fn reads_back(&self, direction: Direction) -> bool {
        self.inner.reads_back(direction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_reads_type_field_and_needed_type() {
        let rule = DependencyRule::parse("inventory_level.product_id=product").unwrap();
        assert_eq!(rule.entity_type, "inventory_level");
        assert_eq!(rule.field, "product_id");
        assert_eq!(rule.needs_type, "product");
    }

    #[test]
    fn a_rule_without_field_or_target_is_refused() {
        assert!(DependencyRule::parse("inventory_level=product").is_err());
        assert!(DependencyRule::parse("inventory_level.product_id").is_err());
        assert!(DependencyRule::parse("inventory_level.=product").is_err());
    }
}
