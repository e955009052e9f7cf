//! The case state and the readiness figures on disk: trees of the quality database, kept
//! by one follower of the journal (the gateway's task, or an offline rebuild).
//!
//! Trees: `chain-cases` (case → [`CaseState`]: bounded, rewritten per chunk, held in
//! memory between chunks by [`StateCache`]), `chain-timeline` (case | first sequence of
//! the chunk → that case's [`TimelineEntry`]s of the chunk) and `chain-outcomes` (case |
//! trigger sequence | kind → [`HandoverOutcome`]), both append-only so a long case costs no
//! more per event than a short one; `chain-days` (day | kind → [`HandoverDay`]),
//! `chain-handovers` (trigger sequence → [`HandoverLine`], for the dashboard's list),
//! `chain-pseudonyms` (pseudonym → case), `chain-sequences` (first sequence of the chunk
//! → [(sequence, case)] of its events: which case each followed event belongs to, so
//! retention finds what an expired event left here without scanning every case; see
//! [`super::expire`]) and `chain-meta` (`followed`: the journal sequence the state covers;
//! `emitted`: the highest trigger whose readiness event was journalled; `fingerprint`: the
//! expectations and the layout it was built under; `key`: the pseudonym key).
//!
//! One value per case and one index value per chunk, not one per event, in postcard
//! ([`super::codec`]): sled keeps few larger values far more compactly and cheaply than
//! many small ones. Outcomes, lines and day figures (per handover, per day) are JSON.
//!
//! Crash safety: a chunk of the journal is applied in one sled transaction together with
//! `followed`, so the state always equals "the journal up to `followed`": a crash loses at
//! most whole chunks, which the follower reads again. A state built under other
//! expectations or another layout is dropped and rebuilt; `emitted` and `key` survive
//! that, so pseudonyms stay stable and no readiness event is emitted twice with other
//! content.

use std::collections::BTreeMap;
use std::sync::Mutex;

use loket_journal::{Journal, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::cache::StateCache;
use super::case::{members_of, CaseHistory, CaseState, Observed, TimelineEntry};
use super::codec::{decode, encode};
use super::config::HandoverSet;
use super::evaluate::HandoverOutcome;
use super::figures::{HandoverDay, HandoverReport};
use crate::aggregate::{day_of, Filter};
use crate::Error;

const FOLLOWED: &[u8] = b"followed";
const EMITTED: &[u8] = b"emitted";
const FINGERPRINT: &[u8] = b"fingerprint";
const KEY: &[u8] = b"key";
/// Part of the fingerprint: a store written in an older layout is rebuilt from the journal.
const LAYOUT: &str = "layout 5: postcard, timeline and sequence index per chunk, append-only outcomes\n";
/// Journal events applied per transaction.
pub const CHUNK: usize = 512;
/// The bound of the case states held in memory between chunks ([`StateCache`]): some
/// tens of thousands of cases, so a chunk of interleaved cases reads hardly any from sled.
pub const STATE_CACHE_BYTES: usize = 16 << 20;

/// One handover as the dashboard lists it: no V-number, no payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverLine {
    pub pseudonym: String,
    pub kind: String,
    pub at_micros: i64,
    pub ready: bool,
    pub gaps: Vec<String>,
}

/// What one chunk of the journal changes, computed before anything is written.
pub struct Step {
    /// The states the chunk changed; `true` for a case the store had not seen.
    states: BTreeMap<String, (CaseState, bool)>,
    timeline: Vec<(String, TimelineEntry)>,
    /// The first journal sequence of the chunk: the key of its timeline and index values.
    first: u64,
    days: BTreeMap<(i32, String), HandoverDay>,
    /// Every handover the chunk triggered, with its case, in journal order.
    pub outcomes: Vec<(String, HandoverOutcome)>,
    /// The last journal sequence of the chunk.
    pub up_to: u64,
    /// The store's [`ChainStore::epoch`] when the step was prepared.
    epoch: u64,
}

pub struct ChainStore {
    pub(super) cases: sled::Tree,
    pub(super) timeline: sled::Tree,
    pub(super) outcomes: sled::Tree,
    pub(super) days: sled::Tree,
    pub(super) handovers: sled::Tree,
    pub(super) pseudonyms: sled::Tree,
    pub(super) sequences: sled::Tree,
    meta: sled::Tree,
    key: Vec<u8>,
    /// Bumped by every removal (retention, erasure) under this lock, which a commit holds
    /// too: a step prepared before a removal would write back the state it removed, so
    /// such a step is not committed but prepared again ([`ChainStore::commit`]).
    pub(super) epoch: Mutex<u64>,
    /// The states as committed, for the cases used last; a removal forgets what it changes.
    pub(super) cache: Mutex<StateCache>,
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt { key: what.to_owned(), reason: e.to_string() }
}

