//! A field diff of two JSON values: where they differ, by path (`price`, `lines[1].sku`), with both values.

use serde::Serialize;
use serde_json::Value;

/// One place where the expected and the actual value differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// The path from the top (`""` for the whole value).
    pub path: String,
    /// What the replay (or the snapshot) holds there; absent: nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// What the destination holds there; absent: nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<Value>,
}

/// Where `expected` and `actual` differ: objects field by field, arrays of equal length item by item, anything else
/// whole. Empty when they are equal.
pub fn diff(expected: &Value, actual: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    walk("", Some(expected), Some(actual), &mut out);
    out
}

fn walk(path: &str, expected: Option<&Value>, actual: Option<&Value>, out: &mut Vec<FieldDiff>) {
    if expected == actual {
        return;
    }
    match (expected, actual) {
        (Some(Value::Object(e)), Some(Value::Object(a))) => {
            let mut keys: Vec<&String> = e.keys().chain(a.keys().filter(|k| !e.contains_key(*k))).collect();
            keys.sort();
            for key in keys {
                let inner = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                walk(&inner, e.get(key), a.get(key), out);
            }
        }
        (Some(Value::Array(e)), Some(Value::Array(a))) if e.len() == a.len() => {
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                walk(&format!("{path}[{i}]"), Some(e), Some(a), out);
            }
        }
        _ => out.push(FieldDiff { path: path.to_owned(), expected: expected.cloned(), actual: actual.cloned() }),
    }
}

/// The paths of `diffs`, comma-separated and cut after a few (for one-line notes).
pub fn summary(diffs: &[FieldDiff]) -> String {
    const SHOWN: usize = 5;
    let mut text = diffs
        .iter()
        .take(SHOWN)
        .map(|d| if d.path.is_empty() { "(whole)" } else { &d.path })
        .collect::<Vec<_>>()
        .join(", ");
    if diffs.len() > SHOWN {
        text.push_str(&format!(" and {} more", diffs.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_are_named_by_path() {
        let expected = json!({"price": "10.00", "lines": [{"sku": "a"}, {"sku": "b"}], "gone": 1});
        let actual = json!({"price": "9.00", "lines": [{"sku": "a"}, {"sku": "c"}], "new": true});
        let paths: Vec<String> = diff(&expected, &actual).into_iter().map(|d| d.path).collect();
        assert_eq!(paths, ["gone", "lines[1].sku", "new", "price"]);
        assert!(diff(&expected, &expected).is_empty());
        let whole = diff(&json!({"a": 1}), &json!(null));
        assert_eq!((whole[0].path.as_str(), whole[0].actual.clone()), ("", Some(json!(null))));
        assert_eq!(summary(&diff(&expected, &actual)), "gone, lines[1].sku, new, price");
    }
}
