//! The sweeper: re-drives events whose entity lease ran out (a crashed holder, a lost promotion message).

use super::{Engine, EngineError, Invocation};
use crate::model::EventId;
use serde::Serialize;

/// What one sweep found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// Heads with an expired lease that were looked at.
    pub examined: usize,
    /// Events a re-drive message was sent for.
    pub redriven: Vec<EventId>,
}

impl Engine {
    /// Finds up to `limit` heads whose in-flight lease expired and re-drives their event when it is not done.
    pub async fn sweep(&self, limit: usize, invocation: &Invocation) -> Result<SweepReport, EngineError> {
        let before = self.now() - self.settings.clock_margin;
        let heads = self.ports.store.expired_leases(before, limit).await?;
        let mut report = SweepReport { examined: heads.len(), redriven: Vec::new() };
        for head in heads {
            let Some(inflight) = head.inflight else { continue };
            let event_id = inflight.slot.event_id;
            match self.ports.store.get_event(&event_id).await? {
                Some(record) if !record.status.is_terminal() => {
                    self.send_redrive(&event_id, invocation).await;
                    report.redriven.push(event_id);
                }
                _ => {
                    tracing::warn!(event_id = %event_id, entity = %head.entity, "expired lease held by a finished event")
                }
            }
        }
        Ok(report)
    }
}
