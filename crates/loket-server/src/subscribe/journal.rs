//! One subscriber's stream read from the journal: from a start sequence in order, then
//! following new events as the writer makes them durable. What the subscriber gets of
//! each event is the [`Viewer`]'s view through its `SubscriberScan`, whose state before
//! the start comes from the access index, so the stream is the same whether it is read
//! in one go or resumed anywhere.

use std::collections::BTreeSet;

use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::outbox::{Outbox, Refused};
use super::Held;
use crate::http::metrics::SLOW_SUBSCRIBERS;
use crate::proto::Delivery;
use crate::view::{Digests, Reading, Viewer};
use crate::Error;

/// Most events read from the journal per step; large enough to amortise a read. Fewer
/// are read when events are large, so that a chunk takes about as many bytes as the
/// subscriber's buffer (a waiting subscriber holds its chunk too).
const READ_CHUNK: usize = 256;
const FIRST_CHUNK: usize = 4;

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
    /// The partner's subscription slot, the open-subscriptions gauge and the name's use:
    /// released when the task ends, however it ends.
    pub _held: Held,
    /// Seconds without reading after which the subscriber is dropped (for its status).
    pub slow_secs: u64,
    /// The subscriber's buffer in bytes, which sizes the journal reads.
    pub buffer_bytes: usize,
}

/// How one send to the subscriber went.
enum Sent {
    Ok,
    /// The stream is over (client gone, or a slow subscriber dropped): stop.
    Stop,
}

impl JournalSubscription {
    fn report_lag(&self, delivered: u64) {
        let lag = self.viewer.journal.last_sequence().saturating_sub(delivered);
        crate::http::lag::set(&self.partner, &self.name, lag);
    }

    /// Sends one item; a subscriber that stopped reading is dropped with its buffer.
    async fn send(&self, outbox: &Outbox, item: Result<Delivery, Status>) -> Sent {
        match outbox.send(item).await {
            Ok(()) => Sent::Ok,
            Err(Refused::Gone) => Sent::Stop,
            Err(Refused::Slow) => {
                metrics::counter!(SLOW_SUBSCRIBERS, "partner" => self.partner.clone()).increment(1);
                tracing::info!(partner = %self.partner, name = %self.name, "slow subscriber disconnected");
                Sent::Stop
            }
        }
    }

    /// Serves the subscription into `outbox` until the limit, the client's going away,
    /// a slow subscriber's timeout or the gateway's shutdown.
    pub async fn run(self, outbox: Outbox) {
        let slow = Error::SlowSubscriber { seconds: self.slow_secs };
        match self.serve(&outbox).await {
            Ok(()) => outbox.finish(None),
            Err(None) => outbox.abort(slow.into()),
            Err(Some(status)) => outbox.finish(Some(status)),
        }
    }

    /// `Err(None)`: the subscriber was too slow (or went away); `Err(Some(status))`: end
    /// with that status.
    async fn serve(mut self, outbox: &Outbox) -> Result<(), Option<Status>> {
        // A start before the retained range starts at its beginning, and the first
        // delivery says so.
        let first_retained = self.viewer.journal.first_retained();
        let mut tell_first_retained = (self.next < first_retained).then_some(first_retained);
        self.next = self.next.max(first_retained);
        let access = self.viewer.access.clone();
        let indexed = tokio::select! {
            indexed = access.indexed_up_to(self.next.saturating_sub(1), &self.shutdown) => indexed,
            () = outbox.closed() => return Ok(()),
        };
        if !indexed {
            return Err(Some(Error::ShuttingDown.into()));
        }
        let mut scan = access
            .scan_before(&self.partner, std::mem::take(&mut self.types), self.next)
            .map_err(|e| Some(e.into()))?;
        let journal = self.viewer.journal.clone();
        let mut durable = journal.watch();
        let mut delivered = 0u64;
        let profile = self.viewer.access.profile.clone();
        let mut recorder = self.viewer.access.processing.recorder();
        // The first read is small, until the events' size is known.
        let mut chunk = FIRST_CHUNK;
        loop {
            // Mark the current durable sequence as seen *before* reading, so an event made
            // durable after the read still wakes us.
            durable.borrow_and_update();
            let batch = journal.read_from(self.next, chunk).map_err(|e| Some(Error::from(e).into()))?;
            let bytes: usize = batch.iter().map(|e| e.data.len()).sum();
            if !batch.is_empty() {
                let mean = bytes / batch.len();
                chunk = (self.buffer_bytes / mean.max(1)).clamp(1, READ_CHUNK);
            }
            if batch.is_empty() {
                self.report_lag(self.next.saturating_sub(1));
                tokio::select! {
                    changed = durable.changed() => if changed.is_err() { return Ok(()) },
                    () = outbox.closed() => return Ok(()),
                    () = self.shutdown.cancelled() => return Err(Some(Error::ShuttingDown.into())),
                }
                continue;
            }
            // The read's deliveries are built first and their processing records queued
            // together, before any of them can reach the subscriber (an auditor who lists
            // a case's processing after receiving a delivery finds it).
            let mut deliveries = Vec::with_capacity(batch.len());
            let mut seen = None;
            let mut full = false;
            // By value, so each event's memory goes as soon as it is viewed.
            for event in batch {
                self.next = event.sequence + 1;
                let group =
                    self.viewer.view(&mut scan, self.digests, &mut Reading::new(&event)).map_err(|e| Some(e.into()))?;
                if let Some(last) = group.last() {
                    seen = Some(last.event.sequence.max(last.position));
                }
                for viewed in group {
                    let mut delivery = viewed.delivered_to(&self.partner, &profile, &mut recorder);
                    delivery.first_retained = tell_first_retained.take().unwrap_or_default();
                    deliveries.push(delivery);
                    delivered += 1;
                    full = self.limit != 0 && delivered >= self.limit;
                    if full {
                        break;
                    }
                }
                if full {
                    break;
                }
            }
            recorder.send();
            if let Some(seen) = seen {
                self.report_lag(seen);
            }
            for delivery in deliveries {
                if let Sent::Stop = self.send(outbox, Ok(delivery)).await {
                    return Err(None);
                }
            }
            if full {
                return Ok(());
            }
            if self.shutdown.is_cancelled() {
                return Err(Some(Error::ShuttingDown.into()));
            }
        }
    }
}
