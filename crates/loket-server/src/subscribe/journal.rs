//! One subscriber's stream read from the journal: from a start sequence in order, then
//! following new events as the writer makes them durable. What the subscriber gets of
//! each event is the [`Viewer`]'s view through its `SubscriberScan`, whose state before
//! the start comes from the access index, so the stream is the same whether it is read
//! in one go or resumed anywhere.

use std::collections::BTreeSet;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::http::metrics::SUBSCRIBER_LAG;
use crate::proto::Delivery;
use crate::view::{Digests, Reading, Viewer};
use crate::Error;

/// Events read from the journal per step; large enough to amortise a read, small enough to
/// keep a slow subscriber's memory bounded.
const READ_CHUNK: usize = 256;

pub(crate) struct JournalSubscription {
    pub viewer: Viewer,
    pub partner: String,
    pub next: u64,
    /// Event types to deliver (already checked against the grants); empty means all the
    /// partner may receive.
    pub types: BTreeSet<String>,
    /// Which quality digests besides them.
    pub digests: Digests,
    /// Stop after this many deliveries; 0 means never.
    pub limit: u64,
    /// The subscription name ("" when transient), for the lag metric.
    pub name: String,
    pub shutdown: CancellationToken,
}

impl JournalSubscription {
    fn report_lag(&self, delivered: u64) {
        let lag = self.viewer.journal.last_sequence().saturating_sub(delivered);
        let labels = [("partner", self.partner.clone()), ("subscription", self.name.clone())];
        metrics::gauge!(SUBSCRIBER_LAG, &labels).set(lag as f64);
    }

    pub async fn run(mut self, tx: mpsc::Sender<Result<Delivery, Status>>) {
        // A start before the retained range starts at its beginning, and the first
        // delivery says so.
        let first_retained = self.viewer.journal.first_retained();
        let mut tell_first_retained = (self.next < first_retained).then_some(first_retained);
        self.next = self.next.max(first_retained);
        let access = self.viewer.access.clone();
        if !access.indexed_up_to(self.next.saturating_sub(1), &self.shutdown).await {
            let _ = tx.send(Err(Error::ShuttingDown.into())).await;
            return;
        }
        let mut scan = match access.scan_before(&self.partner, std::mem::take(&mut self.types), self.next) {
            Ok(scan) => scan,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let journal = self.viewer.journal.clone();
        let mut durable = journal.watch();
        let mut delivered = 0u64;
        loop {
            // Mark the current durable sequence as seen *before* reading, so an event made
            // durable after the read still wakes us.
            durable.borrow_and_update();
            let batch = match journal.read_from(self.next, READ_CHUNK) {
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
            for event in &batch {
                self.next = event.sequence + 1;
                let group = match self.viewer.view(&mut scan, self.digests, &mut Reading::new(event)) {
                    Ok(group) => group,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                if let Some(last) = group.last() {
                    self.report_lag(last.event.sequence.max(last.position));
                }
                for viewed in group {
                    let mut delivery = viewed.delivered_to(&self.partner, &self.viewer.access);
                    delivery.first_retained = tell_first_retained.take().unwrap_or_default();
                    if tx.send(Ok(delivery)).await.is_err() {
                        return;
                    }
                    delivered += 1;
                    if self.limit != 0 && delivered >= self.limit {
                        return;
                    }
                }
            }
            if self.shutdown.is_cancelled() {
                let _ = tx.send(Err(Error::ShuttingDown.into())).await;
                return;
            }
        }
    }
}
