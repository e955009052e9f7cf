//! A partner's named subscriptions as things to manage: listing, deleting, and expiring
//! the ones nobody has opened or acknowledged for `[limits] unused_subscription_secs`
//! (their cursors would otherwise be kept forever, and hold quota slots).

use std::time::Duration;

use loket_domain::time::now_micros;
use loket_domain::PartnerId;
use tokio_util::sync::CancellationToken;

use super::{check_name, Subscriptions};
use crate::http::metrics::SUBSCRIPTIONS_EXPIRED;
use crate::proto::timestamp::from_micros;
use crate::proto::{ListSubscriptionsReply, SubscriptionInfo};
use crate::Error;

/// Longest pause between two expiry sweeps.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Subscriptions {
    fn is_open(&self, partner: &str, name: &str) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.contains_key(&(partner.to_owned(), name.to_owned()))
    }

    /// `partner`'s named subscriptions (journal cursors), by name.
    pub fn list(&self, partner: &PartnerId) -> Result<ListSubscriptionsReply, Error> {
        let cursors = self.viewer.journal.cursors_of(partner.as_str())?;
        let subscriptions = cursors
            .into_iter()
            .map(|c| SubscriptionInfo {
                open: self.is_open(partner.as_str(), &c.name),
                name: c.name,
                acked: c.acked,
                last_used: c.last_used_micros.map(from_micros),
            })
            .collect();
        Ok(ListSubscriptionsReply { subscriptions })
    }

    /// Deletes `partner`'s subscription `name`; one with a stream open is refused
    /// (FAILED_PRECONDITION): its subscriber would go on acknowledging into nothing.
    pub fn delete(&self, partner: &PartnerId, name: &str) -> Result<(), Error> {
        if let Some(problem) = check_name(name) {
            return Err(Error::InvalidSubscription(vec![problem]));
        }
        if self.is_open(partner.as_str(), name) {
            return Err(Error::SubscriptionOpen { name: name.to_owned() });
        }
        if !self.viewer.journal.delete_cursor(partner.as_str(), name)? {
            return Err(Error::SubscriptionNotFound { partner: partner.to_string(), name: name.to_owned() });
        }
        crate::http::lag::forget(partner.as_str(), name);
        tracing::info!(partner = %partner, name, "named subscription deleted");
        Ok(())
    }

    /// Deletes, until `stop`, every named subscription unused for `after` and not open.
    pub async fn expire_unused(self, after: Duration, stop: CancellationToken) {
        let every = (after / 10).clamp(Duration::from_millis(100), SWEEP_EVERY);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            let before = now_micros() - i64::try_from(after.as_micros()).unwrap_or(i64::MAX);
            let unused = match self.viewer.journal.unused_cursors(before) {
                Ok(unused) => unused,
                Err(e) => {
                    tracing::warn!(error = %e, "listing unused subscriptions failed");
                    continue;
                }
            };
            for (partner, name) in unused.into_iter().filter(|(p, n)| !self.is_open(p, n)) {
                match self.viewer.journal.delete_cursor(&partner, &name) {
                    Ok(_) => {
                        crate::http::lag::forget(&partner, &name);
                        metrics::counter!(SUBSCRIPTIONS_EXPIRED, "partner" => partner.clone()).increment(1);
                        tracing::info!(partner, name, "unused named subscription expired");
                    }
                    Err(e) => tracing::warn!(error = %e, partner, name, "expiring a subscription failed"),
                }
            }
        }
    }
}
