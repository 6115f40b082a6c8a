//! Item sizes as DynamoDB bills them ("Item sizes and formats" in the DynamoDB developer guide).

pub use crate::store::aws::wire::Item;
use aws_sdk_dynamodb::types::AttributeValue;

/// Bytes DynamoDB adds to every item (and every index entry) for storage, not for capacity units.
pub const STORAGE_OVERHEAD: u64 = 100;

/// The size of an item: the UTF-8 length of every attribute name plus the size of its value.
pub fn item_size(item: &Item) -> u64 {
    item.iter().map(|(name, value)| name.len() as u64 + value_size(value)).sum()
}

/// The size of one value: strings by UTF-8 bytes, binary by raw bytes, numbers by one byte per two significant
/// digits plus one, null and booleans one byte, lists and maps 3 bytes plus one per element plus their elements
/// (and, in maps, their names), sets the sum of their elements.
pub fn value_size(value: &AttributeValue) -> u64 {
    match value {
        AttributeValue::S(text) => text.len() as u64,
        AttributeValue::N(number) => number_size(number),
        AttributeValue::B(blob) => blob.as_ref().len() as u64,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(texts) => texts.iter().map(|t| t.len() as u64).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|b| b.as_ref().len() as u64).sum(),
        AttributeValue::L(values) => 3 + values.iter().map(|v| 1 + value_size(v)).sum::<u64>(),
        AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() as u64 + value_size(v)).sum::<u64>(),
        _ => 0,
    }
}

/// One byte per two significant digits (leading and trailing zeros trimmed), plus one.
fn number_size(number: &str) -> u64 {
    let mantissa = number.split(['e', 'E']).next().unwrap_or(number);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1) as u64;
    significant.div_ceil(2) + 1
}

/// Write units of `size` bytes: one per started KB, at least one.
pub fn write_units(size: u64) -> u64 {
    size.div_ceil(1024).max(1)
}

/// Read units of `size` bytes read strongly consistently: one per started 4 KB, at least one.
pub fn read_units(size: u64) -> u64 {
    size.div_ceil(4096).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::aws::wire::item_from_wire;
    use serde_json::json;

    #[test]
    fn sizes_follow_the_documented_rules() {
        assert_eq!(number_size("0"), 2);
        assert_eq!(number_size("12345"), 4);
        assert_eq!(number_size("1000000"), 2);
        assert_eq!(number_size("-0.00123"), 3);
        let item = item_from_wire(&json!({
            "pk": {"S": "abc"},
            "n": {"N": "1234"},
            "b": {"B": "AAEC"},
            "t": {"BOOL": true},
            "l": {"L": [{"S": "xy"}, {"NULL": true}]},
            "m": {"M": {"k": {"S": "v"}}}
        }))
        .unwrap_or_default();
        // pk 2+3, n 1+3, b 1+3, t 1+1, l 1+(3+1+2+1+1), m 1+(3+1+1+1)
        assert_eq!(item_size(&item), 5 + 4 + 4 + 2 + 9 + 7);
    }

    #[test]
    fn units_round_up_and_count_at_least_one() {
        assert_eq!((write_units(0), write_units(1024), write_units(1025)), (1, 1, 2));
        assert_eq!((read_units(1), read_units(4096), read_units(4097)), (1, 1, 2));
    }
}
