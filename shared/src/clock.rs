//! The clock port: every decision that depends on time asks a [`Clock`], and every pause waits on one, so tests can
//! simulate time.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;

/// Where the engine and the adapters read the current time from, and how they pause.
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current UTC time.
    fn now(&self) -> DateTime<Utc>;

    /// Lets `by` pass before going on (the engine's pause between two compare-and-set rounds that lost a race).
    async fn pause(&self, by: std::time::Duration) {
        tokio::time::sleep(by).await;
    }
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to: for simulations and tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { now: Mutex::new(start) }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Time moves only when told to: a pause lets the other tasks run once instead of waiting, so a simulation
    /// stays reproducible and fast.
    async fn pause(&self, _by: std::time::Duration) {
        tokio::task::yield_now().await;
    }
}
