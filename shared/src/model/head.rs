//! The per-entity head of spec §4: what is applied, what is in flight, what is next.

use super::echo::EchoGuard;
use super::ids::{ContentHash, EntityKey, EventId, OrderKey};
use super::record::EventRecord;
use super::status::Status;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One event as the head sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The event.
    pub event_id: EventId,
    /// Its order key.
    pub order: OrderKey,
    /// Its content hash.
    pub content_hash: ContentHash,
}

/// The event holding the entity, with its lease and fencing token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inflight {
    /// The event.
    #[serde(flatten)]
    pub slot: Slot,
    /// Until when the holder may run unchallenged (for an errored holder: until its retry is due).
    #[serde(with = "super::rfc3339")]
    pub lease_until: DateTime<Utc>,
    /// The fencing token of this claim: destination writes with an older token are refused.
    pub fence: u64,
    /// The holder's last attempt failed and a retry is pending: a newer event may take over (spec §4 rule 3).
    /// Written by failures before 2026-12-06; a failure now writes its record alone, and decisions judge the holder
    /// by it ([`Inflight::holder_errored`]), setting this on the head they decide on.
    #[serde(default)]
    pub errored: bool,
    /// Promoted by a settle (or a finished one) and not claimed yet: the event's re-drive claims it at once. Without
    /// it the head was written by a claim, which holds the entity until its lease ends even before the claim's
    /// record write says `processing` (spec §4 step 2, §9 "The claim in two writes, the head first").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promoted: bool,
    /// The attempt number of the claim that wrote it (0: promoted, or written before heads recorded it). A record
    /// whose attempt is lower still shows an earlier end of the event: this claim's record write has not landed.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub attempt: u32,
    /// The earliest end of an earlier lease of this hold, when it is before `lease_until` (a retry's lease ends
    /// later than its claim's): see [`Inflight::lease_floor`]. Absent while the hold has had one lease.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::rfc3339::option")]
    pub earliest_lease_until: Option<DateTime<Utc>>,
}

impl Inflight {
    /// The earliest end of any lease this event has held the entity under, since it took the head (its claim or
    /// promotion): no lease of the hold ends before it. An index sorted by it finds every expired lease among its
    /// entries at or before a moment, and a retry's later lease leaves the entry where it is (spec §9 "The lease
    /// index sorted by the hold's earliest lease end").
    pub fn lease_floor(&self) -> DateTime<Utc> {
        self.earliest_lease_until.map_or(self.lease_until, |earliest| earliest.min(self.lease_until))
    }

    /// Whether `holder` (this hold's event's record) shows a retry claimed inside this hold: an attempt after the
    /// one this head's claim names. Such a retry writes its record alone and leaves the head as the claim wrote it
    /// (spec §9 "A retry inside its hold writes the record alone"); a head promoted, or written before heads named
    /// their claim's attempt, has none.
    pub fn retried_in_hold(&self, holder: &EventRecord) -> bool {
        self.in_hold(holder) && holder.attempt > self.attempt
    }

    /// Whether the retry of `holder` (this hold's event's record, `errored` in this hold) may claim inside the hold,
    /// writing its record alone.
    pub fn may_retry_in_hold(&self, holder: &EventRecord) -> bool {
        self.claimed() && self.holder_errored(holder)
    }

    /// Written by a claim that names its attempt (not a promotion, not a head written before heads named it): the
    /// only kind of hold a retry may claim inside.
    pub fn claimed(&self) -> bool {
        self.attempt > 0 && !self.promoted
    }

    /// Whether `holder` is this hold's record: of this claim's attempt or a later one (a record of an earlier attempt
    /// is a later claim of the event between its two writes).
    fn in_hold(&self, holder: &EventRecord) -> bool {
        self.claimed() && holder.event_id == self.slot.event_id && holder.attempt >= self.attempt
    }

