//! The `body` attribute of record and head items: the value's JSON, zstd-compressed with a built-in dictionary.
//!
//! DynamoDB bills one write unit per started KB of an item, so the body's size decides whether a record write costs
//! one unit or two. A record's JSON is ≈ 1.9 KB, most of it field names, status words, timestamps and ids in a shape
//! every record shares; plain zstd gets it to ≈ 800 bytes, which with the keys and index attributes passed 1 KB. With
//! a dictionary of that shape (`body-dictionary-v1.json`, raw content: representative records and a head) the same
//! record compresses to ≈ 420 bytes and the item stays under 1 KB (docs/aws-table.md).
//!
//! Formats, told apart by the first byte:
//! - `0x02` then a zstd frame compressed with dictionary v1 of a record's JSON without its leading `event_id`
//!   member, which the item's key (`EVENT#<id>`) holds: what this version writes for records (2026-12-07; the id
//!   was ≈ 25 of a record body's ≈ 405 bytes with a GUID, 130 with 128 random characters);
//! - `0x01` then a zstd frame compressed with dictionary v1 (what this version writes for heads and history parts,
//!   and wrote for records before);
//! - a zstd frame without a dictionary (its magic number starts with `0x28`; items written before the dictionary);
//! - a string attribute: plain JSON (items written before compression).
//!
//! The dictionary is part of the stored format: items written with it can only be read with the very same bytes
//! (a test pins its SHA-256). A better dictionary needs a new format byte, with v1 kept for reading.

use crate::model::EventRecord;
use crate::store::StoreError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use std::io::Read;
use std::sync::OnceLock;
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// The dictionary's bytes (raw content, never to change; see the module doc).
const DICTIONARY_V1: &[u8] = include_bytes!("body-dictionary-v1.json");
/// The first byte of a body compressed with [`DICTIONARY_V1`].
const FORMAT_V1: u8 = 0x01;
/// The first byte of a record's body compressed with [`DICTIONARY_V1`] without its `event_id`, which the item's key
/// holds.
const FORMAT_V1_KEYED: u8 = 0x02;
/// zstd level: records compress in microseconds at 3; higher levels gain a few per cent.
const LEVEL: i32 = 3;

/// The largest JSON a body may decompress to: a DynamoDB item is at most 400 KB, so a frame claiming more is damaged.
const MAX_JSON: u64 = 4 << 20;

thread_local! {
    // One compression and one decompression context per thread, made on first use and reused: making a context with
    // the dictionary loaded costs about four times what compressing a record does (36 µs against 9; 26 µs against
    // 3.5 to decompress one, release build, x86_64), and every event writes four bodies and reads two or three.
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

fn encoder_dictionary() -> &'static EncoderDictionary<'static> {
    static DICTIONARY: OnceLock<EncoderDictionary<'static>> = OnceLock::new();
    DICTIONARY.get_or_init(|| EncoderDictionary::copy(DICTIONARY_V1, LEVEL))
}

fn decoder_dictionary() -> &'static DecoderDictionary<'static> {
    static DICTIONARY: OnceLock<DecoderDictionary<'static>> = OnceLock::new();
    DICTIONARY.get_or_init(|| DecoderDictionary::copy(DICTIONARY_V1))
}

/// `value` as the `body` attribute: [`FORMAT_V1`], then its JSON compressed with the dictionary.
pub(super) fn encode<T: Serialize>(value: &T, what: &str) -> Result<AttributeValue, StoreError> {
    compressed(FORMAT_V1, &to_json(value, what)?, what)
}

/// A record as the `body` attribute: [`FORMAT_V1_KEYED`], then its JSON without the `event_id` member (the first
/// one: the field comes first in [`EventRecord`]) compressed with the dictionary. Read back by [`decode`] given the
/// id of the item's key.
pub(super) fn encode_record(record: &EventRecord, what: &str) -> Result<AttributeValue, StoreError> {
    let mut json = to_json(record, what)?;
    let member = id_member(record.event_id.as_str());
    if !json.get(1..).is_some_and(|rest| rest.starts_with(member.as_bytes())) {
        return Err(StoreError::Backend(format!("{what}: its JSON does not begin with its event_id").into()));
    }
    // The member and its comma give way to the object's opening brace.
    let start = member.len();
    json[start] = b'{';
    compressed(FORMAT_V1_KEYED, &json[start..], what)
}

/// `"event_id":"<id>",` (an id is written as it is: its characters need no escaping in JSON).
fn id_member(event_id: &str) -> String {
    format!("\"event_id\":\"{event_id}\",")
}

fn to_json<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(format!("encoding {what} as JSON: {e}").into()))
}

