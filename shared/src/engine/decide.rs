//! The ordering decision of spec §4 (`latest_wins`) and §5 (`in_order`), and the echo of an outbound write
//! (§10), as a pure function of the entity's head and the arriving event. Writing the decision down is the
//! engine's job; this file only decides.

use crate::model::{ContentHash, Direction, EchoGuard, EntityHead, EventId, Inflight, OrderKey, Slot, Status};
use crate::settings::Policy;
use chrono::{DateTime, Duration, Utc};

/// The arriving event, as the protocol sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its id.
    pub event_id: EventId,
    /// Its order key.
    pub order: OrderKey,
    /// Its content hash.
    pub content_hash: ContentHash,
    /// Its stored status (`received` when new).
    pub status: Status,
    /// Parked outside its entity's full backlog (`queued`, not in the head; spec §5).
    pub parked: bool,
    /// `inbound` or `outbound`.
    pub direction: Direction,
    /// Its payload shows the fingerprint of the head's echo guard: the fields the last outbound write set hold what
    /// it wrote (false when the head has no guard).
    pub shows_echo: bool,
}

impl Candidate {
    /// The head's view of the event.
    pub fn slot(&self) -> Slot {
        Slot { event_id: self.event_id.clone(), order: self.order, content_hash: self.content_hash }
    }
}

/// How the arriving event compares with a recorded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Equal order keys and content: the same change.
    Same,
    /// A smaller order key: stale.
    Older,
    /// A greater order key, or an equal one with other content (`tie`).
    Newer {
        /// Equal order key, different content.
        tie: bool,
    },
}

/// Compares `event` with a recorded `slot` (spec §4: E = X, E < X, E > X).
pub fn compare(event: &Candidate, slot: &Slot) -> Comparison {
    match event.order.cmp(&slot.order) {
        std::cmp::Ordering::Less => Comparison::Older,
        std::cmp::Ordering::Greater => Comparison::Newer { tie: false },
        std::cmp::Ordering::Equal if event.content_hash == slot.content_hash => Comparison::Same,
        std::cmp::Ordering::Equal => Comparison::Newer { tie: true },
    }
}

/// What happens to the arriving event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The same change is already recorded: `duplicate`, `duplicate_of = of`.
    Duplicate {
        /// The original.
        of: EventId,
    },
    /// Something newer is applied, in flight or queued: `dropped`, `dropped_for = newer`.
    Dropped {
        /// The newer event.
        newer: EventId,
    },
    /// Take the entity: `processing`; the listed events become `canceled` by this one.
    Claim {
        /// It ties with a recorded event.
        tie: bool,
        /// `in_order`: it is older than the applied event.
        out_of_order: bool,
        /// Superseded events to cancel (an expired or errored in-flight one, a queued one).
        cancel: Vec<EventId>,
    },
    /// Wait behind the in-flight event: `queued`; `cancel` is the superseded `next`.
    Enqueue {
        /// It ties with a recorded event.
        tie: bool,
        /// The `next` it supersedes.
        cancel: Option<EventId>,
    },
    /// It is already queued behind a live claim: nothing to do.
    AlreadyQueued,
    /// `in_order`, backlog full: recorded `queued` outside the head, fetched from the store when its turn comes.
    Park,
    /// It cannot be decided now (its own claim is live elsewhere, or the backlog is full): retry at `until`.
    Busy {
        /// When to look again.
        until: DateTime<Utc>,
    },
}

/// The moment in time and the settings a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct DecisionContext {
    /// Now.
    pub now: DateTime<Utc>,
    /// Added to other writers' leases before they count as expired.
    pub clock_margin: Duration,
    /// The entity type's policy.
    pub policy: Policy,
    /// `in_order`: how many events the backlog may hold.
    pub max_backlog: usize,
}

impl DecisionContext {
    fn is_live(&self, inflight: &Inflight) -> bool {
        !inflight.errored && self.now <= inflight.lease_until + self.clock_margin
    }
}

/// Decides the fate of `event` given its entity's `head` (spec §4 rules 1–4, §5, §10).
pub fn decide(head: &EntityHead, event: &Candidate, ctx: &DecisionContext) -> Decision {
    let holds = head.inflight.as_ref().filter(|i| i.slot.event_id == event.event_id);
    // An event that claimed its entity goes on as itself: an echo guard set while its attempt ran (our create's settle
    // guards the created resource's head, held or not) judges only a holder promoted from `next` (spec §10.3).
    if let Some(inflight) = holds.filter(|i| claimed(i, event)) {
        return reenter(inflight, event, ctx);
    }
    if let Some(decision) = against_echo(head, event, ctx) {
        return decision;
    }
    if let Some(inflight) = holds {
        return reenter(inflight, event, ctx);
    }
    match ctx.policy {
        Policy::LatestWins => latest_wins(head, event, ctx),
        Policy::InOrder => in_order(head, event, ctx),
    }
}

/// The event already holds the head: while a claim's lease is live, another delivery waits (also when the claim's
/// record write has not landed: the claim writes the head first, spec §9 "The claim in two writes, the head
/// first"); a crashed or errored holder, or a promoted one, claims again (same event, attempt + 1).
fn reenter(inflight: &Inflight, event: &Candidate, ctx: &DecisionContext) -> Decision {
    if claimed(inflight, event) && ctx.is_live(inflight) {
        Decision::Busy { until: inflight.lease_until + ctx.clock_margin }
    } else {
        Decision::Claim { tie: false, out_of_order: false, cancel: Vec::new() }
    }
}

