//! The message log as partners see it: rejected publishes journaled with their reasons,
//! and the Export view of accepted and rejected entries.

use loket_domain::{FieldViolation, PartnerId};
use loket_journal::export::{Entry, Filter};
use loket_journal::{Journal, NewRejection, Violation};
use tonic::Code;
use tonic_types::StatusExt;

use crate::intake::SPEC_VERSION;
use crate::proto::{export_request, CloudEvent, ExportEntry, ExportRequest, ExportViolation, Outcome, Outcomes};
use crate::timestamp::{from_micros, to_micros};
use crate::Error;

/// Journals a refused publish with the status its publisher got (reason and violations as
/// `error.rs` mapped them, so the log says exactly what the publisher heard). The future is
/// not awaited: the refusal is answered at once and becomes durable with the next group
/// commit. Only verdicts on the event are recorded (invalid, not permitted): not an
/// unauthenticated caller or an unavailable journal; conflicts (`ALREADY_EXISTS`) are
/// journaled by the journal's writer, which detects them.
pub(crate) fn record_rejection(
    journal: &Journal,
    caller: &PartnerId,
    event: Option<&CloudEvent>,
    status: &tonic::Status,
) {
    if !matches!(status.code(), Code::InvalidArgument | Code::PermissionDenied | Code::FailedPrecondition) {
        return;
    }
    let details = status.get_error_details();
    let violations = details
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| Violation { field: v.field.clone(), description: v.description.clone() })
                .collect()
        })
        .unwrap_or_default();
    let reason = details.error_info().map(|i| i.reason.clone()).unwrap_or_default();
    let empty = CloudEvent::default();
    let event = event.unwrap_or(&empty);
    let rejection = NewRejection {
        source: event.source.clone(),
        caller: caller.to_string(),
        id: event.id.clone(),
        event_type: event.r#type.clone(),
        subject: event.subject.clone(),
        time_micros: event.time.as_ref().and_then(to_micros),
        dataschema: event.dataschema.clone(),
        datacontenttype: event.datacontenttype.clone(),
        // An oversized payload is not kept: the log would take what the limit refused.
        data: if reason == "PAYLOAD_TOO_LARGE" { Vec::new() } else { event.data.clone() },
        reason,
        message: status.message().to_owned(),
        violations,
    };
    drop(journal.reject(rejection));
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
        Entry::Accepted(e) => ExportEntry {
            event: Some(CloudEvent {
                id: e.id,
                source: e.source,
                r#type: e.event_type,
                subject: e.subject,
                time: e.time_micros.map(from_micros),
                dataschema: e.dataschema,
                datacontenttype: e.datacontenttype,
                data: e.data,
                specversion: SPEC_VERSION.to_owned(),
            }),
            outcome: Outcome::Accepted as i32,
            sequence: e.sequence,
            received_at: Some(from_micros(e.received_at_micros)),
            completeness: e.completeness,
            missing_expected: e.missing_expected,
            schema_version: e.schema_version,
            chain: e.chain,
            prev_hash: e.prev_hash,
            hash: e.hash,
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
