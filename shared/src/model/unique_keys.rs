//! JSON text → [`serde_json::Value`] in one pass, refusing any object that names a key twice.
//!
//! `serde_json` keeps the last of two equal keys: `{"external_id":"a","external_id":"b"}` silently becomes `"b"`,
//! and another parser might keep `"a"`. An envelope whose meaning depends on the parser is ambiguous, so the
//! envelope parser builds its value with [`parse`], which stops at the first repeated key and names its path
//! (`external_id`, `payload.items[2].sku`). It is serde_json's own value builder plus one map look-up per key:
//! the body is read once, and the path is only assembled on the way out of an error.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};
use std::fmt;

/// The longest path an error names; a longer one (absurdly long keys) is cut and ends with `…`.
const MAX_PATH_BYTES: usize = 256;

/// Why a text is not a JSON value without repeated keys.
#[derive(Debug)]
pub(crate) enum UniqueKeysError {
    /// Not JSON at all (or nested deeper than serde_json's recursion limit).
    Syntax(serde_json::Error),
    /// An object names a key twice; `path` leads to it from the top (`payload.title`).
    DuplicateKey {
        /// The repeated key's path.
        path: String,
    },
}

/// Parses `text` as one JSON value, refusing an object with a repeated key.
pub(crate) fn parse(text: &str) -> Result<Value, UniqueKeysError> {
    let mut path = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = ValueSeed { path: &mut path }.deserialize(&mut deserializer).and_then(|value| {
        deserializer.end()?;
        Ok(value)
    });
    match parsed {
        Ok(value) => Ok(value),
        Err(_) if !path.is_empty() => Err(UniqueKeysError::DuplicateKey { path: render(&path) }),
        Err(e) => Err(UniqueKeysError::Syntax(e)),
    }
}

/// One step of a path, recorded innermost first while a duplicate-key error unwinds.
enum Segment {
    Key(String),
    Index(usize),
}

/// `payload.items[2].sku`; a key that is not a plain word is quoted: `payload["a.b"]`.
fn render(innermost_first: &[Segment]) -> String {
    let mut out = String::new();
    for segment in innermost_first.iter().rev() {
        match segment {
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Key(key) if is_word(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Key(key) => out.push_str(&format!("[{}]", Value::String(key.clone()))),
        }
    }
    if out.len() > MAX_PATH_BYTES {
        let mut cut = MAX_PATH_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn is_word(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Builds a [`Value`] like serde_json's own visitor; `path` is empty until a repeated key is met, then each
/// enclosing object and array adds its step as the error passes through.
struct ValueSeed<'p> {
    path: &'p mut Vec<Segment>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            match seq.next_element_seed(ValueSeed { path: &mut *self.path }) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    if !self.path.is_empty() {
                        self.path.push(Segment::Index(items.len()));
                    }
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match object.entry(key) {
                Entry::Occupied(repeated) => {
                    self.path.push(Segment::Key(repeated.key().clone()));
                    return Err(de::Error::custom("an object names a key twice"));
                }
                Entry::Vacant(slot) => match map.next_value_seed(ValueSeed { path: &mut *self.path }) {
                    Ok(value) => {
                        slot.insert(value);
                    }
                    Err(e) => {
                        if !self.path.is_empty() {
                            self.path.push(Segment::Key(slot.key().clone()));
                        }
                        return Err(e);
                    }
                },
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate(text: &str) -> String {
        match parse(text) {
            Err(UniqueKeysError::DuplicateKey { path }) => path,
            other => panic!("{text}: expected a duplicate key, got {other:?}"),
        }
    }

    #[test]
    fn json_without_repeated_keys_parses_as_serde_json_does() {
        for text in [
            r#"{"a":1,"b":[true,null,-2,3.5,"x",{"a":{}}],"c":{"a":1,"b":{"a":2}},"d":18446744073709551615}"#,
            "[]",
            "  42 ",
            r#""\u00e9""#,
            r#"[{"k":1},{"k":2}]"#,
        ] {
            let expected: Value = serde_json::from_str(text).expect("valid JSON");
            assert_eq!(parse(text).expect("parses"), expected, "{text}");
        }
    }

    #[test]
    fn a_repeated_key_is_named_by_its_path() {
        assert_eq!(duplicate(r#"{"external_id":"a","external_id":"b"}"#), "external_id");
        assert_eq!(duplicate(r#"{"payload":{"title":"a","n":1,"title":"b"}}"#), "payload.title");
        assert_eq!(duplicate(r#"{"payload":{"items":[{"sku":1},{"sku":2,"sku":3}]}}"#), "payload.items[1].sku");
        assert_eq!(duplicate(r#"[[1],[{"a":{"b":1,"b":1}}]]"#), "[1][0].a.b");
        assert_eq!(duplicate(r#"{"payload":{"a.b":{"":1,"":2}}}"#), r#"payload["a.b"][""]"#);
    }

    #[test]
    fn the_same_key_in_different_objects_is_fine() {
        let text = r#"{"title":1,"payload":{"title":2,"nested":{"title":3}},"list":[{"title":4},{"title":5}]}"#;
        assert!(parse(text).is_ok());
    }

    #[test]
    fn a_path_of_absurd_keys_is_cut() {
        let key = "k".repeat(1000);
        let path = duplicate(&format!(r#"{{"{key}":{{"{key}":1,"{key}":2}}}}"#));
        assert!(path.len() <= MAX_PATH_BYTES + '…'.len_utf8() && path.ends_with('…'), "{}", path.len());
    }

    #[test]
    fn broken_json_is_a_syntax_error() {
        for text in ["", "{", r#"{"a":1,}"#, "[1] 2", r#"{"a":1}{"#, &"[".repeat(200)] {
            assert!(matches!(parse(text), Err(UniqueKeysError::Syntax(_))), "{text:.40}");
        }
    }
}