pub(super) fn day_key(day: i32, kind: &str) -> Vec<u8> {
    let mut out = ((day as u32) ^ 0x8000_0000).to_be_bytes().to_vec();
    out.extend_from_slice(kind.as_bytes());
    out
}

/// Length-prefixed, so one case's keys are a prefix no other case's keys share.
pub(super) fn case_key(case: &str) -> Vec<u8> {
    let bytes = case.as_bytes();
    let mut out = Vec::with_capacity(2 + bytes.len() + 8);
    out.extend_from_slice(&(bytes.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&bytes[..bytes.len().min(u16::MAX as usize)]);
    out
}

/// The key of `case`'s timeline value of the chunk that starts at `first`.
pub(super) fn chunk_key(case: &str, first: u64) -> Vec<u8> {
    let mut key = case_key(case);
    key.extend_from_slice(&first.to_be_bytes());
    key
}

fn fingerprint(set: &HandoverSet) -> String {
    format!("{LAYOUT}{}", set.fingerprint())
}

fn u64_of(value: Option<sled::IVec>) -> u64 {
    value.and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?))).unwrap_or(0)
}

impl ChainStore {
    /// Opens the trees in the quality database; drops a state built under other expectations.
    pub fn open(db: &sled::Db, set: &HandoverSet) -> Result<ChainStore, Error> {
        let meta = db.open_tree("chain-meta")?;
        let key = match meta.get(KEY)? {
            Some(k) => k.to_vec(),
            None => {
                // Random per gateway, so a pseudonym cannot be recomputed from a V-number elsewhere.
                let key = [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat();
                meta.insert(KEY, key.as_slice())?;
                key
            }
        };
        let store = ChainStore {
            cases: db.open_tree("chain-cases")?,
            timeline: db.open_tree("chain-timeline")?,
            outcomes: db.open_tree("chain-outcomes")?,
            days: db.open_tree("chain-days")?,
            handovers: db.open_tree("chain-handovers")?,
            pseudonyms: db.open_tree("chain-pseudonyms")?,
            sequences: db.open_tree("chain-sequences")?,
            meta,
            key,
            epoch: Mutex::new(0),
            cache: Mutex::new(StateCache::new(STATE_CACHE_BYTES)),
        };
        if store.meta.get(FINGERPRINT)?.as_deref() != Some(fingerprint(set).as_bytes()) {
            store.reset(set)?;
        }
        Ok(store)
    }

    /// Forgets the derived state (not `emitted` nor the key): the follower starts over.
    fn reset(&self, set: &HandoverSet) -> Result<(), Error> {
        self.states().clear();
        for tree in [
            &self.cases,
            &self.timeline,
            &self.outcomes,
            &self.days,
            &self.handovers,
            &self.pseudonyms,
            &self.sequences,
        ] {
            tree.clear()?;
        }
        self.meta.insert(FOLLOWED, &0u64.to_be_bytes())?;
        self.meta.insert(FINGERPRINT, fingerprint(set).as_bytes())?;
        self.meta.flush()?;
        Ok(())
    }

    /// The journal sequence the state covers.
    pub fn followed(&self) -> Result<u64, Error> {
        Ok(u64_of(self.meta.get(FOLLOWED)?))
    }

    /// The highest trigger whose readiness event was journalled.
    pub fn emitted(&self) -> Result<u64, Error> {
        Ok(u64_of(self.meta.get(EMITTED)?))
    }

    /// The case's pseudonym: keyed SHA-256, so figures and pages never show the V-number.
    pub fn pseudonym(&self, case: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(&self.key);
        hash.update(case.as_bytes());
        hex::encode(&hash.finalize()[..8])
    }

    /// The case states held in memory.
    pub(super) fn states(&self) -> std::sync::MutexGuard<'_, StateCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored state of `case`; `None` for a case not seen yet.
    pub(super) fn state(&self, case: &str) -> Result<Option<CaseState>, Error> {
        match self.cases.get(case)? {
            Some(v) => Ok(Some(decode(case, &v)?)),
            None => Ok(None),
        }
    }

    /// Evaluates the handovers of `events` (consecutive journal events after `followed`)
    /// on the stored case states; writes nothing.
    pub fn prepare(&self, set: &HandoverSet, events: &[StoredEvent]) -> Result<Step, Error> {
        let mut step = Step {
            states: BTreeMap::new(),
            timeline: Vec::with_capacity(events.len()),
            days: BTreeMap::new(),
            outcomes: Vec::new(),
            first: events.first().map_or(0, |e| e.sequence),
            up_to: events.last().map_or(0, |e| e.sequence),
            epoch: *self.epoch.lock().unwrap_or_else(|e| e.into_inner()),
        };
        // The gateway's own events (digests, readiness) are about the chain, not a case.
        for event in events.iter().filter(|e| e.source != loket_domain::GATEWAY_SOURCE) {
            let data = match members_of(&event.data, &set.members) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(sequence = event.sequence, error = %e, "stored event data is not a JSON object");
                    Value::Null
                }
            };
            if !step.states.contains_key(&event.subject) {
                // Taken out of the cache: the commit puts the new state back.
                let held = self.states().take(&event.subject);
                let stored = match held {
                    Some(state) => Some(state),
                    None => self.state(&event.subject)?,
                };
                let new = stored.is_none();
                step.states.insert(event.subject.clone(), (stored.unwrap_or_default(), new));
            }
            let (state, _) = step.states.get_mut(&event.subject).expect("inserted above");
            let observed = Observed {
                sequence: event.sequence,
                received_at_micros: event.received_at_micros,
                time_micros: event.time_micros,
                event_type: &event.event_type,
                source: &event.source,
                data: &data,
            };
            for outcome in set.evaluate(state, &observed) {
                step.days.entry((day_of(outcome.at_micros), outcome.kind.clone())).or_default().add(&outcome);
                step.outcomes.push((event.subject.clone(), outcome));
            }
            state.observe(&observed, &set.members);
            step.timeline.push((event.subject.clone(), TimelineEntry::of(&observed)));
        }
        Ok(step)
    }

    /// Writes `step` and moves `followed` (and `emitted`) in one transaction. Only the
    /// follower adds, so the days read here are not changed by anyone in between. Returns
    /// false, writing nothing, when a removal ran since the step was prepared: prepare the
    /// chunk again (its readiness events, journalled again, are duplicates).
    pub fn commit(&self, step: Step) -> Result<bool, Error> {
        let mut cases = Vec::with_capacity(step.states.len());
        let mut pseudonyms = Vec::new();
        for (case, (state, new)) in &step.states {
            cases.push(encode(state)?);
            if *new {
                pseudonyms.push((self.pseudonym(case), case.clone()));
            }
        }
        // One timeline value per case and one index value for the chunk.
        let mut per_case: BTreeMap<&str, Vec<&TimelineEntry>> = BTreeMap::new();
        let mut index = Vec::with_capacity(step.timeline.len());
        for (case, entry) in &step.timeline {
            per_case.entry(case).or_default().push(entry);
            index.push((entry.sequence, case.as_str()));
        }
        let mut timeline = Vec::with_capacity(per_case.len());
        for (case, entries) in &per_case {
            timeline.push((chunk_key(case, step.first), encode(entries)?));
        }
        let index = if index.is_empty() { None } else { Some(encode(&index)?) };
        let mut days = Vec::new();
        for ((day, kind), delta) in &step.days {
            let key = day_key(*day, kind);
            let mut counts: HandoverDay = match self.days.get(&key)? {
                Some(v) => serde_json::from_slice(&v).map_err(|e| corrupt(kind, e))?,
                None => HandoverDay::default(),
            };
            counts.merge(delta);
            days.push((key, json(&counts)?));
        }
        let mut lines = Vec::new();
        let mut outcomes = Vec::new();
        for (case, o) in &step.outcomes {
            let mut key = case_key(case);
            key.extend_from_slice(&o.trigger_sequence.to_be_bytes());
            key.extend_from_slice(o.kind.as_bytes());
            outcomes.push((key, json(o)?));
            let line = HandoverLine {
                pseudonym: self.pseudonym(case),
                kind: o.kind.clone(),
                at_micros: o.at_micros,
                ready: o.ready(),
                gaps: o.gaps().map(|g| format!("{} ({}: {})", g.item, g.partner, g.status.as_str())).collect(),
            };
            let mut key = o.trigger_sequence.to_be_bytes().to_vec();
            key.extend_from_slice(o.kind.as_bytes());
            lines.push((key, json(&line)?));
        }
        let emitted = self.emitted()?.max(step.up_to);
        let epoch = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        if *epoch != step.epoch {
            return Ok(false);
        }
        let trees = (
            &self.cases,
            &self.timeline,
            &self.outcomes,
            &self.days,
            &self.handovers,
            &self.pseudonyms,
            &self.meta,
            &self.sequences,
        );
        let result = trees.transaction(|(c, t, o, d, h, p, m, s)| {
            for (k, v) in step.states.keys().zip(&cases) {
                c.insert(k.as_bytes(), v.as_slice())?;
            }
            for (k, v) in &timeline {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            if let Some(index) = &index {
                s.insert(&step.first.to_be_bytes(), index.as_slice())?;
            }
            for (k, v) in &outcomes {
                o.insert(k.as_slice(), v.as_slice())?;
            }
            for (k, v) in &days {
                d.insert(k.as_slice(), v.as_slice())?;
            }
            for (k, v) in &lines {
                h.insert(k.as_slice(), v.as_slice())?;
            }
            for (k, v) in &pseudonyms {
                p.insert(k.as_bytes(), v.as_bytes())?;
            }
            m.insert(FOLLOWED, &step.up_to.to_be_bytes())?;
            m.insert(EMITTED, &emitted.to_be_bytes())?;
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match result {
            Ok(()) => {
                // Still under `epoch`: a removal after this forgets what it changes.
                let mut held = self.states();
                for ((case, (state, _)), stored) in step.states.into_iter().zip(cases) {
                    held.put(case, state, stored.len());
                }
                Ok(true)
            }
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => Err(corrupt("chain transaction", "aborted")),
        }
    }

    /// Rebuilds the state and figures from the whole journal without emitting events (the
    /// journal already has those it emitted). Returns the number of events read.
    pub fn rebuild(&self, journal: &Journal, set: &HandoverSet) -> Result<u64, Error> {
        self.reset(set)?;
        let last = journal.last_sequence();
        let mut read = 0;
        while self.followed()? < last {
            let chunk = journal.read_from(self.followed()? + 1, CHUNK)?;
            if chunk.is_empty() {
                break;
            }
            read += chunk.len() as u64;
            let step = self.prepare(set, &chunk)?;
            // Nothing else writes during a rebuild; a removal in between means: again.
            self.commit(step)?;
        }
        self.meta.flush()?;
        Ok(read)
    }

    pub fn report(&self, filter: &Filter) -> Result<HandoverReport, Error> {
        let mut days = Vec::new();
        for item in self.days.iter() {
            let (k, v) = item?;
            let day = (u32::from_be_bytes(
                k.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| corrupt("day key", "short"))?,
            ) ^ 0x8000_0000) as i32;
            let kind = String::from_utf8_lossy(&k[4..]).into_owned();
            let counts: HandoverDay = serde_json::from_slice(&v).map_err(|e| corrupt(&kind, e))?;
            days.push((day, kind, counts));
        }
        Ok(HandoverReport::build(days.iter().map(|(d, k, c)| (*d, k.as_str(), c)), filter))
    }

    /// The history of the case behind `pseudonym` (the V-number stays inside).
    pub fn case(&self, pseudonym: &str) -> Result<Option<CaseHistory>, Error> {
        let Some(case) = self.pseudonyms.get(pseudonym)? else {
            return Ok(None);
        };
        let prefix = case_key(&String::from_utf8_lossy(&case));
        let mut history = CaseHistory::default();
        for item in self.timeline.scan_prefix(&prefix) {
            let (_, v) = item?;
            history.timeline.extend(decode::<Vec<TimelineEntry>>("timeline value", &v)?);
        }
        for item in self.outcomes.scan_prefix(&prefix) {
            let (_, v) = item?;
            history.handovers.push(serde_json::from_slice(&v).map_err(|e| corrupt("handover outcome", e))?);
        }
        Ok(Some(history))
    }

    /// The latest `limit` handovers, newest first, optionally only those not ready.
    pub fn recent(&self, limit: usize, unready_only: bool) -> Result<Vec<HandoverLine>, Error> {
        let mut out = Vec::new();
        for item in self.handovers.iter().rev() {
            let (_, v) = item?;
            let line: HandoverLine = serde_json::from_slice(&v).map_err(|e| corrupt("handover line", e))?;
            if !(unready_only && line.ready) {
                out.push(line);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// The values written per handover or per day.
fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| corrupt("a chain record", e))
}
