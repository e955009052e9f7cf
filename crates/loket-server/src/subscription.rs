//! One subscriber's stream: reads the journal from a start sequence in order, then follows
//! new events as the writer makes them durable. What the subscriber gets of each event is
//! decided by its `SubscriberScan` (entitlement, redaction, consent), whose state before
//! the start comes from the access index, so the stream is the same whether it is read in
//! one go or resumed anywhere.

use loket_access::{EventFacts, Need, Step, SubscriberScan, Verdict};
use loket_journal::{Journal, StoredEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::access::{parse, Access, DenialRecord};
use crate::delivery::{to_delivery, View};
use crate::proto::Delivery;
use crate::timestamp::now_micros;
use crate::Error;

/// Events read from the journal per step; large enough to amortise a read, small enough to
/// keep a slow subscriber's memory bounded.
const READ_CHUNK: usize = 256;

pub(crate) struct Subscription {
    pub journal: Journal,
    pub access: Access,
    pub partner: String,
    pub next: u64,
    /// Event types to deliver (already checked against the grants); empty means all the
    /// partner may receive.
    pub types: std::collections::BTreeSet<String>,
    /// Stop after this many deliveries; 0 means never.
    pub limit: u64,
    /// The subscription name ("" when transient), for the lag metric.
    pub name: String,
    /// Whether quality digests were asked for (all types, or the digest type by name), and
    /// whether nothing else was.
    pub digests: bool,
    pub only_digests: bool,
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
        if !self.access.indexed_up_to(self.next.saturating_sub(1), &self.shutdown).await {
            let _ = tx.send(Err(Error::ShuttingDown.into())).await;
            return;
        }
        let mut scan = match self.access.scan_before(&self.partner, std::mem::take(&mut self.types), self.next) {
            Ok(scan) => scan,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
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
            for mut event in batch {
                self.next = event.sequence + 1;
                let group = if crate::digest::is_digest(&event) {
                    // Digests come from the gateway itself and are about one partner: they
                    // bypass the partner policy and go to that partner and the quality readers.
                    if self.digests && self.visible(&event) {
                        let position = event.sequence;
                        let data = std::mem::take(&mut event.data);
                        vec![to_delivery(event, View { data, redacted: Vec::new(), released: false, position })]
                    } else {
                        Vec::new()
                    }
                } else if self.only_digests {
                    Vec::new()
                } else {
                    match self.views(&mut scan, event) {
                        Ok(group) => group,
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    }
                };
                if let Some(last) = group.last() {
                    self.report_lag(last.sequence.max(last.position));
                }
                for delivery in group {
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

    /// The deliveries one journal event makes: itself (unless skipped or withheld), then
    /// the withheld events it releases. All but the last carry the position before it, so
    /// a client that acks a delivery's position never skips one of the group.
    fn views(&self, scan: &mut SubscriberScan, mut event: StoredEvent) -> Result<Vec<Delivery>, Error> {
        let policy = &self.access.policy;
        match scan.need(policy, &event.event_type) {
            Need::Skip => return Ok(Vec::new()),
            Need::Verbatim => {
                let position = event.sequence;
                let data = std::mem::take(&mut event.data);
                return Ok(vec![to_delivery(event, View { data, redacted: Vec::new(), released: false, position })]);
            }
            Need::Inspect => {}
        }
        let data = parse(&event)?;
        let facts = EventFacts {
            sequence: event.sequence,
            event_type: &event.event_type,
            subject: &event.subject,
            received_at_micros: event.received_at_micros,
            data: &data,
        };
        let (step, released) = scan.step(policy, &facts);
        let position = event.sequence;
        let consent_at = event.received_at_micros;
        let mut group = Vec::new();
        if let Step::Deliver { data, redacted } = step {
            group.push(self.deliver(event, &data, redacted, false)?);
        }
        for sequence in released {
            let original = self
                .journal
                .get(sequence)?
                .ok_or_else(|| Error::Access(format!("withheld event {sequence} is missing from the journal")))?;
            let data = parse(&original)?;
            let facts = EventFacts {
                sequence,
                event_type: &original.event_type,
                subject: &original.subject,
                received_at_micros: original.received_at_micros,
                data: &data,
            };
            if let Verdict::Deliver { data, redacted } = scan.release(policy, &facts, consent_at) {
                group.push(self.deliver(original, &data, redacted, true)?);
            }
        }
        let last = group.len().saturating_sub(1);
        for (i, delivery) in group.iter_mut().enumerate() {
            delivery.position = if i == last { position } else { position - 1 };
        }
        Ok(group)
    }

    fn deliver(
        &self,
        event: StoredEvent,
        data: &serde_json::Value,
        redacted: Vec<String>,
        released: bool,
    ) -> Result<Delivery, Error> {
        if !redacted.is_empty() {
            self.access.store.redaction(&DenialRecord {
                at_micros: now_micros(),
                kind: "redacted".into(),
                reason_code: "FIELDS_NOT_GRANTED".into(),
                reason: format!("the policy does not grant {} these fields of {}", self.partner, event.event_type),
                fields: redacted.clone(),
                ..DenialRecord::about(&self.partner, &event)
            })?;
        }
        let data = serde_json::to_vec(data).map_err(|e| Error::Access(e.to_string()))?;
        Ok(to_delivery(event, View { data, redacted, released, position: 0 }))
    }
}
