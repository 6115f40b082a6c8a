//! Retry delays: exponential with jitter; and the pauses between compare-and-set rounds that lost a race.

use super::Engine;
use chrono::Duration;
use rand::Rng;

impl Engine {
    /// The delay before retry number `attempt` (1-based): `base × 2^(attempt-1)` capped at `max`, then a random
    /// point in its upper half, so retries of many events spread out.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self.settings.backoff_base.num_milliseconds().max(1);
        let cap = self.settings.backoff_max.num_milliseconds().max(base);
        let exp = attempt.saturating_sub(1).min(30);
        let full = base.saturating_mul(1i64 << exp).min(cap);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        Duration::milliseconds(rng.random_range(full / 2..=full))
    }

    /// The pause before compare-and-set round `round` (1: the first after a lost race) of one decision: see
    /// [`contention_pause`].
    pub(crate) fn contention_pause(&self, round: u32) -> std::time::Duration {
        contention_pause(&mut *self.rng.lock().unwrap_or_else(|p| p.into_inner()), round)
    }
}

/// The ceiling of the first pause after a lost compare-and-set race (doubled each further round).
const CONTENTION_PAUSE_BASE: std::time::Duration = std::time::Duration::from_millis(1);
/// The longest pause between two compare-and-set rounds.
const CONTENTION_PAUSE_MAX: std::time::Duration = std::time::Duration::from_millis(128);

/// A random point in `0..=min(CONTENTION_PAUSE_MAX, CONTENTION_PAUSE_BASE × 2^(round-1))` ("full jitter"). Writers
/// that collided on one head would otherwise read it again at once and collide again in step: on a hot entity every
/// round but one was a wasted read and a failed conditional write (billed on DynamoDB), and some deliveries ran out
/// of rounds.
fn contention_pause(rng: &mut impl Rng, round: u32) -> std::time::Duration {
    let ceiling = pause_ceiling(round);
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    std::time::Duration::from_micros(rng.random_range(0..=micros))
}

fn pause_ceiling(round: u32) -> std::time::Duration {
    CONTENTION_PAUSE_BASE.saturating_mul(1 << round.saturating_sub(1).min(16)).min(CONTENTION_PAUSE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn pauses_after_lost_races_are_random_and_grow_with_the_round_up_to_their_ceiling() {
        let mut rng = SmallRng::seed_from_u64(3);
        assert_eq!(pause_ceiling(1), std::time::Duration::from_millis(1));
        assert_eq!(pause_ceiling(3), std::time::Duration::from_millis(4));
        assert_eq!(pause_ceiling(8), CONTENTION_PAUSE_MAX);
        assert_eq!(pause_ceiling(u32::MAX), CONTENTION_PAUSE_MAX);
        for round in 1..40 {
            let pauses: Vec<_> = (0..50).map(|_| contention_pause(&mut rng, round)).collect();
            assert!(pauses.iter().all(|p| *p <= pause_ceiling(round)), "round {round}: {pauses:?}");
            assert!(pauses.iter().any(|p| *p != pauses[0]), "round {round}: the pauses are all alike: {pauses:?}");
        }
    }
}
