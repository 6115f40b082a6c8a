//! The sweeper's verification (spec §5, §7): heads flagged `needs_verification` (an `in_order` event was applied
//! out of order) are verified, the result recorded on the head and the flag cleared in one compare-and-set; a
//! difference is repaired or only reported, as [`Settings::verify_repair`](crate::settings::Settings) says. An
//! entity still busy, verified less than [`Settings::verify_interval`](crate::settings::Settings) ago, or whose head
//! changed meanwhile, keeps its flag for a later sweep; the listing is read on past those ([`ReadPast`]). An
//! `in_order` entity's replay is kept for its next verification to go on from ([`Checkpoint`]).

use super::checkpoint::Checkpoint;
use super::{busy, Finding, Replay, VerifyError, VerifyOptions};
use crate::destination::ReadError;
use crate::engine::read_past::ReadPast;
use crate::engine::{Engine, EngineError, Invocation, SweepReport};
use crate::model::{EntityHead, EntityKey, EventRecord, Verdict, Verified};
use crate::store::{StoreError, Write};
use serde::Serialize;
use std::collections::HashSet;

/// One entity the sweeper verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedEntity {
    /// The entity.
    pub entity_key: String,
    /// What was found (also recorded on its head).
    pub verdict: Verdict,
    /// What differs and what was done, or why it could not be verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Payloads read to replay it: of the events applied since its last verification, when that one's replay was
    /// kept (spec §9 "A verification goes on from the last one's replay").
    pub payloads_read: usize,
}

impl Engine {
    /// Verifies up to `limit` heads flagged `needs_verification`, each result recorded on its head and added to
    /// `report.verified`; stops between two entities when the sweep's deadline is near (`report.out_of_time`).
    pub(in crate::engine) async fn verify_flagged(
        &self,
        limit: usize,
        invocation: &Invocation,
        report: &mut SweepReport,
    ) -> Result<(), EngineError> {
        let mut examined: HashSet<EntityKey> = HashSet::new();
        let mut read = ReadPast::new(limit);
        loop {
            let listing = self.ports.store.heads_to_verify(read.listed).await?;
            let listed = listing.len();
            for head in listing {
                if read.done() || self.stops_sweep(invocation, report) {
                    break;
                }
                if examined.insert(head.entity.clone()) {
                    read.count(self.verify_flagged_head(head, &mut report.verified).await?);
                }
            }
            if report.out_of_time || !read.again(listed) {
                break;
            }
        }
        Ok(())
    }

    /// Verifies the entity of `listed`, a head the index lists as flagged, and records the result on its head
    /// (pushed onto `verified`); `false` when it was passed over: no longer flagged, busy, or verified less than
    /// [`Settings::verify_interval`](crate::settings::Settings) ago.
    async fn verify_flagged_head(
        &self,
        listed: EntityHead,
        verified: &mut Vec<VerifiedEntity>,
    ) -> Result<bool, EngineError> {
        let options = VerifyOptions { repair: self.settings.verify_repair, trace_header: None };
        // The index may lag: act on the head as it is now.
        let Some(head) = self.ports.store.get_head(&listed.entity).await? else { return Ok(false) };
        let verified_lately = head.verified.as_ref().is_some_and(|v| self.now() < v.at + self.settings.verify_interval);
        if !head.needs_verification || busy(&head).is_some() || verified_lately {
            return Ok(false);
        }
        let mut payloads_read = 0;
        let (verdict, detail) = match self.verify_entity(&head.entity, Some(&head), &options, Replay::GoingOn).await {
            Ok(mut report) => {
                payloads_read = report.payloads_read;
                if let Some((replayed, newest)) = report.checkpoint.take() {
                    self.keep_replay(&replayed, newest).await;
                }
                let reason = report.reason.clone().unwrap_or_default();
                match (report.finding, &report.repaired, &report.not_repaired) {
                    (Finding::Equal, _, _) => (Verdict::Equal, None),
                    (Finding::Differs, Some(event), _) => {
                        (Verdict::Repaired, Some(format!("{reason}; re-drove {event}, forced")))
                    }
                    (Finding::Differs, None, Some(why)) => {
                        (Verdict::Differs, Some(format!("{reason}; not repaired: {why}")))
                    }
                    (Finding::Differs, None, None) => (Verdict::Differs, Some(reason)),
                    (Finding::Skipped, _, _) => (Verdict::Unverified, Some(reason)),
                }
            }
            Err(VerifyError::Destination(ReadError::Unsupported(why))) => (Verdict::Unverified, Some(why)),
            Err(VerifyError::Destination(failed)) => {
                tracing::warn!(entity = %head.entity, error = %failed, "verification postponed: the destination could not be read");
                return Ok(true);
            }
            Err(VerifyError::Store(e)) => return Err(e.into()),
        };
        let entity_key = head.entity.to_string();
        let mut updated = head;
        updated.needs_verification = false;
        updated.verified = Some(Verified::new(self.now(), verdict, detail.as_deref()));
        updated.updated_at = self.now();
        match self.ports.store.commit(vec![Write::head(updated)]).await {
            Ok(()) => {
                match verdict {
                    Verdict::Equal => tracing::info!(entity = %entity_key, "verified: equal"),
                    _ => {
                        tracing::warn!(entity = %entity_key, ?verdict, detail = detail.as_deref().unwrap_or(""), "verified")
                    }
                }
                verified.push(VerifiedEntity { entity_key, verdict, detail, payloads_read });
            }
            // The entity moved on meanwhile: its flag stays for the next sweep.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(true)
    }

    /// Archives `replayed` and names it on `newest`, the record of the newest event it folded, for the next
    /// verification of the entity; when either write fails, that one replays every event.
    async fn keep_replay(&self, replayed: &Checkpoint, newest: EventRecord) {
        let entity = newest.entity.as_ref().map(ToString::to_string).unwrap_or_default();
        if let Err(e) = self.name_replay(replayed, newest).await {
            tracing::warn!(entity = %entity, error = %e, "the replay could not be kept: the next verification replays every event");
        }
    }

    async fn name_replay(&self, replayed: &Checkpoint, mut newest: EventRecord) -> Result<(), String> {
        let bytes = replayed.to_bytes().map_err(|e| e.to_string())?;
        newest.replay_kept = Some(self.ports.payloads.put(&bytes, self.now()).await.map_err(|e| e.to_string())?);
        self.ports.store.commit(vec![Write::event(newest)]).await.map_err(|e| e.to_string())
    }
}
