//! Reading the whole message log, accepted and rejected entries merged in chain order,
//! with the filters of `loket export`. Used by the gateway's Export RPC and by the offline
//! export of a stopped gateway's data directory, so that both give the same entries.

use std::collections::VecDeque;

use crate::event::{StoredEvent, StoredRejection};
use crate::{Error, Journal};

/// Entries read per step from each log: bounded memory whatever the log's size.
const READ_CHUNK: usize = 256;

/// One entry of the message log.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// An accepted event.
    Accepted(StoredEvent),
    /// A refused publish.
    Rejected(StoredRejection),
}

impl Entry {
    /// Position in the hash chain.
    pub fn chain(&self) -> u64 {
        match self {
            Entry::Accepted(e) => e.chain,
            Entry::Rejected(r) => r.chain,
        }
    }
}

/// Which entries to export. Bounds are inclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// First accepted sequence. A rejection counts as sitting just before the next
    /// accepted sequence (the one after the events accepted before it).
    pub from_sequence: Option<u64>,
    /// Last accepted sequence (same rule for rejections).
    pub to_sequence: Option<u64>,
    /// Received at or after (Unix µs).
    pub from_micros: Option<i64>,
    /// Received at or before (Unix µs).
    pub to_micros: Option<i64>,
    /// Event types; empty means all.
    pub types: Vec<String>,
    /// Sources; empty means all.
    pub sources: Vec<String>,
    /// Cases (subjects); empty means all.
    pub subjects: Vec<String>,
    /// Include accepted events.
    pub accepted: bool,
    /// Include rejections.
    pub rejected: bool,
}

impl Filter {
    fn matches_common(&self, event_type: &str, source: &str, subject: &str, received_at: i64) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == event_type))
            && (self.sources.is_empty() || self.sources.iter().any(|s| s == source))
            && (self.subjects.is_empty() || self.subjects.iter().any(|s| s == subject))
            && self.from_micros.is_none_or(|m| received_at >= m)
            && self.to_micros.is_none_or(|m| received_at <= m)
    }

    fn in_sequence_range(&self, sequence: u64) -> bool {
        self.from_sequence.is_none_or(|f| sequence >= f) && self.to_sequence.is_none_or(|t| sequence <= t)
    }

    /// Whether an entry passes.
    pub fn matches(&self, entry: &Entry) -> bool {
        match entry {
            Entry::Accepted(e) => {
                self.accepted
                    && self.in_sequence_range(e.sequence)
                    && self.matches_common(&e.event_type, &e.source, &e.subject, e.received_at_micros)
            }
            Entry::Rejected(r) => {
                // chain = accepted before it + its own number, the chain being dense.
                let next_sequence = r.chain.saturating_sub(r.number) + 1;
                self.rejected
                    && self.in_sequence_range(next_sequence)
                    && self.matches_common(&r.event_type, &r.source, &r.subject, r.received_at_micros)
            }
        }
    }
}

/// The entries passing `filter`, in chain order, up to what was durable when it started.
pub struct Entries {
    journal: Journal,
    filter: Filter,
    next_sequence: u64,
    last_sequence: u64,
    next_rejection: u64,
    last_rejection: u64,
    events: VecDeque<StoredEvent>,
    rejections: VecDeque<StoredRejection>,
}

impl Journal {
    /// A snapshot export of the message log: the entries durable now that pass `filter`.
    pub fn entries(&self, filter: Filter) -> Result<Entries, Error> {
        let last_sequence = self.last_sequence();
        let mut next_sequence = 1;
        if let Some(from) = filter.from_sequence {
            next_sequence = from.max(1);
        }
        if let Some(micros) = filter.from_micros {
            next_sequence = next_sequence.max(self.first_sequence_at_or_after(micros)?);
        }
        Ok(Entries {
            journal: self.clone(),
            next_sequence: if filter.accepted { next_sequence } else { last_sequence + 1 },
            last_sequence: filter.to_sequence.map_or(last_sequence, |t| t.min(last_sequence)),
            next_rejection: if filter.rejected { 1 } else { u64::MAX },
            last_rejection: self.last_rejection(),
            filter,
            events: VecDeque::new(),
            rejections: VecDeque::new(),
        })
    }
}

impl Entries {
    fn refill(&mut self) -> Result<(), Error> {
        if self.events.is_empty() && self.next_sequence <= self.last_sequence {
            let max = ((self.last_sequence - self.next_sequence + 1) as usize).min(READ_CHUNK);
            let batch = self.journal.read_from(self.next_sequence, max)?;
            // By the last one read: a start before the retained range reads from its start.
            self.next_sequence = batch.last().map_or(self.last_sequence + 1, |e| e.sequence + 1);
            self.events.extend(batch);
        }
        if self.rejections.is_empty() && self.next_rejection <= self.last_rejection {
            let batch = self.journal.read_rejections_from(self.next_rejection, READ_CHUNK)?;
            self.next_rejection = batch.last().map_or(self.last_rejection + 1, |r| r.number + 1);
            self.rejections.extend(batch.into_iter().filter(|r| r.number <= self.last_rejection));
        }
        Ok(())
    }

    fn next_unfiltered(&mut self) -> Result<Option<Entry>, Error> {
        self.refill()?;
        let take_event = match (self.events.front(), self.rejections.front()) {
            (None, None) => return Ok(None),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(e), Some(r)) => e.chain <= r.chain,
        };
        Ok(if take_event {
            self.events.pop_front().map(Entry::Accepted)
        } else {
            self.rejections.pop_front().map(Entry::Rejected)
        })
    }
}

impl Iterator for Entries {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_unfiltered() {
                Ok(Some(entry)) if self.filter.matches(&entry) => return Some(Ok(entry)),
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
