//! The case state and the readiness figures on disk: trees of the quality database, kept
//! by one follower of the journal (the gateway's task, or an offline rebuild).
//!
//! Trees: `chain-state` (what accumulates: `c` | case → [`CaseState`], bounded, rewritten
//! per step and held in memory between steps by [`StateCache`]; `d` | day | kind →
//! [`HandoverDay`]; `m` | name → `followed`, the journal sequence the state covers, and
//! `emitted`, the highest trigger whose readiness event was journalled), and the trees
//! keyed by what a step adds, so a long case costs no more per event than a short one:
//! `chain-timeline` (case | first sequence of the step → that case's [`TimelineEntry`]s
//! of the step), `chain-outcomes` (case | trigger sequence | kind → [`HandoverOutcome`]),
//! `chain-handovers` (trigger sequence | kind → [`HandoverLine`], for the dashboard's
//! list), `chain-pseudonyms` (pseudonym → case) and `chain-sequences` (first sequence of
//! the step → [(sequence, case)] of its events: which case each followed event belongs
//! to, so retention finds what an expired event left here without scanning every case;
//! see [`super::expire`]). `chain-meta` keeps `fingerprint` (the expectations and the
//! layout the state was built under) and `key` (the pseudonym key).
//!
//! One value per case and one index value per step, not one per event, in postcard
//! ([`super::codec`]): sled keeps few larger values far more compactly and cheaply than
//! many small ones. Outcomes, lines and day figures (per handover, per day) are JSON.
//!
//! A step covers up to [`STEP`] journal events while the follower is behind, so a case
//! met several times in it is written once (BENCHMARKS.md, issue 16).
//!
//! Crash safety: a step first writes what is keyed by the step (the timeline and index
//! values, outcomes, lines, pseudonyms), then one sled batch on `chain-state` with the
//! states, the day figures and `followed`. sled recovers a prefix of its log and a batch
//! whole or not at all, so the state always equals "the journal up to `followed`": a
//! crash loses at most whole steps, which the follower takes again and which write the
//! same keys again. A state built under other expectations or another layout is dropped
//! and rebuilt; `emitted` and `key` survive that, so pseudonyms stay stable and no
//! readiness event is emitted twice with other content.

use std::collections::BTreeMap;
use std::sync::Mutex;

