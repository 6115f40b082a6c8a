//! Reading down a listing past what is passed over: the sweeper's expired leases and stranded queued events, and
//! the heads flagged for verification.

/// How many things a pass passes over, per one it may act on, before it stops reading further down its listing:
/// the bound on one pass's reads.
const PASSED_OVER_PER_LIMIT: usize = 16;

/// How far a pass reads down a listing in which it passes things over: it acts on up to `limit` (0: no limit, one
/// listing of everything), and reads the listing again, twice as long, while it passes things over, until `limit`
/// were acted on, the listing runs out, or [`PASSED_OVER_PER_LIMIT`] × `limit` were passed over.
pub(super) struct ReadPast {
    limit: usize,
    /// How long the next listing is.
    pub(super) listed: usize,
    acted_on: usize,
    passed_over: usize,
}

impl ReadPast {
    pub(super) fn new(limit: usize) -> Self {
        Self { limit, listed: limit, acted_on: 0, passed_over: 0 }
    }

    /// Whether `limit` things were acted on.
    pub(super) fn done(&self) -> bool {
        self.limit > 0 && self.acted_on >= self.limit
    }

    /// Counts one thing of the listing, acted on or passed over.
    pub(super) fn count(&mut self, acted_on: bool) {
        if acted_on {
            self.acted_on += 1;
        } else {
            self.passed_over += 1;
        }
    }

    /// After a listing that returned `len` things: whether to list again (then twice as many).
    pub(super) fn again(&mut self, len: usize) -> bool {
        let full = self.limit > 0 && len >= self.listed;
        if !full || self.done() || self.passed_over >= self.limit.saturating_mul(PASSED_OVER_PER_LIMIT) {
            return false;
        }
        self.listed = self.listed.saturating_mul(2);
        true
    }
}
