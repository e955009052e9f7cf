//! The indexer: follows the journal, keeps the index of consent and possibly-medical events
//! by case, and records once per event and recipient that medical data is withheld.

use std::time::Duration;

use loket_access::{ConsentBook, Verdict, CONSENT_TYPE};
use loket_journal::{Journal, StoredEvent};
use tokio_util::sync::CancellationToken;

use super::{parse, Access, DenialRecord, IndexedEvent};
use crate::Error;

/// Journal events the indexer reads per step.
const INDEX_CHUNK: usize = 1024;

impl Access {
    /// Follows the journal, indexing consents and possibly-medical events by case and
    /// recording, once per event and recipient, that medical data is withheld.
    pub async fn run_indexer(self, journal: Journal, shutdown: CancellationToken) {
        // Every indexed consent is opened for the book: blocking sled work and decryption,
        // on a blocking thread so that publishes are served meanwhile.
        let access = self.clone();
        let mut book = match tokio::task::spawn_blocking(move || access.indexed_consent_book()).await {
            Ok(book) => book,
            Err(e) => {
                tracing::error!(error = %e, "access indexer ended abnormally");
                return;
            }
        };
        let mut durable = journal.watch();
        metrics::gauge!(crate::http::metrics::FOLLOWER_SEQUENCE, "follower" => "access-index")
            .set(*self.indexed.borrow() as f64);
        loop {
            durable.borrow_and_update();
            let next = *self.indexed.borrow() + 1;
            // Reading and indexing a chunk is blocking sled work: on a blocking thread, so
            // that publishes on the async workers are not queued behind it.
            let (access, reader) = (self.clone(), journal.clone());
            let indexed = tokio::task::spawn_blocking(move || {
                // The events not indexed are skipped unopened (most events are neither).
                let indexes = |e: &StoredEvent| access.indexes(&e.event_type);
                let step =
                    reader.read_where(next, INDEX_CHUNK, indexes).map_err(Error::from).and_then(|(batch, read)| {
                        let Some(read) = read else { return Ok(false) };
                        access.index_batch(&batch, read, &mut book)?;
                        Ok(true)
                    });
                (book, step)
            })
            .await;
            let step = match indexed {
                Ok((returned, step)) => {
                    book = returned;
                    step
                }
                Err(e) => {
                    tracing::error!(error = %e, "access indexer ended abnormally");
                    return;
                }
            };
            match step {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, rules = %self.rules, "access indexer failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// The consent book of the indexed consents (other payloads are not opened).
    fn indexed_consent_book(&self) -> ConsentBook {
        let mut book = ConsentBook::default();
        for entry in self.store.all_of_type(CONSENT_TYPE) {
            match entry {
                Ok(e) => {
                    self.policy.record_consent(&mut book, &e.facts());
                }
                Err(e) => tracing::error!(error = %e, "access index unreadable; consent state may be incomplete"),
            }
        }
        book
    }

    /// Whether events of `event_type` are indexed: consents and possibly-medical events.
    fn indexes(&self, event_type: &str) -> bool {
        event_type == CONSENT_TYPE || self.policy.may_be_medical(event_type)
    }

    /// Indexes `batch`, the events of the journal up to `read` that [`Access::indexes`].
    fn index_batch(&self, batch: &[StoredEvent], read: u64, book: &mut ConsentBook) -> Result<(), Error> {
        let mut entries = Vec::new();
        let mut claims = Vec::new();
        let mut withholdings = Vec::new();
        for event in batch {
            let consent = event.event_type == CONSENT_TYPE;
            let medical = self.policy.may_be_medical(&event.event_type);
            // An expired or erased event has no payload left to index.
            if !self.indexes(&event.event_type) || event.purged_by != 0 {
                continue;
            }
            let entry = IndexedEvent::of(event, parse(event)?);
            if medical {
                for partner in self.policy.recipients_of(&event.event_type) {
                    // Withholdings are recorded for the addressee only: the others are
                    // never to receive the event, so nothing is kept from them.
                    let verdict = self.policy.view(&partner, &entry.facts(), book, entry.received_at_micros);
                    if let Verdict::Withhold(reason) = verdict {
                        withholdings.push(DenialRecord {
                            at_micros: event.received_at_micros,
                            kind: "withheld".into(),
                            reason_code: reason.code().into(),
                            reason: reason.to_string(),
                            ..DenialRecord::about(&partner, event)
                        });
                    }
                }
            }
            if consent {
                self.policy.record_consent(book, &entry.facts());
                claims.extend(self.claim_of(event, &entry.data));
            }
            entries.push(entry);
        }
        self.store.index(&entries, &claims, &withholdings, read)?;
        self.indexed.send_replace(read);
        metrics::gauge!(crate::http::metrics::FOLLOWER_SEQUENCE, "follower" => "access-index").set(read as f64);
        Ok(())
    }
}
