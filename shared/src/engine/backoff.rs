//! Retry delays: exponential with jitter.

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
}
