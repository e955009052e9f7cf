//! The access store: a sled database beside the journal (`<data_dir>/access`) with
//! - `gated`: an index of the journal's consent and possibly-medical events by case
//!   (case ++ sequence → [`IndexedEvent`]), so that a subscription starting anywhere, or a
//!   status query, knows the consent state and what is withheld without reading the whole
//!   journal. Derived data: rebuilt from the journal when lost or when the medical rules
//!   change; `meta/indexed` says how far it got.
//! - `consent-claims`: beside the index, who registered each indexed consent form (case ++
//!   sequence → registrar, keyed digest of the form's id), so that a start loads the
//!   claims without opening a sealed payload. The digest, not the id: sled keeps old bytes,
//!   and no payload byte of an erased case may stay readable.
//! - `denials`: the audit log of refusals, redactions and withholdings.
//! - `exports`: the record of every export of the message log (`exports.rs`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

const INDEXED: &[u8] = b"indexed";
const MEDICAL_RULES: &[u8] = b"medical-rules";
const CLAIMS_KEY: &[u8] = b"claims-key";

/// Refusals are appended (time-ordered keys); redactions and withholdings are keyed by
/// (sequence, partner) so a redelivery does not record the same fact twice.
const REFUSAL: u8 = 1;
const REDACTION: u8 = 2;
const WITHHOLDING: u8 = 3;

/// What the index keeps of a journal event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IndexedEvent {
    pub sequence: u64,
    pub event_type: String,
    /// The publisher: a consent counts only from a registrar, and a publisher is never
    /// withheld from its own event.
    pub source: String,
    pub subject: String,
    pub received_at_micros: i64,
    pub data: Value,
}

loket_domain::impl_envelope!(IndexedEvent);

impl IndexedEvent {
    /// What a scan reads of this entry.
    pub fn facts(&self) -> loket_access::EventFacts<'_> {
        loket_access::EventFacts::of(self, &self.data)
    }

    /// The entry of a stored event whose payload reads as `data`.
    pub fn of(event: &loket_journal::StoredEvent, data: Value) -> Self {
        IndexedEvent {
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            source: event.source.clone(),
            subject: event.subject.clone(),
            received_at_micros: event.received_at_micros,
            data,
        }
    }
}

/// A consent form's registrar, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexedClaim {
    pub case: String,
    pub sequence: u64,
    pub registrar: String,
    /// [`super::ConsentClaims::digest`] of the form's id.
    pub digest: [u8; 32],
}

/// One recorded denial.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DenialRecord {
    pub at_micros: i64,
    pub partner: String,
    pub kind: String,
    pub event_type: String,
    pub event_id: String,
    pub source: String,
    pub subject: String,
    pub sequence: u64,
    pub reason_code: String,
    pub reason: String,
    pub fields: Vec<String>,
}

#[derive(Clone)]
pub(crate) struct AccessStore {
    /// Seals the index's payload copies with their case keys, so that erasing a case
    /// makes them unreadable wherever sled still keeps old bytes. `None` for a store
    /// opened only to record an offline export.
    sealer: Option<loket_journal::Journal>,
    pub(super) db: sled::Db,
    gated: sled::Tree,
    claims: sled::Tree,
    denials: sled::Tree,
    pub(super) exports: sled::Tree,
    meta: sled::Tree,
}

pub(super) fn storage(e: sled::Error) -> Error {
    Error::Access(e.to_string())
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Access(format!("unreadable {what}: {e}"))
}

fn gated_key(case: &str, sequence: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(case.len() + 9);
    key.extend_from_slice(case.as_bytes());
    key.push(0);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// The sequence at the end of a [`gated_key`].
fn sequence_of(key: &[u8]) -> Result<u64, Error> {
    let tail = key.len().checked_sub(8).map(|at| &key[at..]).ok_or_else(|| corrupt("index key", "short"))?;
    Ok(u64::from_be_bytes(tail.try_into().map_err(|e| corrupt("index key", e))?))
}

/// The key of a fact recorded once per (event, partner).
fn once_key(kind: u8, record: &DenialRecord) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + record.partner.len());
    key.push(kind);
    key.extend_from_slice(&record.sequence.to_be_bytes());
    key.extend_from_slice(record.partner.as_bytes());
    key
}

