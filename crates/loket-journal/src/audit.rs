//! Checking the hash chain: of a journal on disk ([`verify_dir`]), or of any sequence of
//! chained entries, such as an exported log ([`ChainWalk`]).

use std::fmt;
use std::path::Path;

use prost::Message;

use crate::chain::{event_hash, rejection_hash, to_array, Tip, GENESIS};
use crate::event::{StoredEvent, StoredRejection};
use crate::store::{chunk_first, Frames, Store, StoreConfig};
use crate::Error;

/// Names one journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRef {
    /// An accepted event, by sequence.
    Accepted(u64),
    /// A rejection, by its number in the rejection log.
    Rejected(u64),
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryRef::Accepted(s) => write!(f, "accepted event sequence {s}"),
            EntryRef::Rejected(n) => write!(f, "rejection {n}"),
        }
    }
}

/// What is wrong with the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// An entry's content does not match its hash, or it does not link to its predecessor.
    Altered,
    /// A chain position (or sequence) is missing.
    Removed,
    /// Entries are out of order or duplicated.
    Reordered,
    /// A record cannot be decoded at all.
    Unreadable,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of tampering it looks like.
    pub kind: ProblemKind,
    /// The entry where it shows (None when the record could not be read at all).
    pub entry: Option<EntryRef>,
    /// The chain position concerned.
    pub position: u64,
    /// A sentence for people.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// One entry as the walk needs it.
#[derive(Debug, Clone)]
pub struct Link<'a> {
    /// The entry.
    pub entry: EntryRef,
    /// Its recorded chain position.
    pub position: u64,
    /// Its recorded `prev_hash`.
    pub prev_hash: &'a [u8],
    /// Its recorded `hash`.
    pub hash: &'a [u8],
    /// The hash recomputed from its content (for an entry whose payload was purged, the
    /// recorded hash: its content can no longer be recomputed, only its links checked).
    pub computed: [u8; 32],
    /// The purge record that removed its payload (0: intact).
    pub purged_by: u64,
}

impl<'a> Link<'a> {
    /// The link of a stored accepted event.
    pub fn event(event: &'a StoredEvent) -> Self {
        Link {
            entry: EntryRef::Accepted(event.sequence),
            position: event.chain,
            prev_hash: &event.prev_hash,
            hash: &event.hash,
            computed: match event.purged_by {
                0 => event_hash(event),
                _ => to_array(&event.hash).unwrap_or(GENESIS),
            },
            purged_by: event.purged_by,
        }
    }

    /// The link of a stored rejection.
    pub fn rejection(rejection: &'a StoredRejection) -> Self {
        Link {
            entry: EntryRef::Rejected(rejection.number),
            position: rejection.chain,
            prev_hash: &rejection.prev_hash,
            hash: &rejection.hash,
            computed: match rejection.purged_by {
                0 => rejection_hash(rejection),
                _ => to_array(&rejection.hash).unwrap_or(GENESIS),
            },
            purged_by: rejection.purged_by,
        }
    }
}

/// Walks chained entries in order and stops at the first that was altered, is missing
/// before it, or is out of order.
#[derive(Debug, Clone)]
pub struct ChainWalk {
    /// A partial log (an export with filters) may skip positions; links are checked
    /// only between consecutive positions then.
    partial: bool,
    next_position: u64,
    prev: [u8; 32],
    next_sequence: u64,
    next_rejection: u64,
    /// Entries checked.
    pub entries: u64,
    /// Accepted events among them.
    pub accepted: u64,
    /// Rejections among them.
    pub rejected: u64,
    /// Places where a partial log skips positions.
    pub gaps: u64,
    /// Entries whose payload was purged (expired or erased), with the purge record.
    pub purged: Vec<(EntryRef, u64)>,
    /// Where the walk started: the position before its first entry and that entry's
    /// `prev_hash` (0 and [`GENESIS`] for a chain from its start).
    pub start: Tip,
}

impl ChainWalk {
    /// A walk over a complete chain, from position 1.
    pub fn complete() -> Self {
        ChainWalk {
            partial: false,
            next_position: 1,
            prev: GENESIS,
            next_sequence: 1,
            next_rejection: 1,
            entries: 0,
            accepted: 0,
            rejected: 0,
            gaps: 0,
            purged: Vec::new(),
            start: Tip::default(),
        }
    }

    /// A walk over a complete chain whose entries up to `retained`'s checkpoint were
    /// removed by retention: it starts after the checkpoint, so every retained entry is
    /// still checked against the hash of the last removed one.
    pub fn retained(retained: &crate::Retained) -> Self {
        ChainWalk {
            next_position: retained.checkpoint_position + 1,
            prev: retained.checkpoint_hash,
            next_sequence: retained.first_sequence,
            next_rejection: retained.first_rejection,
            start: Tip { position: retained.checkpoint_position, hash: retained.checkpoint_hash },
            ..ChainWalk::complete()
        }
    }