use loket_journal::{Journal, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cache::StateCache;
use super::case::{members_of, CaseHistory, CaseState, Observed, TimelineEntry};
use super::codec::{decode, encode};
use super::config::HandoverSet;
use super::evaluate::HandoverOutcome;
use super::figures::{HandoverDay, HandoverReport};
use crate::aggregate::{day_of, Filter};
use crate::Error;

/// Keys in `chain-state`.
const FOLLOWED: &[u8] = b"mfollowed";
const EMITTED: &[u8] = b"memitted";
const STATE_PREFIX: u8 = b'c';
const DAY_PREFIX: u8 = b'd';
/// Keys in `chain-meta`.
const FINGERPRINT: &[u8] = b"fingerprint";
const KEY: &[u8] = b"key";
/// Layout 5 kept `emitted` and `followed` here, and the states and days in trees of
/// their own.
const LEGACY_EMITTED: &[u8] = b"emitted";
const LEGACY_FOLLOWED: &[u8] = b"followed";
const LEGACY_TREES: [&str; 2] = ["chain-cases", "chain-days"];
/// Part of the fingerprint: a store written in an older layout is rebuilt from the journal.
const LAYOUT: &str = "layout 6: postcard, timeline and sequence index per step, append-only outcomes, one batch\n";
/// Journal events read at a time.
pub const CHUNK: usize = 512;
/// Journal events applied per step, at most: a backlog is taken in steps this large, so
/// a case met several times in one is written once. A step holds no payloads, only the
/// states it touches and a timeline entry per event.
pub const STEP: usize = 8192;
/// The bound of the case states held in memory between steps ([`StateCache`]): some
/// tens of thousands of cases, so a step of interleaved cases reads hardly any from sled.
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

/// What consecutive journal events change, computed before anything is written.
pub struct Step {
    /// The states the step changed; `true` for a case the store had not seen.
    states: BTreeMap<String, (CaseState, bool)>,
    timeline: Vec<(String, TimelineEntry)>,
    /// The first journal sequence of the step: the key of its timeline and index values.
    first: u64,
    days: BTreeMap<(i32, String), HandoverDay>,
    /// Every handover the step triggered, with its case, in journal order.
    pub outcomes: Vec<(String, HandoverOutcome)>,
    /// The last journal sequence of the step.
    pub up_to: u64,
    /// The journal events taken in.
    events: usize,
    /// The store's [`ChainStore::epoch`] when the step was prepared.
    epoch: u64,
}

pub struct ChainStore {
    /// States, day figures and the position: what one batch writes per step.
    pub(super) state: sled::Tree,
    pub(super) timeline: sled::Tree,
    pub(super) outcomes: sled::Tree,
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

/// The key in `chain-state` of the figures of `day` and `kind`; ordered by day.
pub(super) fn day_key(day: i32, kind: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + kind.len());
    out.push(DAY_PREFIX);
    out.extend_from_slice(&((day as u32) ^ 0x8000_0000).to_be_bytes());
    out.extend_from_slice(kind.as_bytes());
    out
}

/// The key in `chain-state` of `case`'s state.
pub(super) fn state_key(case: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + case.len());
    out.push(STATE_PREFIX);
    out.extend_from_slice(case.as_bytes());
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

/// The key of `case`'s timeline value of the step that starts at `first`.
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
        let state = db.open_tree("chain-state")?;
        // From layout 5: `emitted` moves beside `followed`; the old trees go (the changed
        // fingerprint rebuilds what they held).
        if let Some(legacy) = meta.get(LEGACY_EMITTED)? {
            let emitted = u64_of(Some(legacy)).max(u64_of(state.get(EMITTED)?));
            state.insert(EMITTED, &emitted.to_be_bytes())?;
            meta.remove(LEGACY_EMITTED)?;
            meta.remove(LEGACY_FOLLOWED)?;
        }
        for legacy in LEGACY_TREES {
            db.drop_tree(legacy)?;
        }
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
            state,
            timeline: db.open_tree("chain-timeline")?,
            outcomes: db.open_tree("chain-outcomes")?,
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
        let emitted = self.emitted()?;
        for tree in [&self.state, &self.timeline, &self.outcomes, &self.handovers, &self.pseudonyms, &self.sequences] {
            tree.clear()?;
        }
        self.state.insert(EMITTED, &emitted.to_be_bytes())?;
        self.state.insert(FOLLOWED, &0u64.to_be_bytes())?;
        self.meta.insert(FINGERPRINT, fingerprint(set).as_bytes())?;
        self.meta.flush()?;
        Ok(())
    }

    /// The journal sequence the state covers.
    pub fn followed(&self) -> Result<u64, Error> {
        Ok(u64_of(self.state.get(FOLLOWED)?))
    }

    /// The highest trigger whose readiness event was journalled.
    pub fn emitted(&self) -> Result<u64, Error> {
        Ok(u64_of(self.state.get(EMITTED)?))
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
        match self.state.get(state_key(case))? {
            Some(v) => Ok(Some(decode(case, &v)?)),
            None => Ok(None),
        }
    }

    /// The next step: the journal after `followed`, up to [`STEP`] events of it; `None`
    /// when there is nothing new. Reads a chunk at a time, so no more than a chunk of
    /// payloads is held.
    pub fn prepare_next(&self, journal: &Journal, set: &HandoverSet) -> Result<Option<Step>, Error> {
        let mut step: Option<Step> = None;
        let mut next = self.followed()? + 1;
        loop {
            let chunk = journal.read_from(next, CHUNK)?;
            let Some(last) = chunk.last() else { break };
            next = last.sequence + 1;
            let step = match &mut step {
                Some(step) => {
                    self.extend(set, step, &chunk)?;
                    step
                }
                None => step.insert(self.prepare(set, &chunk)?),
            };
            if chunk.len() < CHUNK || step.events >= STEP {
                break;
            }
        }
        Ok(step)
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
            up_to: 0,
            events: 0,
            epoch: *self.epoch.lock().unwrap_or_else(|e| e.into_inner()),
        };
        self.extend(set, &mut step, events)?;
        Ok(step)
    }

    /// Takes `events`, the journal events right after `step`'s, into it.
    pub fn extend(&self, set: &HandoverSet, step: &mut Step, events: &[StoredEvent]) -> Result<(), Error> {
        if let Some(last) = events.last() {
            step.up_to = last.sequence;
        }
        step.events += events.len();
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
        Ok(())
    }

    /// Writes `step` and moves `followed` (and `emitted`): first what is keyed by the step,
    /// then one batch with what accumulates (module comment). Only the follower adds, so
    /// the days read here are not changed by anyone in between. Returns false, writing
    /// nothing, when a removal ran since the step was prepared: prepare it again (its
    /// readiness events, journalled again, are duplicates).
    pub fn commit(&self, step: Step) -> Result<bool, Error> {
        let mut batch = sled::Batch::default();
        let mut held = Vec::with_capacity(step.states.len());
        let mut pseudonyms = Vec::new();
        for (case, (state, new)) in step.states {
            let stored = encode(&state)?;
            if new {
                pseudonyms.push((self.pseudonym(&case), case.clone()));
            }
            held.push((stored.len(), case.clone(), state));
            batch.insert(state_key(&case), stored);
        }
        // One timeline value per case and one index value for the step.
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
        for ((day, kind), delta) in &step.days {
            let key = day_key(*day, kind);
            let mut counts: HandoverDay = match self.state.get(&key)? {
                Some(v) => serde_json::from_slice(&v).map_err(|e| corrupt(kind, e))?,
                None => HandoverDay::default(),
            };
            counts.merge(delta);
            batch.insert(key, json(&counts)?);
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
        batch.insert(FOLLOWED, &step.up_to.to_be_bytes());
        batch.insert(EMITTED, &emitted.to_be_bytes());
        let epoch = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        if *epoch != step.epoch {
            return Ok(false);
        }
        // Keyed by the step, a case or a trigger: taking the step again writes the same.
        for (k, v) in timeline {
            self.timeline.insert(k, v)?;
        }
        if let Some(index) = index {
            self.sequences.insert(step.first.to_be_bytes(), index)?;
        }
        for (k, v) in outcomes {
            self.outcomes.insert(k, v)?;
        }
        for (k, v) in lines {
            self.handovers.insert(k, v)?;
        }
        for (k, v) in pseudonyms {
            self.pseudonyms.insert(k.as_bytes(), v.as_bytes())?;
        }
        self.state.apply_batch(batch)?;
        // Still under `epoch`: a removal after this forgets what it changes.
        let mut states = self.states();
        for (bytes, case, state) in held {
            states.put(case, state, bytes);
        }
        Ok(true)
    }

    /// Rebuilds the state and figures from the whole journal without emitting events (the
    /// journal already has those it emitted). Returns the number of events read.
    pub fn rebuild(&self, journal: &Journal, set: &HandoverSet) -> Result<u64, Error> {
        self.reset(set)?;
        let mut read = 0;
        while let Some(step) = self.prepare_next(journal, set)? {
            read += step.events as u64;
            // Nothing else writes during a rebuild; a removal in between means: again.
            self.commit(step)?;
        }
        self.meta.flush()?;
        Ok(read)
    }

    pub fn report(&self, filter: &Filter) -> Result<HandoverReport, Error> {
        let mut days = Vec::new();
        for item in self.state.scan_prefix([DAY_PREFIX]) {
            let (k, v) = item?;
            let day = (u32::from_be_bytes(
                k.get(1..5).and_then(|b| b.try_into().ok()).ok_or_else(|| corrupt("day key", "short"))?,
            ) ^ 0x8000_0000) as i32;
            let kind = String::from_utf8_lossy(&k[5..]).into_owned();
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
            // A step taken again after a crash ends earlier than the first time if retention
            // removed events meanwhile: a value it did not rewrite then holds entries that
            // the next step's value holds too.
            let after = history.timeline.last().map_or(0, |e| e.sequence);
            let entries = decode::<Vec<TimelineEntry>>("timeline value", &v)?;
            history.timeline.extend(entries.into_iter().filter(|e| e.sequence > after));
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