/// `format`, then `json` compressed with the dictionary.
fn compressed(format: u8, json: &[u8], what: &str) -> Result<AttributeValue, StoreError> {
    let frame = COMPRESSOR
        .with(|slot| {
            let mut slot = slot.borrow_mut();
            let compressor = match slot.as_mut() {
                Some(compressor) => compressor,
                None => slot.insert(Compressor::with_prepared_dictionary(encoder_dictionary())?),
            };
            compressor.compress(json)
        })
        .map_err(|e| StoreError::Backend(format!("compressing {what}: {e}").into()))?;
    let mut body = Vec::with_capacity(frame.len() + 1);
    body.push(format);
    body.extend_from_slice(&frame);
    Ok(AttributeValue::B(Blob::new(body)))
}

/// The value a `body` attribute holds, in any of the formats above, `key_id` being the event id of the item's key
/// (`None` for an item that is not a record's); anything else is `Corrupt`.
pub(super) fn decode<T: DeserializeOwned>(
    body: Option<&AttributeValue>,
    key_id: Option<&str>,
    what: &str,
) -> Result<T, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("{what}: {why}").into());
    let json = match body {
        Some(AttributeValue::B(bytes)) => match bytes.as_ref().split_first() {
            Some((&FORMAT_V1_KEYED, frame)) => decompress(frame, true).and_then(|json| with_id(&json, key_id)),
            Some((&FORMAT_V1, frame)) => decompress(frame, true),
            Some(_) => decompress(bytes.as_ref(), false),
            None => Err(std::io::Error::other("the body is empty")),
        }
        .map_err(|e| corrupt(format!("stored body does not decompress: {e}")))?,
        Some(AttributeValue::S(json)) => json.as_bytes().to_vec(),
        _ => return Err(corrupt("the item has no `body`".to_owned())),
    };
    serde_json::from_slice(&json).map_err(|e| corrupt(format!("stored JSON does not decode: {e}")))
}

/// A record's JSON stored without its `event_id` (`{…}`), with the id of the item's key put back first.
fn with_id(json: &[u8], key_id: Option<&str>) -> std::io::Result<Vec<u8>> {
    let key_id = key_id.ok_or_else(|| std::io::Error::other("a record's body outside a record's item"))?;
    let Some((b'{', rest)) = json.split_first() else {
        return Err(std::io::Error::other("a record's body that is not a JSON object"));
    };
    let member = id_member(key_id);
    let mut whole = Vec::with_capacity(json.len() + member.len());
    whole.push(b'{');
    // An object with no other member (never written) would take no comma.
    let member = if rest.first() == Some(&b'}') { member.trim_end_matches(',') } else { &member };
    whole.extend_from_slice(member.as_bytes());
    whole.extend_from_slice(rest);
    Ok(whole)
}

