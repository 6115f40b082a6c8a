//! [`RequestCounter`]: an SDK interceptor counting every request attempt by service and operation.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Request attempts (retries included) per (service, operation), e.g. `("DynamoDB", "PutItem")`.
///
/// Registered on every client that [`super::Clients`] builds; clones share one count.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

impl RequestCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Attempts of one operation so far.
    pub fn get(&self, service: &str, operation: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.get(&(service.to_owned(), operation.to_owned())).copied().unwrap_or(0)
    }

    /// Attempts of every operation so far.
    pub fn total(&self) -> u64 {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().sum()
    }

    /// Sets every count back to zero.
    pub fn reset(&self) {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    /// Counts one attempt of `operation` (requests the SDK's pipeline does not send: `direct`).
    pub(crate) fn add(&self, service: &str, operation: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry((service.to_owned(), operation.to_owned())).or_insert(0) += 1;
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "synctrail.RequestCounter"
    }

    /// Called once per attempt: the operation's [`Metadata`] sits in the config bag.
    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        match cfg.load::<Metadata>() {
            Some(metadata) => self.add(metadata.service(), metadata.name()),
            None => self.add("unknown", "unknown"),
        }
        Ok(())
    }
}
