//! A source configured without code: JSON pointers name the external id, `updated_at` and entity type.

use super::draft::{id, parse, text, Draft, Mapping, MappingError};
use super::headers::Headers;
use super::signature::SignatureScheme;
use crate::model::Kind;

/// Where a configured source's fields are. Every delivery is an upsert whose payload is the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericMapping {
    /// Where the signature is and how it is written.
    pub signature: SignatureScheme,
    /// A fixed entity type, or where it is.
    pub entity_type: EntityTypeAt,
    /// JSON pointer (RFC 6901) to the external id: a string or an integer.
    pub external_id: String,
    /// JSON pointer to `updated_at`: an RFC 3339 string.
    pub updated_at: String,
    /// A header whose value identifies the event across redeliveries; the event id is `<source>:<value>`.
    /// Without it, the event id is derived from the content (spec §3), which is just as stable for a redelivery
    /// of the same bytes.
    pub event_id_header: Option<String>,
}

/// Where a generic source's entity type comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityTypeAt {
    /// Every delivery is of this type.
    Fixed(String),
    /// The string at this JSON pointer.
    Pointer(String),
}

impl GenericMapping {
    /// Maps one authenticated delivery.
    pub(super) fn map(&self, headers: &Headers, body: &[u8]) -> Result<Mapping, MappingError> {
        let body = parse(body)?;
        let entity_type = match &self.entity_type {
            EntityTypeAt::Fixed(name) => name.clone(),
            EntityTypeAt::Pointer(pointer) => text(&body, pointer)?.to_owned(),
        };
        let event = self.event_id_header.as_deref().and_then(|h| headers.get(h));
        Ok(Mapping::Change(Draft {
            entity_type,
            external_id: id(&body, &self.external_id)?,
            updated_at: text(&body, &self.updated_at)?.to_owned(),
            kind: Kind::Upsert,
            tenant: None,
            event_key: event.map(str::to_owned),
            delivery_id: event.map(str::to_owned),
            payload: body,
        }))
    }
}
