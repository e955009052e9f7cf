//! Idempotency by (source, id): whether an id index hit is the original of an event, and
//! the rejection an id conflict is journalled as.

use super::*;

/// Decides whether the index hit `sequence` for `event` is the original of it. The id index
/// is only a hint: a hit counts only if the event at that sequence is committed (or earlier
/// in this batch) and really has this (source, id). A stale entry (its event lost in a
/// crash, truncated after a failed batch, or a claim whose event was never written)
/// therefore never yields `duplicate = true`; the caller simply takes it over. So does an
/// original received before `window_start` (the dedup window, Unix µs): after the window
/// the same (source, id) is a new event.
pub(super) fn verify(
    shared: &crate::Shared,
    sequence: u64,
    event: &NewEvent,
    base: u64,
    next: u64,
    written: &[StoredEvent],
    window_start: Option<i64>,
) -> Result<Option<Outcome>, Error> {
    let verdict = |original: &StoredEvent, in_batch: Option<usize>| {
        if original.source != event.source || original.id != event.id {
            None
        } else if !original.same_content(event) {
            Some(Outcome::Conflict { publisher: event.source.clone(), id: event.id.clone(), sequence })
        } else if let Some(i) = in_batch {
            Some(Outcome::DuplicateInBatch(i))
        } else {
            Some(Outcome::Duplicate(original.appended(true)))
        }
    };
    if sequence >= base && sequence < next {
        let i = (sequence - base) as usize;
        return Ok(verdict(&written[i], Some(i)));
    }
    if sequence >= 1 && sequence < base {
        if let Some(original) = shared.store()?.read_event(sequence)? {
            // An erased original no longer says what it was: the id is free again.
            let original = shared.open_event(original)?;
            if original.purged_by != 0 || window_start.is_some_and(|start| original.received_at_micros < start) {
                return Ok(None);
            }
            return Ok(verdict(&original, None));
        }
    }
    Ok(None)
}

pub(super) fn conflict_rejection(event: NewEvent, sequence: u64) -> NewRejection {
    NewRejection {
        message: format!(
            "event id {:?} was already used by {:?} for different content (sequence {sequence})",
            event.id, event.source
        ),
        caller: event.source.clone(),
        source: event.source,
        id: event.id,
        event_type: event.event_type,
        subject: event.subject,
        time_micros: event.time_micros,
        dataschema: event.dataschema,
        datacontenttype: event.datacontenttype,
        data: event.data,
        reason: "ID_CONFLICT".to_owned(),
        violations: Vec::new(),
    }
}
