//! One event's status as readers see it: the CLI's `status --json`, the status function's HTTP response.

use super::echo::ExternalWrite;
use super::ids::EventId;
use super::record::{ErrorInfo, EventRecord};
use super::status::Status;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One event's status, its pointer, attempts, last error and times (field names as in spec §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The event.
    pub event_id: EventId,
    /// Its status.
    pub status: Status,
    /// Whether the status is terminal.
    pub terminal: bool,
    /// The event or record its status points at (dropped_for, duplicate_of, canceled_by, waiting_for, conflicts_with).
    pub pointer: Option<String>,
    /// `dropped`: the newer event or record.
    pub dropped_for: Option<String>,
    /// `duplicate`: the original.
    pub duplicate_of: Option<EventId>,
    /// `canceled`: the newer event.
    pub canceled_by: Option<EventId>,
    /// `waiting`: the dependency.
    pub waiting_for: Option<String>,
    /// `rejected` resubmission: the event whose id it reused.
    pub conflicts_with: Option<EventId>,
    /// Attempts so far.
    pub attempt: u32,
    /// The error of the current status (`errored`, `failed`, `rejected`); none for any other status.
    pub error: Option<ErrorInfo>,
    /// When it was applied.
    pub completed_at: Option<DateTime<Utc>>,
    /// An outbound event: what its connector wrote (for a create, the external id the system gave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<ExternalWrite>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&EventRecord> for StatusReport {
    fn from(r: &EventRecord) -> Self {
        Self {
            event_id: r.event_id.clone(),
            status: r.status,
            terminal: r.status.is_terminal(),
            pointer: r.pointer(),
            dropped_for: r.dropped_for.clone(),
            duplicate_of: r.duplicate_of.clone(),
            canceled_by: r.canceled_by.clone(),
            waiting_for: r.waiting_for.clone(),
            conflicts_with: r.conflicts_with.clone(),
            attempt: r.attempt,
            error: r.error.clone(),
            completed_at: r.completed_at,
            written: r.written.clone(),
            updated_at: r.updated_at,
        }
    }
}
