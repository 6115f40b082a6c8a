//! Times in stored records and heads (`#[serde(with = "rfc3339")]`): the same text chrono's serde writes and reads
//! (RFC 3339 in UTC with `Z`, a fraction of 0, 3, 6 or 9 digits), written without `fmt` and read without chrono's
//! general parser for that usual shape. Records and heads are written several times per event, each with several
//! times in it; anything else (other years, offsets, leap seconds) goes through chrono as before.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// Writes `at` as chrono's serde does.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = [0u8; MAX_LEN];
    match write(at, &mut text).and_then(|len| std::str::from_utf8(&text[..len]).ok()) {
        Some(text) => serializer.serialize_str(text),
        None => at.serialize(serializer),
    }
}

/// Reads a time as chrono's serde does: any RFC 3339 time, converted to UTC.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    deserializer.deserialize_str(TimeVisitor)
}

/// The same for an optional time (`null` or absent: none).
pub mod option {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Time(#[serde(with = "super")] DateTime<Utc>);

    /// Writes `Some(at)` as [`super::serialize`] does, `None` as `null`.
    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serializer.serialize_some(&Time(*at)),
            None => serializer.serialize_none(),
        }
    }

    /// Reads `null` as none, a time as [`super::deserialize`] does.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Ok(Option::<Time>::deserialize(deserializer)?.map(|time| time.0))
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
const MAX_LEN: usize = 30;

/// Writes `at` into `out` as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` does, for years 0–9999
/// outside a leap second; the length written, or `None` for a time of another shape.
fn write(at: &DateTime<Utc>, out: &mut [u8; MAX_LEN]) -> Option<usize> {
    use chrono::{Datelike, Timelike};
    // The fields of the UTC date and time as stored: `DateTime`'s own accessors add the (zero) offset at each call.
    let at = at.naive_utc();
    let year = u32::try_from(at.year()).ok().filter(|year| *year <= 9999)?;
    let nano = at.nanosecond();
    if nano >= 1_000_000_000 {
        return None;
    }
    let mut digits = |from: usize, value: u32, count: usize| {
        let mut rest = value;
        for place in out[from..from + count].iter_mut().rev() {
            *place = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    };
    digits(0, year, 4);
    digits(5, at.month(), 2);
    digits(8, at.day(), 2);
    digits(11, at.hour(), 2);
    digits(14, at.minute(), 2);
    digits(17, at.second(), 2);
    let fraction = match nano {
        0 => None,
        n if n % 1_000_000 == 0 => Some((n / 1_000_000, 3)),
        n if n % 1_000 == 0 => Some((n / 1_000, 6)),
        n => Some((n, 9)),
    };
    let mut len = 19;
    if let Some((value, count)) = fraction {
        digits(20, value, count);
        len += 1 + count;
    }
    for (place, byte) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (len, b'Z')] {
        out[place] = byte;
    }
    Some(len + 1)
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.f…]Z` (1 to 9 fraction digits); `None` for any other text, valid or not.
fn read(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes.last() != Some(&b'Z') {
        return None;
    }
    let number = |from: usize, count: usize| -> Option<u32> {
        bytes
            .get(from..from + count)?
            .iter()
            .try_fold(0u32, |value, byte| byte.is_ascii_digit().then(|| value * 10 + u32::from(byte - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|(at, byte)| bytes[*at] != *byte) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(number(0, 4)?).ok()?, number(5, 2)?, number(8, 2)?)?;
    let nano = match &bytes[19..bytes.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            number(20, fraction.len())? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let time = NaiveTime::from_hms_nano_opt(number(11, 2)?, number(14, 2)?, number(17, 2)?, nano)?;
    Some(date.and_time(time).and_utc())
}

struct TimeVisitor;

impl Visitor<'_> for TimeVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an RFC 3339 formatted date and time string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<DateTime<Utc>, E> {
        match read(text) {
            Some(at) => Ok(at),
            None => text.parse::<DateTime<FixedOffset>>().map(|at| at.with_timezone(&Utc)).map_err(E::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ours(#[serde(with = "super")] DateTime<Utc>);

    #[test]
    fn a_time_is_written_and_read_exactly_as_chronos_serde_does() {
        let start = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 58).single().expect("a valid time");
        let mut at = start;
        // Steps that give fractions of every length, and cross a second, a year and a leap day.
        for step in 0..20_000_i64 {
            let nanos = match step % 4 {
                0 => 1_000_000_000,
                1 => 137_000_000,
                2 => 2_500_000 + 1_000 * step,
                _ => 86_400_000_000_000 + 7 * step + 1,
            };
            at += Duration::nanoseconds(nanos);
            let chrono_text = serde_json::to_string(&at).expect("chrono writes");
            assert_eq!(serde_json::to_string(&Ours(at)).expect("ours writes"), chrono_text, "{at:?}");
            assert_eq!(serde_json::from_str::<Ours>(&chrono_text).expect("ours reads").0, at, "{chrono_text}");
        }
    }

    #[test]
    fn times_of_other_shapes_are_written_and_read_by_chrono() {
        let far = Utc.with_ymd_and_hms(12_345, 1, 2, 3, 4, 5).single().expect("a valid time");
        assert_eq!(serde_json::to_string(&Ours(far)).ok(), serde_json::to_string(&far).ok());
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("a leap second")
            .and_utc();
        assert_eq!(serde_json::to_string(&Ours(leap)).ok(), serde_json::to_string(&leap).ok());
        for text in [
            r#""2026-05-01T12:00:00+02:00""#,
            r#""2026-05-01t12:00:00.5z""#,
            r#""2026-05-01 12:00:00Z""#,
            r#""2026-05-01T12:00:00.1234567891Z""#,
            r#""2016-12-31T23:59:60Z""#,
            r#""2026-02-30T12:00:00Z""#,
            r#""2026-05-01T24:00:00Z""#,
            r#""2026-05-01T12:00:00.Z""#,
            r#""+12345-01-02T03:04:05Z""#,
            r#""2026-05-01T1:00:00Z""#,
            r#""not a time""#,
        ] {
            let ours = serde_json::from_str::<Ours>(text).map(|t| t.0).ok();
            assert_eq!(ours, serde_json::from_str::<DateTime<Utc>>(text).ok(), "{text}");
        }
    }

    #[test]
    fn an_optional_time_is_null_or_the_time() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Maybe {
            #[serde(default, skip_serializing_if = "Option::is_none", with = "option")]
            at: Option<DateTime<Utc>>,
        }
        let at = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).single();
        assert_eq!(serde_json::to_string(&Maybe { at }).ok().as_deref(), Some(r#"{"at":"2026-05-01T12:00:00Z"}"#));
        assert_eq!(serde_json::to_string(&Maybe { at: None }).ok().as_deref(), Some("{}"));
        for (text, expected) in [(r#"{"at":"2026-05-01T12:00:00Z"}"#, at), (r#"{"at":null}"#, None), ("{}", None)] {
            assert_eq!(serde_json::from_str::<Maybe>(text).ok(), Some(Maybe { at: expected }), "{text}");
        }
    }
}
