//! Erasure notices as subscribers see them: the gateway journals a `case-erasure` event
//! (source `loket`) after an EraseCase, listing the erased sequences; each subscriber gets,
//! at the notice's place in the stream, a tombstone per erased event of a type it
//! receives (attributes only, no data). The Kafka relay turns the same tombstones into
//! null-value records with the event's key, so compacted delivery topics drop the event.

use loket_access::{Need, SubscriberScan};
use loket_domain::{ERASURE_TYPE, GATEWAY_SOURCE};
use loket_journal::StoredEvent;
use serde::{Deserialize, Serialize};

use super::{Viewed, Viewer};
use crate::Error;

/// The notice's payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErasureNotice {
    /// The erasure (purge) record.
    pub erasure: u64,
    /// The erased events.
    pub sequences: Vec<u64>,
}

pub(crate) fn is_notice(event: &StoredEvent) -> bool {
    event.source == GATEWAY_SOURCE && event.event_type == ERASURE_TYPE
}

impl Viewer {
    /// The tombstones a notice makes for the subscriber of `scan`, all at the notice's
    /// position (so an ack of it covers them).
    pub(super) fn tombstones(&self, scan: &mut SubscriberScan, notice: &StoredEvent) -> Result<Vec<Viewed>, Error> {
        let parsed: ErasureNotice = serde_json::from_slice(&notice.data)
            .map_err(|e| Error::Access(format!("erasure notice {} is unreadable: {e}", notice.sequence)))?;
        let mut out = Vec::new();
        for sequence in parsed.sequences {
            let Some(erased) = self.journal.get(sequence)? else { continue };
            if scan.need(&self.access.policy, &erased.event_type) == Need::Skip {
                continue;
            }
            let event = StoredEvent { data: Vec::new(), ..erased };
            out.push(Viewed {
                event,
                redacted: Vec::new(),
                released: false,
                position: notice.sequence,
                tombstone: true,
            });
        }
        Ok(out)
    }
}