    /// Whether `holder`'s last attempt in this hold failed and awaits its retry: its record is `errored` in this hold
    /// (spec §9 "A failure writes the record alone"), or the head is flagged (as failures wrote before 2026-12-06)
    /// and no retry runs inside the hold since.
    pub fn holder_errored(&self, holder: &EventRecord) -> bool {
        let retry_runs = self.retried_in_hold(holder) && holder.status == Status::Processing;
        let flagged = self.errored && holder.event_id == self.slot.event_id && !retry_runs;
        (self.in_hold(holder) && holder.status == Status::Errored) || flagged
    }

    /// Until when this hold lasts, given its event's record: the head's lease, or a later one on the record — a retry
    /// claimed inside the hold runs under its own, and a failure whose retry is due after the head's lease ends
    /// carries one past the retry's due time (spec §9 "A failure writes the record alone").
    pub fn hold_until(&self, holder: Option<&EventRecord>) -> DateTime<Utc> {
        let holds = |r: &&EventRecord| self.in_hold(r) && matches!(r.status, Status::Processing | Status::Errored);
        let record_lease = holder.filter(holds).and_then(|r| r.lease_until);
        record_lease.map_or(self.lease_until, |lease| lease.max(self.lease_until))
    }

    /// Moves the lease to end at `until`, keeping the earliest end the hold had.
    pub fn move_lease(&mut self, until: DateTime<Utc>) {
        let floor = self.lease_floor().min(until);
        self.lease_until = until;
        self.earliest_lease_until = (floor < until).then_some(floor);
    }
}

/// What a verification of an entity found (spec §7: its events replayed, compared with the destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The destination holds what the replay gives.
    Equal,
    /// It does not; the difference was reported.
    Differs,
    /// It did not; the newest event was re-driven, forced, to put it back.
    Repaired,
    /// It could not be told (the detail says why: the destination can't read, a local edit, an unusable payload).
    Unverified,
}

/// A verification recorded on the head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// When.
    #[serde(with = "super::rfc3339")]
    pub at: DateTime<Utc>,
    /// What it found.
    pub verdict: Verdict,
    /// The differing fields, or the event re-driven, in a few words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Verified {
    /// The most of a detail a head keeps, in characters: every event of the entity rewrites its head, which stays
    /// within one DynamoDB write unit only if what it carries is small (the sweeper's log line and report keep the
    /// detail whole).
    pub const DETAIL_CHARS: usize = 240;

    /// A verification at `at` that found `verdict`, its `detail` cut to [`Verified::DETAIL_CHARS`] characters
    /// (ending with `…` when cut).
    pub fn new(at: DateTime<Utc>, verdict: Verdict, detail: Option<&str>) -> Self {
        let detail = detail.map(|text| match text.char_indices().nth(Self::DETAIL_CHARS - 1) {
            Some((cut, _)) if text.chars().count() > Self::DETAIL_CHARS => format!("{}…", &text[..cut]),
            _ => text.to_owned(),
        });
        Self { at, verdict, detail }
    }
}

/// The ordering state of one entity; every change is a compare-and-set on `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityHead {
    /// The entity.
    pub entity: EntityKey,
    /// The last applied event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Slot>,
    /// The event holding the entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inflight: Option<Inflight>,
    /// `latest_wins`: the one event waiting behind `inflight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Slot>,
    /// `in_order`: the events waiting behind `inflight`, in order-key order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backlog: Vec<Slot>,
    /// `in_order`: events recorded `queued` that did not fit in the backlog; promotion fetches them from the
    /// store in order-key order once the backlog is empty.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub parked: u32,
    /// The last fencing token handed out.
    pub fence: u64,
    /// `in_order`: an event arrived older than the applied one; verification should look at this entity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_verification: bool,
    /// Events of other entities wait for this one to exist (spec §6): the next completion here re-drives them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_waiters: bool,
    /// The last write an outbound event made to the external resource, to recognise its echo (spec §10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<EchoGuard>,
    /// The sweeper's last verification of the entity (spec §7), when it verified one flagged `needs_verification`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
    /// When the head last changed.
    #[serde(with = "super::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Compare-and-set version (0 = not stored yet).
    pub version: u64,
}

