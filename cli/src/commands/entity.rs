//! Entity keys given on the command line (`verify ENTITY`, `list --entity`, `reprocess --entity`).
//!
//! [`EntityKey::parse`] reads `tenant/source/entity_type/external_id`, and `source/entity_type/external_id` for the
//! default tenant; text of four parts or more is always the long form. An external id may contain `/` (GitHub's
//! `octo/hello#12`), so `github/issue/octo/hello#12` — the short form of the default tenant's issue — reads as tenant
//! `github`'s entity of source `issue`. The command line looks both readings up and takes the one with something
//! recorded, saying so on standard error with the four-part key to pass instead.

use crate::error::CliError;
use synctrail::destination::ReadError;
use synctrail::engine::Ports;
use synctrail::model::{EntityKey, DEFAULT_TENANT};
use synctrail::store::EventQuery;

/// How a key on the command line reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readings {
    /// The library's reading ([`EntityKey::parse`]).
    pub parsed: EntityKey,
    /// For text of four parts or more: the short form's reading (the default tenant, the external id from the third
    /// part on), when it is valid and another entity.
    pub short: Option<EntityKey>,
}

/// Reads `text` as an entity key; `flag` names where it came from in the error.
pub fn readings(text: &str, flag: &str) -> Result<Readings, CliError> {
    let parsed = EntityKey::parse(text).map_err(|e| {
        CliError::InvalidArgument(format!(
            "{flag}: {e}; e.g. default/github/issue/widgets#12 or github/issue/widgets#12"
        ))
    })?;
    let short = match text.splitn(3, '/').collect::<Vec<_>>().as_slice() {
        [source, entity_type, external_id] if external_id.contains('/') => {
            EntityKey::new(DEFAULT_TENANT, source, entity_type, external_id).ok()
        }
        _ => None,
    };
    Ok(Readings { short: short.filter(|s| *s != parsed), parsed })
}

/// Whether anything is recorded for `entity`: its head, an event, or a row at the destination (when it can be read).
pub async fn recorded(ports: &Ports, entity: &EntityKey) -> Result<bool, CliError> {
    let doing = || format!("looking up entity {entity}");
    if ports.store.get_head(entity).await.map_err(CliError::store(doing()))?.is_some() {
        return Ok(true);
    }
    let query = EventQuery { entity: Some(entity.clone()), limit: 1, ..EventQuery::default() };
    if !ports.store.list_events(&query).await.map_err(CliError::store(doing()))?.is_empty() {
        return Ok(true);
    }
    match ports.destination.read(entity).await {
        Ok(row) => Ok(row.is_some()),
        // A destination that can't read has nothing to say either way.
        Err(ReadError::Unsupported(_)) => Ok(false),
        // Nor one that failed: the command will meet the failure itself.
        Err(ReadError::Failed(_)) => Ok(true),
    }
}

/// The entity `text` names, looked up when it reads two ways (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The entity.
    pub entity: EntityKey,
    /// Whether anything is recorded for it.
    pub recorded: bool,
    /// The other reading, looked up too and with nothing recorded.
    pub other: Option<EntityKey>,
    /// What to tell the user on standard error about the reading chosen.
    pub note: Option<String>,
}

