//! [`ByDirection`]: one processor serving both directions — inbound changes to the team's destination (the mirror,
//! HTTP, its own), outbound ones to a connector that writes them into the external system.

use super::{ApplyOutcome, Change, Destination, DestinationError, DestinationRecord, ReadError};
use crate::model::{Direction, EntityKey};
use async_trait::async_trait;
use std::sync::Arc;

/// Sends each change to the destination of its [`Change::direction`].
pub struct ByDirection {
    inbound: Arc<dyn Destination>,
    outbound: Arc<dyn Destination>,
}

impl ByDirection {
    /// `inbound` changes to `inbound`, `outbound` ones to `outbound`.
    pub fn new(inbound: Arc<dyn Destination>, outbound: Arc<dyn Destination>) -> Self {
        Self { inbound, outbound }
    }
}

#[async_trait]
impl Destination for ByDirection {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        match change.direction {
            Direction::Inbound => self.inbound.apply(change).await,
            Direction::Outbound => self.outbound.apply(change).await,
        }
    }

    /// Our side of the entity: what the inbound destination holds (reconcile and verify compare with it).
    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        self.inbound.read(entity).await
    }

    /// Only inbound changes are applied where `read` reads; outbound ones went to the external system.
    fn reads_back(&self, direction: Direction) -> bool {
        direction == Direction::Inbound
    }
}
