//! The data model of spec §1, §2 and §8: envelopes, ids, statuses, event records and entity heads.

mod canonical;
mod echo;
mod envelope;
mod head;
mod ids;
mod record;
mod rfc3339;
mod status;
mod status_report;
pub(crate) mod unique_keys;

pub use canonical::{canonical_json, content_hash};
pub use echo::{EchoGuard, ExternalWrite, Fingerprint};
pub use envelope::{Direction, Envelope, EnvelopeError, Kind, Message, RedriveReason, REDRIVE_FIELD};
pub use head::{EntityHead, Inflight, Slot, Verdict, Verified};
pub(crate) use ids::check_name;
pub use ids::{ContentHash, EntityKey, EventId, InvalidId, OrderKey, DEFAULT_TENANT};
pub use record::{ByteRange, ErrorInfo, ErrorKind, EventRecord, HistoryApart, HistoryEntry, PayloadRef, HISTORY_LIMIT};
pub use status::{IllegalTransition, Status};
pub use status_report::StatusReport;

/// Whether a counter is zero: such counters are left out of stored JSON (absent reads as zero).
fn is_zero(n: &u32) -> bool {
    *n == 0
}