impl AccessStore {
    /// Opens, waiting for a previous gateway in this process to let go of the database
    /// ([`loket_journal::open_sled`]).
    pub fn open(dir: &Path, cache_bytes: u64, sealer: Option<loket_journal::Journal>) -> Result<Self, Error> {
        Self::with_db(Self::open_db(dir, cache_bytes)?, sealer)
    }

    /// The database alone: what takes the time of an open (sled reads the log written
    /// since its last open), so the gateway does it beside the journal's.
    pub fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, Error> {
        // The indexer writes entries under random case keys as fast as events arrive;
        // HighThroughput trades disk space for fewer page rewrites (gateway-stream CPU
        // per event 64-65 µs with LowSpace, 57 µs with this, on this noisy machine).
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(500));
        loket_journal::open_sled(&config).map_err(storage)
    }

    /// The store in `db` (from [`AccessStore::open_db`]).
    pub fn with_db(db: sled::Db, sealer: Option<loket_journal::Journal>) -> Result<Self, Error> {
        Ok(Self {
            sealer,
            gated: db.open_tree("gated").map_err(storage)?,
            claims: db.open_tree("consent-claims").map_err(storage)?,
            denials: db.open_tree("denials").map_err(storage)?,
            exports: db.open_tree("exports").map_err(storage)?,
            meta: db.open_tree("meta").map_err(storage)?,
            db,
        })
    }

    /// The sequence up to which the index is complete; resets the index when it was built
    /// under other medical rules (`rules` fingerprints them).
    pub fn indexed(&self, rules: &str) -> Result<u64, Error> {
        if self.meta.get(MEDICAL_RULES).map_err(storage)?.as_deref() != Some(rules.as_bytes()) {
            self.gated.clear().map_err(storage)?;
            self.claims.clear().map_err(storage)?;
            self.meta.insert(INDEXED, &0u64.to_be_bytes()).map_err(storage)?;
            self.meta.insert(MEDICAL_RULES, rules.as_bytes()).map_err(storage)?;
            return Ok(0);
        }
        Ok(match self.meta.get(INDEXED).map_err(storage)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|e| corrupt("index mark", e))?),
            None => 0,
        })
    }

    /// The key of the consent claims' digests: random per gateway, kept in the store.
    pub fn claims_key(&self) -> Result<[u8; 32], Error> {
        if let Some(key) = self.meta.get(CLAIMS_KEY).map_err(storage)? {
            return key.as_ref().try_into().map_err(|e| corrupt("claims key", e));
        }
        let key: [u8; 32] = [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()]
            .concat()
            .try_into()
            .map_err(|_| corrupt("claims key", "length"))?;
        self.meta.insert(CLAIMS_KEY, &key).map_err(storage)?;
        self.meta.flush().map_err(storage)?;
        Ok(key)
    }

    /// Adds index entries, the claims of the consents among them and the withholdings
    /// found while indexing them, then moves the mark (sled recovers a prefix of its
    /// writes, so the mark never runs ahead of them). A withholding record is a function
    /// of the journal, so indexing the same events again after a crash writes the same
    /// records under the same keys.
    ///
    /// Plain inserts, not `apply_batch`: sled 0.34 writes out and syncs its log buffer
    /// twice for every batch (`pin_log`), even an empty one, which cost three disk writes
    /// per indexed chunk while most chunks hold nothing to index. Atomicity is not needed
    /// here: the prefix guarantee and the idempotent keys above cover a crash.
    pub fn index(
        &self,
        events: &[IndexedEvent],
        claims: &[IndexedClaim],
        withholdings: &[DenialRecord],
        up_to: u64,
    ) -> Result<(), Error> {
        for e in events {
            self.gated.insert(gated_key(&e.subject, e.sequence), self.seal_entry(e)?).map_err(storage)?;
        }
        for c in claims {
            let mut value = c.digest.to_vec();
            value.extend_from_slice(c.registrar.as_bytes());
            self.claims.insert(gated_key(&c.case, c.sequence), value).map_err(storage)?;
        }
        for record in withholdings {
            let value = serde_json::to_vec(record).map_err(|e| corrupt("denial", e))?;
            self.denials.insert(once_key(WITHHOLDING, record), value).map_err(storage)?;
        }
        self.meta.insert(INDEXED, &up_to.to_be_bytes()).map_err(storage)?;
        Ok(())
    }

    fn sealer(&self) -> Result<&loket_journal::Journal, Error> {
        self.sealer.as_ref().ok_or_else(|| Error::Access("the access index was opened without the journal".into()))
    }

    /// An entry as stored: its facts as JSON, a newline (which compact JSON never holds),
    /// then its payload sealed with the case key.
    fn seal_entry(&self, e: &IndexedEvent) -> Result<Vec<u8>, Error> {
        let head = IndexedEvent { data: Value::Null, ..e.clone() };
        let mut value = serde_json::to_vec(&head).map_err(|e| corrupt("index entry", e))?;
        let data = serde_json::to_vec(&e.data).map_err(|e| corrupt("index entry", e))?;
        value.push(b'\n');
        value.extend_from_slice(&self.sealer()?.seal(&e.subject, &data)?);
        Ok(value)
    }

    /// The entry, `None` when its case was erased.
    fn open_entry(&self, value: &[u8]) -> Result<Option<IndexedEvent>, Error> {
        self.open_entry_of(value, None)
    }

    /// The entry, if it is of `event_type` (any when `None`): the payload of another
    /// type is never decrypted nor parsed.
    fn open_entry_of(&self, value: &[u8], event_type: Option<&str>) -> Result<Option<IndexedEvent>, Error> {
        let split = value.iter().position(|b| *b == b'\n').ok_or_else(|| corrupt("index entry", "no payload"))?;
        let mut entry: IndexedEvent = serde_json::from_slice(&value[..split]).map_err(|e| corrupt("index entry", e))?;
        if event_type.is_some_and(|t| t != entry.event_type) {
            return Ok(None);
        }
        let Some(data) = self.sealer()?.unseal(&value[split + 1..])? else { return Ok(None) };
        entry.data = serde_json::from_slice(&data).map_err(|e| corrupt("index entry", e))?;
        Ok(Some(entry))
    }

    /// Every indexed event, case by case, each case in sequence order (erased ones left out).
    pub fn all(&self) -> impl Iterator<Item = Result<IndexedEvent, Error>> + '_ {
        self.gated
            .iter()
            .map(|item| {
                let (_, v) = item.map_err(storage)?;
                self.open_entry(&v)
            })
            .filter_map(Result::transpose)
    }

    /// Every indexed event of `event_type`, case by case (erased ones left out).
    pub fn all_of_type<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = Result<IndexedEvent, Error>> + 'a {
        self.gated
            .iter()
            .map(move |item| {
                let (_, v) = item.map_err(storage)?;
                self.open_entry_of(&v, Some(event_type))
            })
            .filter_map(Result::transpose)
    }

    /// Every indexed consent claim as (sequence, registrar, digest), case by case.
    pub fn claims(&self) -> impl Iterator<Item = Result<(u64, String, [u8; 32]), Error>> + '_ {
        self.claims.iter().map(|item| {
            let (key, value) = item.map_err(storage)?;
            let sequence = sequence_of(&key)?;
            let (digest, registrar) = value.split_at_checked(32).ok_or_else(|| corrupt("consent claim", "short"))?;
            let digest = digest.try_into().map_err(|e| corrupt("consent claim", e))?;
            let registrar = std::str::from_utf8(registrar).map_err(|e| corrupt("consent claim", e))?;
            Ok((sequence, registrar.to_owned(), digest))
        })
    }

    /// The indexed events of one case, in sequence order.
    pub fn case(&self, case: &str) -> Result<Vec<IndexedEvent>, Error> {
        let mut prefix = case.as_bytes().to_vec();
        prefix.push(0);
        self.gated
            .scan_prefix(prefix)
            .map(|item| {
                let (_, v) = item.map_err(storage)?;
                self.open_entry(&v)
            })
            .filter_map(Result::transpose)
            .collect()
    }

    /// Removes the case's index entries (already unreadable once its key is gone).
    pub fn erase_case(&self, case: &str) -> Result<u64, Error> {
        let mut prefix = case.as_bytes().to_vec();
        prefix.push(0);
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for item in self.gated.scan_prefix(&prefix) {
            batch.remove(item.map_err(storage)?.0);
            removed += 1;
        }
        let mut claims = sled::Batch::default();
        for item in self.claims.scan_prefix(&prefix) {
            claims.remove(item.map_err(storage)?.0);
        }
        self.gated.apply_batch(batch).map_err(storage)?;
        self.claims.apply_batch(claims).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(removed)
    }

    /// Removes what left the journal or expired: index entries (each a copy of a payload)
    /// of events below `first_retained` or whose payload was purged, and denials recorded
    /// before `denials_before` (µs). Returns (index entries, denials) removed.
    pub fn expire(
        &self,
        first_retained: u64,
        purged: &std::collections::HashSet<u64>,
        denials_before: Option<i64>,
    ) -> Result<(u64, u64), Error> {
        let expired = |tree: &sled::Tree| -> Result<(sled::Batch, u64), Error> {
            let (mut batch, mut removed) = (sled::Batch::default(), 0);
            for item in tree.iter() {
                let (key, _) = item.map_err(storage)?;
                let sequence = sequence_of(&key)?;
                if sequence < first_retained || purged.contains(&sequence) {
                    batch.remove(key);
                    removed += 1;
                }
            }
            Ok((batch, removed))
        };
        let (gated, gated_removed) = expired(&self.gated)?;
        let (claims, _) = expired(&self.claims)?;
        self.gated.apply_batch(gated).map_err(storage)?;
        self.claims.apply_batch(claims).map_err(storage)?;
        let mut denials_removed = 0;
        if let Some(before) = denials_before {
            let mut denials = sled::Batch::default();
            for item in self.denials.iter() {
                let (key, v) = item.map_err(storage)?;
                let record: DenialRecord = serde_json::from_slice(&v).map_err(|e| corrupt("denial", e))?;
                if record.at_micros < before {
                    denials.remove(key);
                    denials_removed += 1;
                }
            }
            self.denials.apply_batch(denials).map_err(storage)?;
        }
        self.db.flush().map_err(storage)?;
        Ok((gated_removed, denials_removed))
    }

    /// Appends a refusal and makes it durable before returning.
    pub async fn refusal(&self, record: DenialRecord) -> Result<(), Error> {
        let id = self.db.generate_id().map_err(storage)?;
        let mut key = vec![REFUSAL];
        key.extend_from_slice(&record.at_micros.to_be_bytes());
        key.extend_from_slice(&id.to_be_bytes());
        self.put(&key, &record)?;
        self.db.flush_async().await.map_err(storage)?;
        Ok(())
    }

    /// Records that `record.partner` received event `record.sequence` redacted (once).
    pub fn redaction(&self, record: &DenialRecord) -> Result<(), Error> {
        self.once(REDACTION, record)
    }

    fn once(&self, kind: u8, record: &DenialRecord) -> Result<(), Error> {
        let key = once_key(kind, record);
        if self.denials.contains_key(&key).map_err(storage)? {
            return Ok(());
        }
        self.put(&key, record)
    }

    fn put(&self, key: &[u8], record: &DenialRecord) -> Result<(), Error> {
        let value = serde_json::to_vec(record).map_err(|e| corrupt("denial", e))?;
        self.denials.insert(key, value).map_err(storage)?;
        Ok(())
    }

    /// Denials at or after `since` (µs), of `partner` when given, only refusals when
    /// `refusals_only`, oldest first, at most the `limit` most recent.
    pub fn denials(
        &self,
        since: i64,
        partner: Option<&str>,
        refusals_only: bool,
        limit: usize,
    ) -> Result<Vec<DenialRecord>, Error> {
        let mut out = Vec::new();
        // Refusals sort first (their kind byte is the lowest): with `refusals_only` the
        // redactions and withholdings are not even read.
        let records = if refusals_only { self.denials.scan_prefix([REFUSAL]) } else { self.denials.iter() };
        for item in records {
            let (_, v) = item.map_err(storage)?;
            let record: DenialRecord = serde_json::from_slice(&v).map_err(|e| corrupt("denial", e))?;
            if record.at_micros >= since && partner.is_none_or(|p| p == record.partner) {
                out.push(record);
            }
        }
        out.sort_by_key(|d| (d.at_micros, d.sequence));
        let skip = out.len().saturating_sub(limit);
        Ok(out.split_off(skip))
    }

    pub fn flush(&self) -> Result<(), Error> {
        self.db.flush().map_err(storage)?;
        Ok(())
    }
}