impl EntityHead {
    /// The head of an entity nothing has happened to yet.
    pub fn empty(entity: EntityKey, now: DateTime<Utc>) -> Self {
        Self {
            entity,
            applied: None,
            inflight: None,
            next: None,
            backlog: Vec::new(),
            parked: 0,
            fence: 0,
            needs_verification: false,
            has_waiters: false,
            echo: None,
            verified: None,
            updated_at: now,
            version: 0,
        }
    }

    /// Whether `event_id` is queued here (as `next` or in the backlog).
    pub fn is_queued(&self, event_id: &EventId) -> bool {
        self.next.as_ref().is_some_and(|n| &n.event_id == event_id)
            || self.backlog.iter().any(|s| &s.event_id == event_id)
    }

    /// Whether nothing holds the entity and nothing waits for it here: no event in flight, none queued or parked.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_none() && self.next.is_none() && self.backlog.is_empty() && self.parked == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::{ContentHash, EventId, OrderKey};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a time")
    }

    fn held_until(seconds: i64) -> Inflight {
        let slot = Slot {
            event_id: EventId::parse("ev-1").expect("an id"),
            order: OrderKey { nanos: 0, version: 0 },
            content_hash: ContentHash::of(b"x"),
        };
        let lease_until = at(seconds);
        Inflight {
            slot,
            lease_until,
            fence: 1,
            errored: false,
            promoted: false,
            attempt: 1,
            earliest_lease_until: None,
        }
    }

    #[test]
    fn a_verifications_detail_is_kept_on_the_head_up_to_its_limit_and_cut_with_an_ellipsis_past_it() {
        let limit = Verified::DETAIL_CHARS;
        let fits = "é".repeat(limit);
        assert_eq!(Verified::new(at(0), Verdict::Differs, Some(&fits)).detail.as_deref(), Some(fits.as_str()));
        let long = format!("{fits}and more");
        let cut = Verified::new(at(0), Verdict::Differs, Some(&long)).detail.expect("a detail");
        assert_eq!(cut.chars().count(), limit, "{cut}");
        assert_eq!(cut, format!("{}…", "é".repeat(limit - 1)), "cut on a character, not a byte");
        assert_eq!(Verified::new(at(0), Verdict::Equal, None).detail, None);
    }

    #[test]
    fn a_lease_moved_later_keeps_the_holds_earliest_end_and_one_moved_earlier_lowers_it() {
        let mut inflight = held_until(10);
        assert_eq!(inflight.lease_floor(), at(10), "one lease: its end");
        inflight.move_lease(at(100));
        assert_eq!((inflight.lease_until, inflight.lease_floor()), (at(100), at(10)));
        inflight.move_lease(at(200));
        assert_eq!(inflight.lease_floor(), at(10), "still the first end");
        inflight.move_lease(at(5));
        assert_eq!((inflight.lease_floor(), inflight.earliest_lease_until), (at(5), None), "never after the lease");
    }

    /// The record of `ev-1` at `attempt`, in `status`, with `lease` (seconds) on it if any.
    fn holder(status: &str, attempt: u32, lease: Option<i64>) -> EventRecord {
        let mut json = serde_json::json!({
            "event_id": "ev-1",
            "payload": {"key": "payloads/ev-1.zst", "sha256": "00", "size": 2},
            "status": status, "attempt": attempt,
            "received_at": at(0), "updated_at": at(0), "expires_at": at(1_000), "history": [], "version": 3
        });
        if let Some(seconds) = lease {
            json["lease_until"] = serde_json::to_value(at(seconds)).expect("a time");
        }
        serde_json::from_value(json).expect("a record")
    }

    #[test]
    fn a_hold_lasts_until_the_lease_a_retry_claimed_inside_it_wrote_on_its_record() {
        let claim = held_until(10);
        // The claim's own record (attempt 1): the head's lease, whatever the record says.
        assert_eq!(claim.hold_until(Some(&holder("processing", 1, Some(10)))), at(10));
        assert!(!claim.retried_in_hold(&holder("processing", 1, Some(10))));
        // A retry claimed inside the hold (attempt 2), running or failed again: its record's later lease.
        for status in ["processing", "errored"] {
            assert_eq!(claim.hold_until(Some(&holder(status, 2, Some(40)))), at(40), "{status}");
        }
        assert_eq!(claim.hold_until(Some(&holder("processing", 2, Some(5)))), at(10), "never before the head's");
        // A failure of the claim's own attempt whose retry is due after the head's lease: the lease past it.
        assert_eq!(claim.hold_until(Some(&holder("errored", 1, Some(40)))), at(40));
        // Done, or an earlier attempt (a newer claim between its two writes): the head's lease.
        assert_eq!(claim.hold_until(Some(&holder("completed", 2, Some(40)))), at(10));
        assert_eq!(claim.hold_until(Some(&holder("errored", 0, Some(40)))), at(10));
        assert_eq!(claim.hold_until(None), at(10));
        // A promotion, or a head written before heads named their claim's attempt, has no retry inside it.
        let promoted = Inflight { promoted: true, attempt: 0, ..held_until(10) };
        assert_eq!(promoted.hold_until(Some(&holder("processing", 2, Some(40)))), at(10));
    }

    #[test]
    fn a_holder_is_errored_by_its_head_or_by_its_record_in_this_hold_and_only_then_retries_inside_it() {
        let claim = held_until(10);
        assert!(
            claim.holder_errored(&holder("errored", 1, None)) && claim.may_retry_in_hold(&holder("errored", 1, None))
        );
        assert!(claim.holder_errored(&holder("errored", 3, Some(40))), "a retry inside the hold failed again");
        assert!(!claim.holder_errored(&holder("errored", 0, None)), "a newer claim between its two writes");
        assert!(!claim.holder_errored(&holder("processing", 2, Some(40))), "a retry runs");
        // A head flagged by a failure written before 2026-12-06: errored until a retry runs inside the hold.
        let flagged = Inflight { errored: true, ..held_until(10) };
        assert!(
            flagged.holder_errored(&holder("errored", 1, None))
                && flagged.may_retry_in_hold(&holder("errored", 1, None))
        );
        assert!(!flagged.holder_errored(&holder("processing", 2, Some(40))), "its retry runs");
        assert!(flagged.holder_errored(&holder("errored", 2, Some(40))), "its retry failed too");
        let promoted = Inflight { promoted: true, attempt: 0, ..held_until(10) };
        assert!(!promoted.may_retry_in_hold(&holder("errored", 1, None)), "a promotion is claimed head first");
        let other = EventRecord { event_id: EventId::parse("ev-2").expect("an id"), ..holder("errored", 1, None) };
        assert!(!flagged.may_retry_in_hold(&other), "another event's record is no retry of this hold");
    }

    #[test]
    fn a_hold_with_one_lease_serializes_no_earliest_end_and_old_heads_read_without_one() {
        let inflight = held_until(10);
        let json = serde_json::to_value(&inflight).expect("serialize");
        assert!(json.get("earliest_lease_until").is_none(), "{json}");
        let back: Inflight = serde_json::from_value(json).expect("read back");
        assert_eq!(back, inflight);
    }

    #[test]
    fn an_idle_head_is_stored_as_its_entity_fence_and_times_only() {
        let entity = EntityKey::new("default", "github", "issue", "widgets#1").expect("a key");
        let head = EntityHead::empty(entity, at(0));
        let json = serde_json::to_value(&head).expect("serialize");
        let fields: Vec<&str> = json.as_object().expect("an object").keys().map(String::as_str).collect();
        assert_eq!(fields, ["entity", "fence", "updated_at", "version"], "{json}");
        let back: EntityHead = serde_json::from_value(json).expect("read back");
        assert_eq!(back, head);
    }
}
