//! `Pace`: how a connector keeps to its API's rate limits between requests. An answer that says to slow down
//! (a limit used up until a reset, a `Retry-After`, a nearly full bucket) pauses every later request of the
//! process until a time; a request due in a short pause waits it out, one due in a longer pause is not sent and
//! its change goes back to the queue as throttled, with the time left as its delay.

use crate::clock::Clock;
use crate::destination::http::transport::Budget;
use crate::destination::DestinationError;
use chrono::{DateTime, SecondsFormat, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest pause a request waits out in place; longer ones send the change back to the queue.
pub const INLINE_WAIT: Duration = Duration::from_secs(2);

/// The pause in force, shared by every request of one connector.
pub(super) struct Pace {
    clock: Arc<dyn Clock>,
    pause: Mutex<Option<Pause>>,
}

#[derive(Debug, Clone)]
struct Pause {
    until: DateTime<Utc>,
    why: String,
}

impl Pace {
    /// No pause, on `clock`.
    pub(super) fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, pause: Mutex::new(None) }
    }

    /// Now, on the connector's clock.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Pauses requests for `delay` from now because `why`; a pause already in force that ends later stays.
    pub(super) fn pause_for(&self, delay: Duration, why: String) {
        let until = self.now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        self.pause_until(until, why);
    }

    /// Pauses requests until `until` because `why`; a pause already in force that ends later stays.
    pub(super) fn pause_until(&self, until: DateTime<Utc>, why: String) {
        let mut pause = self.pause.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if pause.as_ref().is_none_or(|p| p.until < until) {
            tracing::info!(until = %until, why = %why, "rate limit: pausing requests");
            *pause = Some(Pause { until, why });
        }
    }

    /// Lets a request go: at once when no pause is in force; after waiting when the pause ends within
    /// [`INLINE_WAIT`] and within `budget`; otherwise not at all — a throttled error whose delay is the time left.
    pub(super) async fn ready(&self, budget: &Budget) -> Result<(), DestinationError> {
        let pause = self.pause.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let Some(pause) = pause else {
            return Ok(());
        };
        let Ok(left) = (pause.until - self.now()).to_std() else {
            return Ok(());
        };
        if left.is_zero() {
            return Ok(());
        }
        if left <= INLINE_WAIT && left < budget.left() {
            tokio::time::sleep(left).await;
            return Ok(());
        }
        let until = pause.until.to_rfc3339_opts(SecondsFormat::Secs, true);
        Err(DestinationError::throttled(format!("not sent: {} (paused until {until})", pause.why), Some(left)))
    }
}
