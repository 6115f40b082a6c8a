//! Fault drills: a destination wrapper that fails, goes down, or makes its invocation die mid-write.

use super::{ApplyOutcome, Change, Destination, DestinationError, DestinationRecord, ReadError};
use crate::clock::Clock;
use crate::model::{Direction, EntityKey};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Which faults to inject.
#[derive(Debug, Clone, Default)]
pub struct DrillPlan {
    /// Probability that one apply fails with a retryable error.
    pub fail_rate: f64,
    /// Probability that one apply fails with a permanent error.
    pub permanent_rate: f64,
    /// The destination answers every apply with a retryable error until then.
    pub down_until: Option<DateTime<Utc>>,
}

/// A destination with injected faults. One instance serves one worker, so a crash armed for an invocation
/// hits that invocation only.
pub struct DrillDestination {
    inner: Arc<dyn Destination>,
    clock: Arc<dyn Clock>,
    plan: DrillPlan,
    rng: Mutex<SmallRng>,
    crash_armed: AtomicBool,
    crashed: Notify,
}

impl DrillDestination {
    /// Wraps `inner`; `seed` makes the faults reproducible.
    pub fn new(inner: Arc<dyn Destination>, clock: Arc<dyn Clock>, plan: DrillPlan, seed: u64) -> Self {
        Self {
            inner,
            clock,
            plan,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            crash_armed: AtomicBool::new(false),
            crashed: Notify::new(),
        }
    }

    /// The next apply "kills the invocation": it may or may not write, then never returns, and
    /// [`DrillDestination::crashed`] fires so the caller can drop the invocation without a response.
    pub fn arm_crash(&self) {
        self.crash_armed.store(true, Ordering::SeqCst);
    }

    /// Disarms a crash that did not happen (the invocation applied nothing).
    pub fn disarm_crash(&self) {
        self.crash_armed.store(false, Ordering::SeqCst);
    }

    /// Resolves when an armed crash happened.
    pub async fn crashed(&self) {
        self.crashed.notified().await;
    }

    fn roll(&self) -> f64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).random::<f64>()
    }
}

#[async_trait]
impl Destination for DrillDestination {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        if self.plan.down_until.is_some_and(|until| self.clock.now() < until) {
            return Err(DestinationError::retryable("destination is down (drill)"));
        }
        if self.crash_armed.swap(false, Ordering::SeqCst) {
            if self.roll() < 0.5 {
                // Died after the write landed: the retry must not apply it twice.
                let _ = self.inner.apply(change).await;
            }
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
        let roll = self.roll();
        if roll < self.plan.fail_rate {
            return Err(DestinationError::retryable("injected failure (drill)"));
        }
        if roll < self.plan.fail_rate + self.plan.permanent_rate {
            return Err(DestinationError::Permanent("injected permanent failure (drill)".to_owned()));
        }
        self.inner.apply(change).await
    }

    /// Reads are not drilled: they pass through.
    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        self.inner.read(entity).await
    }

    fn reads_back(&self, direction: Direction) -> bool {
        self.inner.reads_back(direction)
    }
}
