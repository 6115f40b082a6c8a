//! Parsing durations such as `90s`, `10m`, `2h`, `3d`, `1w` or `1h30m` (for `list --since`), and numbers of
//! seconds; both at most [`MAX_DAYS`] days (a hundred years), so that a time this far from now can be stored and a
//! wait this long computed.

use crate::error::CliError;
use chrono::{DateTime, Duration, Utc};

/// The longest duration or number of seconds accepted: a hundred years, in days (time arithmetic past it overflows:
/// the stores keep times between 1677 and 2262, and `std::time::Duration` panics on a float beyond `u64` seconds).
pub const MAX_DAYS: i64 = 36_525;

/// [`MAX_DAYS`] in seconds.
pub const MAX_SECONDS: f64 = (MAX_DAYS * 86_400) as f64;

/// Parses one or more `<whole number><unit>` groups, units `s`, `m`, `h`, `d`, `w`; at most [`MAX_DAYS`] days.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {text:?}: expected a number and a unit (s, m, h, d, w), e.g. 10m, 2h, 3d or 1h30m")
    };
    let too_long = || format!("invalid duration {text:?}: at most 100 years ({MAX_DAYS}d) is accepted");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.is_empty() {
            return Err(bad());
        }
        // Only digits: what does not parse is too large.
        let n: i64 = digits.parse().map_err(|_| too_long())?;
        digits.clear();
        let unit = match c {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            'w' => Duration::try_weeks(n),
            _ => return Err(bad()),
        };
        total = unit.and_then(|u| total.checked_add(&u)).ok_or_else(too_long)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    if total > Duration::days(MAX_DAYS) {
        return Err(too_long());
    }
    Ok(total)
}

/// Parses a non-negative number of seconds (fractions allowed) for timeouts and drills; at most [`MAX_SECONDS`].
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => at_most_a_hundred_years(text, secs),
        _ => Err(format!("invalid number of seconds {text:?}: expected a non-negative number such as 2 or 0.5")),
    }
}

/// `secs` when it is at most [`MAX_SECONDS`], else an error naming the bound.
fn at_most_a_hundred_years(text: &str, secs: f64) -> Result<f64, String> {
    if secs <= MAX_SECONDS {
        Ok(secs)
    } else {
        Err(format!("invalid number of seconds {text:?}: at most 100 years ({MAX_SECONDS} s) is accepted"))
    }
}

/// The shortest interval between two refreshes (`stats --watch`).
pub const MIN_INTERVAL: f64 = 0.1;

/// Parses an interval between refreshes: seconds, at least [`MIN_INTERVAL`] (a zero one would redraw without
/// pause).
pub fn parse_interval(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= MIN_INTERVAL => at_most_a_hundred_years(text, secs),
        _ => Err(format!(
            "invalid interval {text:?}: expected a number of seconds of at least {MIN_INTERVAL}, such as 2 or 0.5"
        )),
    }
}

/// Parses a probability between 0 and 1.
pub fn parse_probability(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("invalid probability {text:?}: expected a number from 0 to 1 such as 0.02")),
    }
}

/// Parses an RFC 3339 time (`2026-05-01T12:00:00Z`).
pub fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("invalid time {text:?}: expected RFC 3339 such as 2026-05-01T12:00:00Z"))
}

/// Parses a positive rate per second (`50`, `50/s` or `0.5`).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches("/s").parse::<f64>() {
        Ok(rate) if synctrail::engine::pacing::is_valid_rate(rate) => Ok(rate),
        _ => Err(format!(
            "invalid rate {text:?}: expected a number per second of at least {} such as 50 or 50/s",
            synctrail::engine::pacing::MIN_RATE_PER_SECOND
        )),
    }
}

/// Seconds as a chrono duration (millisecond precision; saturated at chrono's bounds, far beyond [`MAX_SECONDS`]).
pub fn seconds(secs: f64) -> Duration {
    Duration::try_milliseconds((secs * 1000.0).round() as i64).unwrap_or(if secs < 0.0 {
        Duration::MIN
    } else {
        Duration::MAX
    })
}

/// Seconds as a `std::time::Duration`: what the parsers give is at most [`MAX_SECONDS`]; anything longer (or not a
/// number) reads as forever, negative as zero.
pub fn std_seconds(secs: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(std::time::Duration::MAX)
}

/// The time `ago` before `now` (`list --since 2h`), or a usage error naming `flag` when it is beyond what a time can
/// be.
pub fn time_ago(now: DateTime<Utc>, ago: Duration, flag: &str) -> Result<DateTime<Utc>, CliError> {
    now.checked_sub_signed(ago).ok_or_else(|| out_of_range(flag))
}

/// The time `secs` seconds after `now` (`run --destination-down 5`), or a usage error naming `flag`.
pub fn time_after(now: DateTime<Utc>, secs: f64, flag: &str) -> Result<DateTime<Utc>, CliError> {
    now.checked_add_signed(seconds(secs)).ok_or_else(|| out_of_range(flag))
}

fn out_of_range(flag: &str) -> CliError {
    CliError::InvalidArgument(format!(
        "{flag} is too far from now to be a time: pass at most 100 years ({MAX_DAYS}d, or {MAX_SECONDS} seconds)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_positive_numbers_per_second() {
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert_eq!(parse_rate("50/s"), Ok(50.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn parses_single_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::minutes(10)));
        assert_eq!(parse_duration("2h"), Ok(Duration::hours(2)));
        assert_eq!(parse_duration("3d"), Ok(Duration::days(3)));
        assert_eq!(parse_duration("1w"), Ok(Duration::weeks(1)));
    }

    #[test]
    fn parses_combined_units() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_duration(" 1d12h "), Ok(Duration::hours(36)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in ["", "10", "m", "10x", "1.5h", "-3d", "h2", "99999999999999999999d"] {
            assert!(parse_duration(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn durations_and_seconds_beyond_a_hundred_years_are_refused_naming_the_bound() {
        assert_eq!(parse_duration("36525d"), Ok(Duration::days(MAX_DAYS)));
        assert_eq!(parse_duration("5200w"), Ok(Duration::weeks(5200)));
        for text in ["36526d", "20000w", "100000000d", "99999999999999999999d", "36524d2d"] {
            let refused = parse_duration(text).expect_err(text);
            assert!(refused.contains("at most 100 years"), "{text:?}: {refused}");
        }
        assert_eq!(parse_seconds("3155760000"), Ok(MAX_SECONDS));
        for text in ["3155760001", "1e13", "1e20", "1.7e308"] {
            let refused = parse_seconds(text).expect_err(text);
            assert!(refused.contains("at most 100 years"), "{text:?}: {refused}");
            assert!(parse_interval(text).is_err_and(|e| e.contains("at most 100 years")), "{text:?}");
        }
    }

    #[test]
    fn a_watch_interval_is_at_least_a_tenth_of_a_second() {
        assert_eq!(parse_interval("2"), Ok(2.0));
        assert_eq!(parse_interval("0.1"), Ok(0.1));
        for text in ["0", "0.05", "-1", "NaN", "inf", "soon"] {
            assert!(parse_interval(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn seconds_and_probabilities() {
        assert_eq!(parse_seconds("0.5"), Ok(0.5));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert_eq!(parse_probability("0.02"), Ok(0.02));
        assert!(parse_probability("1.5").is_err());
        assert_eq!(seconds(2.5), Duration::milliseconds(2500));
    }
}
