//! Export: the message log's accepted and rejected entries in chain order, as the Export
//! RPC streams them and `loket export --data` writes them from a stopped gateway's journal.

use loket_domain::{FieldViolation, PartnerId, SPEC_VERSION};
use loket_journal::export::{Entry, Filter};
use loket_journal::Journal;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::access::Access;
use crate::proto::timestamp::{from_micros, to_micros};
use crate::proto::{export_request, CloudEvent, ExportEntry, ExportRequest, ExportViolation, Outcome, Outcomes};
use crate::Error;

/// Entries buffered per export stream.
const STREAM_BUFFER: usize = 256;

/// The Export RPC: the log entries `request` selects, if `partner` may export.
pub(crate) fn export(
    access: &Access,
    journal: &Journal,
    partner: &PartnerId,
    request: &ExportRequest,
) -> Result<ReceiverStream<Result<ExportEntry, Status>>, Error> {
    if !access.policy.may_export(partner.as_str()) {
        return Err(Error::ExportNotAllowed { partner: partner.to_string() });
    }
    let entries = journal.entries(filter(request)?)?;
    tracing::info!(partner = %partner, "message log export started");
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    // Reading is blocking sled work: off the async threads, throttled by the channel.
    tokio::task::spawn_blocking(move || {
        for entry in entries {
            let item = entry.map(export_entry).map_err(|e| Status::from(Error::from(e)));
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// The journal filter of an Export request; every problem at once.
pub fn filter(request: &ExportRequest) -> Result<Filter, Error> {
    let mut problems = Vec::new();
    let mut filter = Filter {
        types: request.types.clone(),
        sources: request.sources.clone(),
        subjects: request.subjects.clone(),
        ..Filter::default()
    };
    match &request.from {
        None => {}
        Some(export_request::From::FromSequence(s)) => filter.from_sequence = Some(*s),
        Some(export_request::From::FromTime(t)) => match to_micros(t) {
            Some(m) => filter.from_micros = Some(m),
            None => problems.push(FieldViolation::new("from_time", "must be a valid instant between years 1 and 9999")),
        },
    }
    match &request.to {
        None => {}
        Some(export_request::To::ToSequence(s)) => filter.to_sequence = Some(*s),
        Some(export_request::To::ToTime(t)) => match to_micros(t) {
            Some(m) => filter.to_micros = Some(m),
            None => problems.push(FieldViolation::new("to_time", "must be a valid instant between years 1 and 9999")),
        },
    }
    match Outcomes::try_from(request.outcomes) {
        Ok(Outcomes::Accepted) => filter.accepted = true,
        Ok(Outcomes::Rejected) => filter.rejected = true,
        Ok(Outcomes::All) => (filter.accepted, filter.rejected) = (true, true),
        Err(_) => problems.push(FieldViolation::new("outcomes", "must be ACCEPTED, REJECTED or ALL")),
    }
    if problems.is_empty() {
        Ok(filter)
    } else {
        Err(Error::InvalidExport(problems))
    }
}

/// One log entry as the Export RPC sends it. Public so that the offline export of a
/// stopped gateway's journal produces exactly what the RPC would.
pub fn export_entry(entry: Entry) -> ExportEntry {
    match entry {
        Entry::Accepted(mut e) => ExportEntry {
            outcome: Outcome::Accepted as i32,
            sequence: e.sequence,
            received_at: Some(from_micros(e.received_at_micros)),
            completeness: e.completeness,
            missing_expected: std::mem::take(&mut e.missing_expected),
            schema_version: e.schema_version,
            chain: e.chain,
            prev_hash: std::mem::take(&mut e.prev_hash),
            hash: std::mem::take(&mut e.hash),
            event: Some({
                let data = std::mem::take(&mut e.data);
                CloudEvent::stored(e, data)
            }),
            ..ExportEntry::default()
        },
        Entry::Rejected(r) => ExportEntry {
            event: Some(CloudEvent {
                id: r.id,
                source: r.source,
                r#type: r.event_type,
                subject: r.subject,
                time: r.time_micros.map(from_micros),
                dataschema: r.dataschema,
                datacontenttype: r.datacontenttype,
                data: r.data,
                specversion: SPEC_VERSION.to_owned(),
            }),
            outcome: Outcome::Rejected as i32,
            rejection: r.number,
            received_at: Some(from_micros(r.received_at_micros)),
            reason: r.reason,
            message: r.message,
            violations: r
                .violations
                .into_iter()
                .map(|v| ExportViolation { field: v.field, description: v.description })
                .collect(),
            caller: r.caller,
            chain: r.chain,
            prev_hash: r.prev_hash,
            hash: r.hash,
            ..ExportEntry::default()
        },
    }
}
