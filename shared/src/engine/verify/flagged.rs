//! The sweeper's verification (spec §5, §7): heads flagged `needs_verification` (an `in_order` event was applied
//! out of order) are verified, the result recorded on the head and the flag cleared in one compare-and-set; a
//! difference is repaired or only reported, as [`Settings::verify_repair`](crate::settings::Settings) says. An
//! entity still busy, or whose head changed meanwhile, keeps its flag for the next sweep.

use super::{busy, Finding, VerifyError, VerifyOptions};
use crate::destination::ReadError;
use crate::engine::{Engine, EngineError};
use crate::model::{Verdict, Verified};
use crate::store::{StoreError, Write};
use serde::Serialize;

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
}

impl Engine {
    /// Verifies up to `limit` heads flagged `needs_verification`; returns those whose result was recorded.
    pub(in crate::engine) async fn verify_flagged(&self, limit: usize) -> Result<Vec<VerifiedEntity>, EngineError> {
        let options = VerifyOptions { repair: self.settings.verify_repair, trace_header: None };
        let mut verified = Vec::new();
        for listed in self.ports.store.heads_to_verify(limit).await? {
            // The index may lag: act on the head as it is now.
            let Some(head) = self.ports.store.get_head(&listed.entity).await? else { continue };
            if !head.needs_verification || busy(&head).is_some() {
                continue;
            }
            let (verdict, detail) = match self.verify_entity(&head.entity, Some(&head), &options, true).await {
                Ok(report) => {
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
                    continue;
                }
                Err(VerifyError::Store(e)) => return Err(e.into()),
            };
            let entity_key = head.entity.to_string();
            let mut updated = head;
            updated.needs_verification = false;
            updated.verified = Some(Verified { at: self.now(), verdict, detail: detail.clone() });
            updated.updated_at = self.now();
            match self.ports.store.commit(vec![Write::head(updated)]).await {
                Ok(()) => {
                    match verdict {
                        Verdict::Equal => tracing::info!(entity = %entity_key, "verified: equal"),
                        _ => {
                            tracing::warn!(entity = %entity_key, ?verdict, detail = detail.as_deref().unwrap_or(""), "verified")
                        }
                    }
                    verified.push(VerifiedEntity { entity_key, verdict, detail });
                }
                // The entity moved on meanwhile: its flag stays for the next sweep.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(verified)
    }
}
