//! The pace of a bulk send (`rate`, messages per second): re-drives by query and reconcile's corrections.

use std::time::Duration;

/// The slowest pace a bulk send may be asked for: one message in about 17 minutes.
pub const MIN_RATE_PER_SECOND: f64 = 0.001;

/// Whether `rate` (messages per second) is a pace a bulk send can keep: a finite number of at least
/// [`MIN_RATE_PER_SECOND`].
pub fn is_valid_rate(rate: f64) -> bool {
    rate.is_finite() && rate >= MIN_RATE_PER_SECOND
}

/// How long sending `count` messages at `rate` per second takes; a rate under the minimum (or not a number) counts
/// as the minimum, so the time is always one a timer can wait.
pub fn time_to_send(count: usize, rate: f64) -> Duration {
    Duration::from_secs_f64(count as f64 / rate.max(MIN_RATE_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_is_a_finite_rate_of_at_least_the_minimum_and_every_rate_gives_a_time_a_timer_can_wait() {
        assert!(is_valid_rate(50.0) && is_valid_rate(MIN_RATE_PER_SECOND));
        for rate in [0.0, -1.0, 1e-300, f64::NAN, f64::INFINITY] {
            assert!(!is_valid_rate(rate), "{rate}");
        }
        assert_eq!(time_to_send(10, 50.0), Duration::from_millis(200));
        for rate in [1e-300, 0.0, f64::NAN] {
            assert_eq!(time_to_send(1, rate), Duration::from_secs(1000), "{rate} counts as the minimum");
        }
    }
}
