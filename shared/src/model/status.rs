//! Statuses and the one transition table every status change is checked against (spec §2).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Metadata written, payload archived, no decision yet.
    Received,
    /// Waiting behind the in-flight event of its entity.
    Queued,
    /// Holds the entity's lease; the handler runs.
    Processing,
    /// The last attempt failed with a retryable error; the queue redelivers it.
    Errored,
    /// Parked until a missing dependency exists.
    Waiting,
    /// Applied.
    Completed,
    /// Permanent error, or attempts exhausted.
    Failed,
    /// Stale: something newer was applied, in flight or queued.
    Dropped,
    /// The same change already exists.
    Duplicate,
    /// Superseded by a newer event of its entity while queued or errored.
    Canceled,
    /// Its source or tenant is disabled.
    Disabled,
    /// Invalid input; never applied.
    Rejected,
}

impl Status {
    /// Every status, in the spec's order.
    pub const ALL: [Status; 12] = [
        Status::Received,
        Status::Queued,
        Status::Processing,
        Status::Errored,
        Status::Waiting,
        Status::Completed,
        Status::Failed,
        Status::Dropped,
        Status::Duplicate,
        Status::Canceled,
        Status::Disabled,
        Status::Rejected,
    ];

    /// Whether the event is done (it leaves a terminal status only through an explicit reprocess).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Received | Status::Queued | Status::Processing | Status::Errored | Status::Waiting)
    }

    /// Whether an event in this status holds no entity: done, or `waiting` (its settle released the head). A head
    /// that still names such an event in flight is a settle cut short between its two writes (spec §4 "Crashes").
    pub fn releases_entity(self) -> bool {
        self.is_terminal() || self == Status::Waiting
    }

    /// Whether a record in this status carries an `error` (spec §2: the pointer field of `errored`, `failed` and
    /// `rejected`). Entering any other status clears it: the error described an attempt that is over, and the
    /// history keeps its note.
    pub fn carries_error(self) -> bool {
        matches!(self, Status::Errored | Status::Failed | Status::Rejected)
    }

    /// The name used in JSON, the CLI and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Errored => "errored",
            Status::Waiting => "waiting",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Dropped => "dropped",
            Status::Duplicate => "duplicate",
            Status::Canceled => "canceled",
            Status::Disabled => "disabled",
            Status::Rejected => "rejected",
        }
    }

    /// Whether the table allows `self → to`.
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        match self {
            // received → canceled: a copy recorded it while a claim cut short held its entity, and a newer event
            // took the entity over once that lease ended (spec §4 rule 3).
            Received => {
                matches!(to, Queued | Processing | Canceled | Dropped | Duplicate | Disabled | Rejected | Failed)
            }
            Queued => matches!(to, Processing | Canceled | Dropped | Duplicate | Failed),
            // processing → processing: the same event re-claimed after a crash (attempt + 1).
            Processing => matches!(to, Processing | Completed | Errored | Failed | Dropped | Canceled | Waiting),
            // An errored event keeps its entity until its retry; one whose head moved on while it ran (a claim whose
            // record write landed after its lease, spec §9) is judged again like a new arrival.
            Errored => matches!(to, Processing | Queued | Canceled | Dropped | Duplicate | Failed),
            // Re-driven once its dependency exists: judged again like a new arrival.
            Waiting => matches!(to, Processing | Queued | Canceled | Dropped | Duplicate | Failed),
            // Terminal statuses leave only through a reprocess, which starts over at `received`.
            Completed | Failed | Dropped | Duplicate | Canceled | Disabled => to == Received,
            Rejected => false,
        }
    }

    /// Checks `self → to` against the table.
    pub fn check(self, to: Status) -> Result<(), IllegalTransition> {
        if self.can_become(to) {
            Ok(())
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }
}

/// A status change the table does not allow: a bug, never silently applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "illegal status transition {from} → {to}; this is a bug in synctrail, please report it with the event's history"
)]
pub struct IllegalTransition {
    /// The status the event has.
    pub from: Status,
    /// The status it was about to get.
    pub to: Status,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Status::ALL.iter().map(|st| st.as_str()).collect();
            format!("unknown status {s:?}; expected one of {}", names.join(", "))
        })
    }
}