fn decompress(frame: &[u8], with_dictionary: bool) -> std::io::Result<Vec<u8>> {
    if with_dictionary {
        // Frames this module writes state their content size.
        let size = zstd::zstd_safe::get_frame_content_size(frame)
            .map_err(|_| std::io::Error::other("not a zstd frame"))?
            .ok_or_else(|| std::io::Error::other("the frame does not state its size"))?;
        if size > MAX_JSON {
            return Err(std::io::Error::other(format!("the frame claims {size} bytes of JSON")));
        }
        let capacity = usize::try_from(size).map_err(std::io::Error::other)?;
        return DECOMPRESSOR.with(|slot| {
            let mut slot = slot.borrow_mut();
            let decompressor = match slot.as_mut() {
                Some(decompressor) => decompressor,
                None => slot.insert(Decompressor::with_prepared_dictionary(decoder_dictionary())?),
            };
            decompressor.decompress(frame, capacity)
        });
    }
    let mut json = Vec::with_capacity(frame.len() * 4);
    zstd::stream::read::Decoder::new(frame)?.read_to_end(&mut json)?;
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn record_json() -> serde_json::Value {
        serde_json::json!({
            "event_id": "d-b403278f1fe258f4f2bd79bdca932b18a255295f", "client_event_id": false,
            "entity": {"tenant": "default", "source": "github", "entity_type": "issue", "external_id": "octo-org/widgets#1342"},
            "order": {"nanos": 1796284920000000000_i64, "version": 0}, "kind": "upsert", "direction": "inbound",
            "content_hash": "6c4b072b13e3f4fc01ac42be523876f0ef3c1056e9b701ef3c7084b04a88ac40",
            "payload": {"key": "payloads/2026/12/03/batch-08bdab974502ac8b244587e218c4e67bf38467d2290ded5b2cbe069b26093ef8.zst",
                        "sha256": "08bdab974502ac8b244587e218c4e67bf38467d2290ded5b2cbe069b26093ef8", "size": 82,
                        "range": {"offset": 0, "length": 91}},
            "delivery_id": "72d3162e-cc78-11e3-81ab-4c9367dc0902", "status": "completed", "attempt": 1,
            "received_at": "2026-12-03T08:27:01.905883881Z", "completed_at": "2026-12-03T08:27:01.906786045Z",
            "history": [
                {"status": "received", "at": "2026-12-03T08:27:01.905884632Z", "attempt": 0,
                 "function": "synctrail-processor:$LATEST", "request_id": "93f5ad5b-bd6e-47da-aa83-7191ce2f6ce0",
                 "trace_id": "Root=1-692fe1a5-0000000082441f01f5c2b443"},
                {"status": "completed", "at": "2026-12-03T08:27:01.906787407Z", "attempt": 1,
                 "function": "synctrail-processor:$LATEST", "request_id": "93f5ad5b-bd6e-47da-aa83-7191ce2f6ce0",
                 "trace_id": "Root=1-692fe1a5-0000000082441f01f5c2b443"}
            ],
            "version": 2
        })
    }

    #[test]
    fn the_dictionary_is_the_stored_format_and_never_changes() {
        assert_eq!(
            hex::encode(Sha256::digest(DICTIONARY_V1)),
            "7b7566eba8042405ea27eba3418a49c03db41431fa78900c1910de92ffd1e2a2",
            "items written with dictionary v1 need exactly these bytes to be read: add a new format instead"
        );
    }

    #[test]
    fn a_record_round_trips_and_the_dictionary_halves_its_body() {
        let record = record_json();
        let body = encode(&record, "a record").unwrap_or_else(|e| panic!("{e}"));
        let plain = zstd::bulk::compress(&serde_json::to_vec(&record).unwrap_or_default(), LEVEL).unwrap_or_default();
        match &body {
            AttributeValue::B(bytes) => {
                assert_eq!(bytes.as_ref()[0], FORMAT_V1);
                assert!(
                    bytes.as_ref().len() * 10 < plain.len() * 7,
                    "{} vs {} bytes",
                    bytes.as_ref().len(),
                    plain.len()
                );
            }
            other => panic!("expected a binary body, got {other:?}"),
        }
        assert_eq!(decode::<serde_json::Value>(Some(&body), None, "a record").ok(), Some(record));
    }

    #[test]
    fn a_record_is_stored_without_the_id_its_key_holds_and_read_back_whole() {
        let mut json = record_json();
        json["updated_at"] = json["completed_at"].clone();
        json["expires_at"] = serde_json::json!("2028-02-06T08:27:01Z");
        let mut record: EventRecord = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        let id =
            "u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKOmxgJTeKdNnFRIBXuDL7DxtpYlSXpfKtHF4vUCsMehGAk";
        record.event_id = crate::model::EventId::parse(id).unwrap_or_else(|e| panic!("{e}"));
        let body = encode_record(&record, "a record").unwrap_or_else(|e| panic!("{e}"));
        let whole = encode(&record, "a record").unwrap_or_else(|e| panic!("{e}"));
        let size = |body: &AttributeValue| match body {
            AttributeValue::B(bytes) => bytes.as_ref().len(),
            other => panic!("expected a binary body, got {other:?}"),
        };
        assert!(matches!(&body, AttributeValue::B(bytes) if bytes.as_ref()[0] == FORMAT_V1_KEYED));
        assert!(size(&body) + id.len() - 8 <= size(&whole), "{} vs {} bytes", size(&body), size(&whole));
        let read: EventRecord = decode(Some(&body), Some(id), "a record").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read, record);
        assert!(matches!(decode::<EventRecord>(Some(&body), None, "a record"), Err(StoreError::Corrupt(_))));
        let before: EventRecord = decode(Some(&whole), Some(id), "a record").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(before, record, "a record's body written whole (before) reads as it did");
    }

    #[test]
    fn bodies_written_before_the_dictionary_still_decode() {
        let record = record_json();
        let json = serde_json::to_vec(&record).unwrap_or_default();
        let compressed = AttributeValue::B(Blob::new(zstd::bulk::compress(&json, LEVEL).unwrap_or_default()));
        assert_eq!(decode::<serde_json::Value>(Some(&compressed), None, "old").ok(), Some(record.clone()));
        let text = AttributeValue::S(String::from_utf8(json).unwrap_or_default());
        assert_eq!(decode::<serde_json::Value>(Some(&text), None, "older").ok(), Some(record));
    }

    #[test]
    fn bodies_encoded_and_decoded_one_after_another_on_one_thread_each_round_trip() {
        // The thread's compression contexts are reused: nothing of one body may leak into the next.
        let record = record_json();
        let head = serde_json::json!({"entity": record["entity"], "fence": 6, "parked": 0, "version": 12});
        let bodies = [encode(&record, "a record"), encode(&head, "a head"), encode(&record, "a record")]
            .map(|body| body.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(bodies[0], bodies[2], "the same record encodes to the same bytes");
        for (body, value) in bodies.iter().zip([&record, &head, &record]).rev() {
            assert_eq!(decode::<serde_json::Value>(Some(body), None, "a body").ok().as_ref(), Some(value));
        }
    }

    #[test]
    fn a_body_claiming_more_json_than_an_item_can_hold_is_corrupt() {
        let huge = serde_json::Value::String("a".repeat(usize::try_from(MAX_JSON).unwrap_or(usize::MAX) + 1));
        let body = encode(&huge, "a huge value").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(decode::<serde_json::Value>(Some(&body), None, "huge"), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_damaged_or_missing_body_is_corrupt() {
        for body in [
            Some(AttributeValue::B(Blob::new(vec![FORMAT_V1, 1, 2, 3]))),
            Some(AttributeValue::B(Blob::new(vec![0x28, 2, 3]))),
            Some(AttributeValue::B(Blob::new(Vec::new()))),
            Some(AttributeValue::N("1".to_owned())),
            None,
        ] {
            assert!(
                matches!(decode::<serde_json::Value>(body.as_ref(), None, "x"), Err(StoreError::Corrupt(_))),
                "{body:?}"
            );
        }
    }
}
