//! One subscriber's stream: reads the journal from a start sequence in order, then follows
//! new events as the writer makes them durable.

use std::collections::HashSet;

use loket_domain::PartnerId;
use loket_journal::{Journal, StoredEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::delivery::to_delivery;
use crate::proto::Delivery;
use crate::Error;

/// Events read from the journal per step; large enough to amortise a read, small enough to
/// keep a slow subscriber's memory bounded.
const READ_CHUNK: usize = 256;

pub(crate) struct Subscription {
    pub journal: Journal,
    pub next: u64,
    /// Event types to deliver; empty means all.
    pub types: HashSet<String>,
    /// Stop after this many deliveries; 0 means never.
    pub limit: u64,
    /// The subscriber and its subscription name ("" when transient), for visibility and lag.
    pub partner: PartnerId,
    pub name: String,
    /// Whether the subscriber reads every partner's quality digests.
    pub quality_reader: bool,
    pub shutdown: CancellationToken,
}

impl Subscription {
    /// A quality digest is about one partner (its subject): only that partner and the
    /// quality readers receive it.
    fn visible(&self, event: &StoredEvent) -> bool {
        !crate::digest::is_digest(event) || self.quality_reader || event.subject == self.partner.as_str()
    }

    fn report_lag(&self, delivered: u64) {
        let lag = self.journal.last_sequence().saturating_sub(delivered);
        let labels = [("partner", self.partner.to_string()), ("subscription", self.name.clone())];
        metrics::gauge!(crate::metrics::SUBSCRIBER_LAG, &labels).set(lag as f64);
    }

    pub async fn run(mut self, tx: mpsc::Sender<Result<Delivery, Status>>) {
        let mut durable = self.journal.watch();
        let mut delivered = 0u64;
        loop {
            // Mark the current durable sequence as seen *before* reading, so an event made
            // durable after the read still wakes us.
            durable.borrow_and_update();
            let batch = match self.journal.read_from(self.next, READ_CHUNK) {
                Ok(batch) => batch,
                Err(e) => {
                    let _ = tx.send(Err(Error::from(e).into())).await;
                    return;
                }
            };
            if batch.is_empty() {
                self.report_lag(self.next.saturating_sub(1));
                tokio::select! {
                    changed = durable.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    () = self.shutdown.cancelled() => {
                        let _ = tx.send(Err(Error::ShuttingDown.into())).await;
                        return;
                    }
                }
                continue;
            }
            for event in batch {
                self.next = event.sequence + 1;
                if !self.types.is_empty() && !self.types.contains(&event.event_type) {
                    continue;
                }
                if !self.visible(&event) {
                    continue;
                }
                self.report_lag(event.sequence);
                if tx.send(Ok(to_delivery(event))).await.is_err() {
                    return;
                }
                delivered += 1;
                if self.limit != 0 && delivered >= self.limit {
                    return;
                }
            }
            if self.shutdown.is_cancelled() {
                let _ = tx.send(Err(Error::ShuttingDown.into())).await;
                return;
            }
        }
    }
}