/// Resolves `text` (from `flag`) against what `ports` hold: the library's reading, unless only the short form's
/// reading has something recorded. A four-part key always means what the library reads (the text of any entity's
/// four-part key reads as that entity), so when both readings have something recorded the library's is taken,
/// with a note naming the other's four-part key.
pub async fn resolve(ports: &Ports, text: &str, flag: &str) -> Result<Resolved, CliError> {
    let Readings { parsed, short } = readings(text, flag)?;
    let parsed_recorded = recorded(ports, &parsed).await?;
    let Some(short) = short else {
        return Ok(Resolved { entity: parsed, recorded: parsed_recorded, other: None, note: None });
    };
    let short_recorded = recorded(ports, &short).await?;
    match (parsed_recorded, short_recorded) {
        (true, true) => Ok(Resolved {
            note: Some(format!(
                "note: {text} read as {parsed} (tenant {}, external id {:?}); {short} (the default tenant, external \
                 id {:?}) has something recorded too: to mean it, pass its four-part key {short}",
                parsed.tenant, parsed.external_id, short.external_id
            )),
            entity: parsed,
            recorded: true,
            other: None,
        }),
        (false, true) => Ok(Resolved {
            note: Some(format!(
                "note: {text} read as {short} (the default tenant, external id {:?}): {parsed} has nothing \
                 recorded; pass the four-part key to say which you mean",
                short.external_id
            )),
            entity: short,
            recorded: true,
            other: None,
        }),
        (true, false) => Ok(Resolved { entity: parsed, recorded: true, other: None, note: None }),
        (false, false) => Ok(Resolved { entity: parsed, recorded: false, other: Some(short), note: None }),
    }
}

/// [`resolve`], the note printed on standard error.
pub async fn resolve_noting(ports: &Ports, text: &str, flag: &str) -> Result<Resolved, CliError> {
    let resolved = resolve(ports, text, flag).await?;
    if let Some(note) = &resolved.note {
        eprintln!("{note}");
    }
    Ok(resolved)
}

impl Resolved {
    /// The entity, or [`CliError::NothingRecorded`] when nothing is recorded for it (nor for the other reading).
    pub fn require_recorded(self) -> Result<EntityKey, CliError> {
        if self.recorded {
            return Ok(self.entity);
        }
        let also = self.other.map(|o| format!(" nor for {o}, the short form's reading")).unwrap_or_default();
        Err(CliError::NothingRecorded { entity: self.entity.to_string(), also })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> EntityKey {
        EntityKey::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_key_of_four_parts_or_more_also_reads_as_the_short_form_when_that_is_valid() {
        let r = readings("github/issue/o/r#2", "ENTITY").expect("a key");
        assert_eq!(r.parsed, key("github/issue/o/r#2"));
        assert_eq!(r.parsed.tenant, "github", "the library's reading: the long form");
        assert_eq!(r.short, Some(key("default/github/issue/o/r#2")));
        assert_eq!(r.short.map(|s| s.external_id), Some("o/r#2".to_owned()));

        let long = readings("default/github/issue/o/r#2", "ENTITY").expect("a key");
        assert_eq!(long.parsed.external_id, "o/r#2");
        assert_eq!(long.short.map(|s| s.to_string()), Some("default/default/github/issue/o/r#2".to_owned()));
    }

    #[test]
    fn a_key_of_three_parts_reads_one_way_only() {
        let r = readings("github/issue/12", "ENTITY").expect("a key");
        assert_eq!((r.parsed, r.short), (key("default/github/issue/12"), None));
        let r = readings("Acme/github/issue/12", "ENTITY").map(|r| r.short);
        assert!(r.is_err(), "an invalid tenant is refused as the library refuses it: {r:?}");
        let error = readings("github/issue", "--entity").expect_err("two parts");
        assert!(error.to_string().starts_with("--entity: entity key \"github/issue\" is invalid"), "{error}");
        assert_eq!(error.exit_code(), crate::error::EXIT_UNKNOWN);
    }

    #[test]
    fn nothing_recorded_names_both_readings_and_exits_2() {
        let resolved = Resolved {
            entity: key("github/issue/o/r#2"),
            recorded: false,
            other: Some(key("default/github/issue/o/r#2")),
            note: None,
        };
        let error = resolved.require_recorded().expect_err("nothing recorded");
        let text = error.to_string();
        assert!(text.starts_with("nothing is recorded for entity github/issue/o/r#2 "), "{text}");
        assert!(text.contains("nor for default/github/issue/o/r#2"), "{text}");
        assert_eq!(error.exit_code(), crate::error::EXIT_UNKNOWN);
    }
}