/// Whether the holder `inflight`, which is `event`, claimed its entity (an attempt ran or runs) rather than being
/// promoted from `next` and not started yet.
fn claimed(inflight: &Inflight, event: &Candidate) -> bool {
    event.status == Status::Processing || !inflight.promoted
}

/// The guard against which an inbound `latest_wins` event is judged first (spec §10), if any.
fn echo_guard<'h>(head: &'h EntityHead, event: &Candidate, ctx: &DecisionContext) -> Option<&'h EchoGuard> {
    let judged = event.direction == Direction::Inbound && ctx.policy == Policy::LatestWins;
    head.echo.as_ref().filter(|_| judged)
}

/// Spec §10: an inbound event with the guard's order key that shows its fingerprint is the outbound write's echo
/// (`duplicate` of the outbound event) — so is one of the guard's time with a lower version that shows it: the
/// create webhook (`version: -1`) of a resource our write created; one with an older order key is stale (`dropped`
/// for it). Judged before anything else, also when the event was promoted to hold its entity while the outbound
/// write was in flight.
fn against_echo(head: &EntityHead, event: &Candidate, ctx: &DecisionContext) -> Option<Decision> {
    let guard = echo_guard(head, event, ctx)?;
    let at_its_time = event.order.nanos == guard.order.nanos;
    match event.order.cmp(&guard.order) {
        std::cmp::Ordering::Less | std::cmp::Ordering::Equal if at_its_time && event.shows_echo => {
            Some(Decision::Duplicate { of: guard.event_id.clone() })
        }
        std::cmp::Ordering::Less => Some(Decision::Dropped { newer: guard.event_id.clone() }),
        _ => None,
    }
}

fn against(slot: &Slot, comparison: Comparison) -> Option<Decision> {
    match comparison {
        Comparison::Same => Some(Decision::Duplicate { of: slot.event_id.clone() }),
        Comparison::Older => Some(Decision::Dropped { newer: slot.event_id.clone() }),
        Comparison::Newer { .. } => None,
    }
}

fn latest_wins(head: &EntityHead, event: &Candidate, ctx: &DecisionContext) -> Decision {
    let mut tie = echo_guard(head, event, ctx).is_some_and(|g| g.order == event.order);
    let inflight = head.inflight.as_ref();
    let is_next = head.next.as_ref().is_some_and(|n| n.event_id == event.event_id);
    // Promoted by the sweeper or a lost race: it was `next` and the holder is gone.
    if is_next {
        return match inflight {
            Some(i) if ctx.is_live(i) => Decision::AlreadyQueued,
            Some(i) => Decision::Claim { tie: false, out_of_order: false, cancel: vec![i.slot.event_id.clone()] },
            None => Decision::Claim { tie: false, out_of_order: false, cancel: Vec::new() },
        };
    }
    // Rule 1: against the applied event (unless it is this very event, re-driven on purpose). An outbound event
    // applied with an echo guard was judged as the guard, in the external system's own order (spec §10).
    let judged_as_echo = echo_guard(head, event, ctx).map(|g| &g.event_id);
    let applied = head.applied.as_ref().filter(|a| a.event_id != event.event_id && Some(&a.event_id) != judged_as_echo);
    if let Some(applied) = applied {
        let c = compare(event, applied);
        if let Some(d) = against(applied, c) {
            return d;
        }
        tie |= c == Comparison::Newer { tie: true };
    }
    // Rules 2 and 3: against the in-flight event, then against `next`.
    let mut cancel = Vec::new();
    if let Some(i) = inflight {
        let c = compare(event, &i.slot);
        if let Some(d) = against(&i.slot, c) {
            return d;
        }
        tie |= c == Comparison::Newer { tie: true };
    }
    if let Some(next) = &head.next {
        let c = compare(event, next);
        if let Some(d) = against(next, c) {
            return d;
        }
        tie |= c == Comparison::Newer { tie: true };
        cancel.push(next.event_id.clone());
    }
    match inflight {
        Some(i) if ctx.is_live(i) => Decision::Enqueue { tie, cancel: cancel.pop() },
        Some(i) => {
            cancel.insert(0, i.slot.event_id.clone());
            Decision::Claim { tie, out_of_order: false, cancel }
        }
        // Rule 4.
        None => Decision::Claim { tie, out_of_order: false, cancel },
    }
}

fn in_order(head: &EntityHead, event: &Candidate, ctx: &DecisionContext) -> Decision {
    let recorded = head.applied.iter().chain(head.inflight.as_ref().map(|i| &i.slot)).chain(head.backlog.iter());
    for slot in recorded {
        if compare(event, slot) == Comparison::Same && slot.event_id != event.event_id {
            return Decision::Duplicate { of: slot.event_id.clone() };
        }
    }
    // Queued already: in the backlog, or parked where the head counts parked events. A `queued` record that is
    // neither was queued or parked by a decision whose head write did not land (spec §9 "Queued in two writes, the
    // record first"), or parked by a version that did not flag parked records: it is queued (or parked) again.
    let parked = event.status == Status::Queued && event.parked && head.parked > 0;
    let queued = parked || head.backlog.iter().any(|s| s.event_id == event.event_id);
    match &head.inflight {
        Some(_) if queued => Decision::AlreadyQueued,
        Some(_) if head.backlog.len() >= ctx.max_backlog || head.parked > 0 => Decision::Park,
        Some(_) => Decision::Enqueue { tie: false, cancel: None },
        None => {
            let out_of_order = head.applied.as_ref().is_some_and(|a| event.order < a.order);
            Decision::Claim { tie: false, out_of_order, cancel: Vec::new() }
        }
    }
}