    /// A walk over a complete log whose first entries may have expired: it starts at the
    /// first entry it is given (trusting its `prev_hash`, which the caller reports as the
    /// checkpoint to compare with the journal's) and checks everything after it.
    pub fn from_first_entry() -> Self {
        ChainWalk { next_position: 0, next_sequence: 0, next_rejection: 0, ..ChainWalk::complete() }
    }

    /// A walk over a log that may be a filtered part of the chain.
    pub fn partial() -> Self {
        ChainWalk { partial: true, ..ChainWalk::complete() }
    }

    /// The tip after the entries checked so far.
    pub fn tip(&self) -> Tip {
        Tip { position: self.next_position - 1, hash: self.prev }
    }

    /// Checks the next entry.
    pub fn check(&mut self, link: &Link<'_>) -> Result<(), Problem> {
        let entry = link.entry;
        let position = link.position;
        if self.next_position == 0 {
            // `from_first_entry`: this entry is where the walk starts.
            self.next_position = position;
            // The chain's own first entry must link to GENESIS, whatever it claims.
            self.prev = if position <= 1 { GENESIS } else { to_array(link.prev_hash).unwrap_or(GENESIS) };
            self.start = Tip { position: position - 1, hash: self.prev };
        }
        match entry {
            EntryRef::Accepted(s) if self.next_sequence == 0 => self.next_sequence = s,
            EntryRef::Rejected(n) if self.next_rejection == 0 => self.next_rejection = n,
            _ => {}
        }
        let problem = |kind, detail: String| Problem { kind, entry: Some(entry), position, detail };
        if link.hash != link.computed {
            return Err(problem(
                ProblemKind::Altered,
                format!("{entry} (chain position {position}) was altered: its content does not match its hash"),
            ));
        }
        let first = self.entries == 0;
        if position < self.next_position || (position > self.next_position && !self.partial && !first) {
            let kind = if position < self.next_position { ProblemKind::Reordered } else { ProblemKind::Removed };
            let detail = match kind {
                ProblemKind::Reordered => format!(
                    "{entry} (chain position {position}) is out of order or duplicated: expected position {}",
                    self.next_position
                ),
                _ => format!(
                    "chain position {} is missing before {entry} (position {position}): an entry was removed or moved",
                    self.next_position
                ),
            };
            return Err(problem(kind, detail));
        }
        if position > self.next_position && !self.partial && first {
            return Err(problem(
                ProblemKind::Removed,
                format!(
                    "chain position {} is missing before {entry} (position {position}): the chain's first entries were removed or moved",
                    self.next_position
                ),
            ));
        }
        let consecutive = position == self.next_position;
        if !consecutive {
            self.gaps += 1;
        }
        if consecutive && link.prev_hash != self.prev {
            return Err(problem(
                ProblemKind::Altered,
                format!(
                    "{entry} (chain position {position}) does not link to the entry before it: that entry was altered or replaced"
                ),
            ));
        }
        if !self.partial {
            let (next, what) = match entry {
                EntryRef::Accepted(s) => (&mut self.next_sequence, s),
                EntryRef::Rejected(n) => (&mut self.next_rejection, n),
            };
            if what != *next {
                let kind = if what > *next { ProblemKind::Removed } else { ProblemKind::Reordered };
                let missing = match entry {
                    EntryRef::Accepted(_) => EntryRef::Accepted(*next),
                    EntryRef::Rejected(_) => EntryRef::Rejected(*next),
                };
                return Err(problem(
                    kind,
                    format!("{entry} (chain position {position}) follows where {missing} belongs"),
                ));
            }
            *next += 1;
        }
        if link.purged_by != 0 {
            self.purged.push((entry, link.purged_by));
        }
        self.prev = to_array(link.hash).unwrap_or(GENESIS);
        self.next_position = position + 1;
        self.entries += 1;
        match entry {
            EntryRef::Accepted(_) => self.accepted += 1,
            EntryRef::Rejected(_) => self.rejected += 1,
        }
        Ok(())
    }
}

/// The outcome of [`verify_dir`].
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// What was checked (counts, tip).
    pub walk: ChainWalk,
    /// The first problem, if any.
    pub problem: Option<Problem>,
    /// Where the journal starts after retention ([`crate::Retained::NONE`]: nothing removed).
    pub retained: crate::Retained,
    /// Every purge record: which entries were expired or erased, when, by whom, why.
    pub purges: Vec<crate::PurgeRecord>,
}

/// Walks the journal in `dir` (a stopped gateway's `<data_dir>/journal`) entry by entry,
/// straight from the stored records: it does not run the recovery that opening a
/// [`crate::Journal`] does, which could remove what it ought to report.
pub fn verify_dir(dir: &Path) -> Result<AuditReport, Error> {
    if !dir.join("db").exists() && !dir.join("conf").exists() {
        return Err(Error::Storage(sled::Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} holds no journal", dir.display()),
        ))));
    }
    let store = Store::open(&StoreConfig { dir: dir.to_owned(), cache_capacity_bytes: 16 << 20 })?;
    let retained = crate::Retained::load(&store)?;
    let purges = crate::retention::read_purges(&store)?;
    // Sealed payloads are opened to recompute their hashes; an erased case's cannot be,
    // so those entries are checked by their links and listed as purged.
    let keys = if dir.join(crate::keys::KEY_FILE).exists() { Some(crate::keys::KeyStore::open(dir)?) } else { None };
    // A sealed payload that does not decrypt was altered (the cipher authenticates it).
    let altered = |entry: EntryRef, position: u64, err: Error| Problem {
        kind: ProblemKind::Altered,
        entry: Some(entry),
        position,
        detail: format!("{entry} (chain position {position}) was altered: its sealed payload does not open ({err})"),
    };
    let open_event = |e: StoredEvent| match &keys {
        Some(keys) => {
            let (entry, position) = (EntryRef::Accepted(e.sequence), e.chain);
            keys.open_event(e).map_err(|err| altered(entry, position, err))
        }
        None => Ok(e),
    };
    let open_rejection = |r: StoredRejection| match &keys {
        Some(keys) => {
            let (entry, position) = (EntryRef::Rejected(r.number), r.chain);
            keys.open_rejection(r).map_err(|err| altered(entry, position, err))
        }
        None => Ok(r),
    };
    let mut walk = ChainWalk::retained(&retained);
    let mut events = EventRecords::from(&store, retained.first_sequence).peekable();
    let mut rejections = store.rejections.range(crate::event::seq_key(retained.first_rejection)..).map(
        |item| -> Result<StoredRejection, Problem> {
            let (key, value) = item.map_err(|e| unreadable(0, format!("rejection log: {e}")))?;
            let number = chunk_first(&key).unwrap_or(0);
            StoredRejection::decode(&value[..])
                .map_err(|e| unreadable(0, format!("rejection {number} cannot be decoded: {e}")))
        },
    );
    let mut next_rejection = rejections.next();
    loop {
        let take_event = match (events.peek(), &next_rejection) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(Err(_)), _) => true,
            (_, Some(Err(_))) => false,
            (Some(Ok(e)), Some(Ok(r))) => e.chain <= r.chain,
        };
        let checked = if take_event {
            match events.next().map(|e| e.and_then(open_event)) {
                Some(Ok(event)) => walk.check(&Link::event(&event)),
                Some(Err(problem)) => Err(problem),
                None => break,
            }
        } else {
            let current = std::mem::replace(&mut next_rejection, rejections.next());
            match current.map(|r| r.and_then(open_rejection)) {
                Some(Ok(r)) => walk.check(&Link::rejection(&r)),
                Some(Err(problem)) => Err(problem),
                None => break,
            }
        };
        if let Err(problem) = checked {
            return Ok(AuditReport { walk, problem: Some(problem), retained, purges });
        }
    }
    Ok(AuditReport { walk, problem: None, retained, purges })
}

fn unreadable(position: u64, detail: String) -> Problem {
    Problem { kind: ProblemKind::Unreadable, entry: None, position, detail }
}

/// Every accepted record of the events tree, decoded on its own (not trusting its place in
/// the chunk), in storage order.
struct EventRecords<'a> {
    chunks: sled::Iter,
    current: Vec<Result<StoredEvent, Problem>>,
    _store: &'a Store,
}

impl<'a> EventRecords<'a> {
    /// From `first` on: chunks below it are left over from an interrupted retention pass.
    fn from(store: &'a Store, first: u64) -> Self {
        EventRecords { chunks: store.events.range(crate::event::seq_key(first)..), current: Vec::new(), _store: store }
    }
}

impl Iterator for EventRecords<'_> {
    type Item = Result<StoredEvent, Problem>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.current.is_empty() {
            let (key, chunk) = match self.chunks.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(unreadable(0, format!("events: {e}")))),
            };
            let first = chunk_first(&key).unwrap_or(0);
            let mut records = Vec::new();
            for frame in Frames::new(first, &chunk) {
                match frame {
                    Ok((_, bytes)) => records.push(StoredEvent::decode(bytes).map_err(|e| {
                        unreadable(
                            0,
                            format!("a record in the chunk starting at sequence {first} cannot be decoded: {e}"),
                        )
                    })),
                    Err(e) => records.push(Err(unreadable(0, format!("chunk starting at sequence {first}: {e}")))),
                }
            }
            records.reverse();
            self.current = records;
        }
        self.current.pop()
    }
}
