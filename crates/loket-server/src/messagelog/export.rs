//! Export: the message log's accepted and rejected entries in chain order, as the Export
//! RPC streams them and `loket export --data` writes them from a stopped gateway's journal.
//!
//! Who exports decides what: an export auditor (`[export] auditors`) gets the log as
//! stored; an integration tester (`[export] testers`) gets it pseudonymised
//! (`loket_access::Pseudonymiser`, a fresh key per export) without the payloads of medical
//! events that no recipient was given. Every export is recorded before its first entry
//! leaves and completed with the number of entries sent (`loket audit exports`).

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use loket_access::{Pseudonymiser, Step, SubscriberScan};
use loket_domain::time::now_micros;
use loket_domain::{FieldViolation, PartnerId, Profile, SPEC_VERSION};
use loket_journal::export::{Entry, Filter};
use loket_journal::Journal;
use loket_schema::Registry;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::access::{denials, Access, AccessStore, ExportRecord};
use crate::processing::{span_of, Processing, ProcessingLog};
use crate::proto::timestamp::{from_micros, to_micros};
use crate::proto::{
    export_request, CloudEvent, ExportEntry, ExportRequest, ExportViolation, ListExportsReply, ListExportsRequest,
    Outcome, Outcomes,
};
use crate::trace::next_hop;
use crate::Error;

/// Entries buffered per export stream.
const STREAM_BUFFER: usize = 256;
/// The exporter named in the record of an offline export.
pub const OFFLINE_EXPORTER: &str = "operator";

/// How an exporter sees the log.
enum Mode {
    Full,
    Pseudonymised { pseudonyms: Pseudonymiser, registry: Arc<Registry>, omitted: HashSet<u64> },
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Pseudonymised { .. } => "pseudonymised",
        }
    }

    fn entry(&self, entry: Entry, profile: &Profile) -> ExportEntry {
        match self {
            Mode::Full => export_entry(entry, profile),
            Mode::Pseudonymised { pseudonyms, registry, omitted } => {
                let omit = matches!(&entry, Entry::Accepted(e) if omitted.contains(&e.sequence));
                pseudonymise(export_entry(entry, profile), pseudonyms, registry, profile, omit)
            }
        }
    }
}

/// One exported event in the processing log: a hop of its trace, to the exporter.
fn record_export(log: &ProcessingLog, exporter: &str, event: &loket_journal::StoredEvent) {
    let started_micros = now_micros();
    let span = tracing::info_span!("export", sequence = event.sequence, id = %event.id);
    log.record(Processing {
        operation: "export",
        channel: "export",
        partner: exporter,
        event_type: &event.event_type,
        event_id: &event.id,
        sequence: event.sequence,
        subject: &event.subject,
        traceparent: &next_hop(&event.traceparent, &span),
        parent_span: span_of(&event.traceparent),
        started_micros,
    });
}

/// The Export RPC: the log entries `request` selects, as `partner` may see them.
pub(crate) async fn export(
    access: &Access,
    journal: &Journal,
    registry: &Arc<Registry>,
    partner: &PartnerId,
    request: &ExportRequest,
    shutdown: &CancellationToken,
) -> Result<ReceiverStream<Result<ExportEntry, Status>>, Error> {
    let policy = &access.policy;
    let tester = !policy.may_export(partner.as_str()) && policy.may_export_pseudonymised(partner.as_str());
    if !policy.may_export(partner.as_str()) && !tester {
        let e = Error::ExportNotAllowed { partner: partner.to_string() };
        denials::record_refusal(access, "export-refused", partner.as_str(), &e, "", "").await;
        return Err(e);
    }
    let entries = journal.entries(filter(request, &access.profile)?)?;
    let mode = if tester {
        // Which medical events some recipient was given is known once the index covers
        // everything this export can contain.
        if !access.indexed_up_to(journal.last_sequence(), shutdown).await {
            return Err(Error::ShuttingDown);
        }
        let mut key = [0u8; 32];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut key)
            .map_err(|_| Error::Access("no randomness for the export key".to_owned()))?;
        Mode::Pseudonymised {
            pseudonyms: Pseudonymiser::new(&key),
            registry: registry.clone(),
            omitted: undelivered_medical(access, registry)?,
        }
    } else {
        Mode::Full
    };
    let record = ExportRecord {
        partner: partner.to_string(),
        started_at_micros: now_micros(),
        mode: mode.name().to_owned(),
        filters: describe(request),
        state: "started".to_owned(),
        ..ExportRecord::default()
    };
    let key = access.store.export_started(&record).await?;
    tracing::info!(partner = %partner, mode = mode.name(), filters = %record.filters, "message log export started");
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let store = access.store.clone();
    let profile = access.profile.clone();
    let processing = access.processing.clone();
    let exporter = partner.to_string();
    // Reading is blocking sled work: off the async threads, throttled by the channel.
    tokio::task::spawn_blocking(move || {
        let mut sent = 0u64;
        let mut completed = true;
        for entry in entries {
            if let Ok(Entry::Accepted(event)) = &entry {
                record_export(&processing, &exporter, event);
            }
            let item = entry.map(|e| mode.entry(e, &profile)).map_err(|e| Status::from(Error::from(e)));
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                completed = false;
                break;
            }
            sent += 1;
        }
        if let Err(e) = store.export_finished(&key, sent, completed, now_micros()) {
            tracing::error!(error = %e, "could not complete the record of an export");
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// `ListExports`: an auditor (`[access] auditors`) lists every export, any other partner
/// its own.
pub(crate) fn list_exports(
    access: &Access,
    partner: &PartnerId,
    request: &ListExportsRequest,
) -> Result<ListExportsReply, Error> {
    let since = match &request.since {
        None => i64::MIN,
        Some(ts) => to_micros(ts).ok_or_else(|| {
            Error::InvalidExport(vec![FieldViolation::new("since", "must be a valid instant between years 1 and 9999")])
        })?,
    };
    let own = (!access.policy.is_auditor(partner.as_str())).then_some(partner.as_str());
    let exports = access.store.exports(since.max(0), own)?;
    Ok(ListExportsReply {
        exports: exports
            .into_iter()
            .map(|r| crate::proto::ExportRecord {
                partner: r.partner,
                started_at: Some(from_micros(r.started_at_micros)),
                mode: r.mode,
                filters: r.filters,
                entries: r.entries,
                state: r.state,
                finished_at: r.finished_at_micros.map(from_micros),
            })
            .collect(),
    })
}

/// The record of an offline export (`loket export --data`, by whoever can read a stopped
/// gateway's data directory): kept in that directory's access store like any other.
pub struct OfflineExport {
    store: AccessStore,
    key: Vec<u8>,
}

impl OfflineExport {
    /// Records the start of an offline export of `data_dir`, durably.
    pub async fn start(data_dir: &Path, request: &ExportRequest) -> Result<Self, Error> {
        let store = AccessStore::open(&data_dir.join("access"), 1 << 20, None)?;
        let record = ExportRecord {
            partner: OFFLINE_EXPORTER.to_owned(),
            started_at_micros: now_micros(),
            mode: "full".to_owned(),
            filters: describe(request),
            state: "started".to_owned(),
            ..ExportRecord::default()
        };
        let key = store.export_started(&record).await?;
        Ok(Self { store, key })
    }

    /// Completes the record with the entries written.
    pub fn finish(self, entries: u64, completed: bool) -> Result<(), Error> {
        self.store.export_finished(&self.key, entries, completed, now_micros())?;
        self.store.flush()
    }
}

/// The filters of a request, as the export record keeps them.
fn describe(request: &ExportRequest) -> String {
    let mut parts = vec![format!(
        "outcomes={}",
        Outcomes::try_from(request.outcomes).map_or("?", |o| o.as_str_name()).trim_start_matches("OUTCOMES_")
    )];
    match &request.from {
        Some(export_request::From::FromSequence(s)) => parts.push(format!("from={s}")),
        Some(export_request::From::FromTime(t)) => parts.push(format!("from={}s", t.seconds)),
        None => {}
    }
    match &request.to {
        Some(export_request::To::ToSequence(s)) => parts.push(format!("to={s}")),
        Some(export_request::To::ToTime(t)) => parts.push(format!("to={}s", t.seconds)),
        None => {}
    }
    for (name, list) in [("types", &request.types), ("sources", &request.sources), ("cases", &request.subjects)] {
        if !list.is_empty() {
            parts.push(format!("{name}={}", list.join(",")));
        }
    }
    parts.join(" ")
}

/// The accepted medical events no recipient other than their publisher was given (still
/// withheld, or never addressed to a subscriber): their payloads stay out of a tester's
/// export. Replays every medical recipient's scan over the access index.
fn undelivered_medical(access: &Access, registry: &Registry) -> Result<HashSet<u64>, Error> {
    let policy = &access.policy;
    let mut medical = HashSet::new();
    let mut given = HashSet::new();
    let partners: BTreeSet<String> =
        registry.event_types().filter(|t| policy.may_be_medical(t)).flat_map(|t| policy.recipients_of(t)).collect();
    let mut scans: Vec<SubscriberScan> =
        partners.into_iter().map(|p| SubscriberScan::new(p, BTreeSet::new())).collect();
    for entry in access.store.all() {
        let entry = entry?;
        let facts = entry.facts();
        if policy.may_be_medical(&entry.event_type) && policy.is_medical(&entry.event_type, &entry.data) {
            medical.insert(entry.sequence);
        }
        for scan in &mut scans {
            let (step, released) = scan.step(policy, &facts);
            if matches!(step, Step::Deliver { .. }) && scan.partner() != entry.source {
                given.insert(entry.sequence);
            }
            given.extend(released);
        }
    }
    Ok(medical.difference(&given).copied().collect())
}

/// An entry as a tester sees it: the case and free text pseudonymised in the payload and
/// wherever they are repeated (id, subject, message, violations); the chain hashes left
/// out (they no longer match); the payload left out when `omit`.
fn pseudonymise(
    mut entry: ExportEntry,
    pseudonyms: &Pseudonymiser,
    registry: &Registry,
    profile: &Profile,
    omit: bool,
) -> ExportEntry {
    let mut event = entry.event.take().unwrap_or_default();
    let dataschema = Some(event.dataschema.as_str()).filter(|d| !d.is_empty());
    let schema = registry
        .resolve(profile.short_type(&event.r#type), dataschema)
        .map(|s| s.document().clone())
        .unwrap_or(Value::Null);
    let mut replaced = vec![(event.subject.clone(), pseudonyms.case(&event.subject))];
    if omit {
        event.data.clear();
    } else {
        match serde_json::from_slice::<Value>(&event.data) {
            Ok(data) => {
                let out = pseudonyms.payload(&event.subject, &data, &schema);
                event.data = serde_json::to_vec(&out.data).unwrap_or_default();
                replaced.extend(out.replaced);
            }
            // Not JSON (a refused payload): letters of the same length, still not JSON.
            Err(_) => event.data = pseudonyms.text(&String::from_utf8_lossy(&event.data)).into_bytes(),
        }
    }
    // Longest originals first: one that contains a shorter one is replaced whole.
    replaced.sort_by_key(|(original, _)| std::cmp::Reverse(original.len()));
    event.subject = pseudonyms.case(&event.subject);
    event.id = Pseudonymiser::scrub(&event.id, &replaced);
    // A publisher's extension (a `dataref` URL, say) may name the case too.
    for value in event.extensions.values_mut() {
        *value = Pseudonymiser::scrub(value, &replaced);
    }
    entry.message = Pseudonymiser::scrub(&entry.message, &replaced);
    for v in &mut entry.violations {
        v.description = Pseudonymiser::scrub(&v.description, &replaced);
    }
    entry.event = Some(event);
    entry.prev_hash.clear();
    entry.hash.clear();
    entry.data_sha256.clear();
    entry.pseudonymised = true;
    entry.omitted = omit;
    entry
}

/// The journal filter of an Export request; every problem at once.
pub fn filter(request: &ExportRequest, profile: &Profile) -> Result<Filter, Error> {
    let mut problems = Vec::new();
    let mut filter = Filter {
        // The journal stores short types; the reverse-DNS name is an alias.
        types: request.types.iter().map(|t| profile.short_type(t).to_owned()).collect(),
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

/// One log entry as the Export RPC sends it, an accepted event in the `profile`'s names
/// with the trace context it was stored with (so the line's record hashes as stored).
/// Public so that the offline export of a stopped gateway's journal produces exactly what
/// the RPC would.
pub fn export_entry(entry: Entry, profile: &Profile) -> ExportEntry {
    match entry {
        Entry::Accepted(mut e) => ExportEntry {
            outcome: Outcome::Accepted as i32,
            sequence: e.sequence,
            received_at: Some(from_micros(e.received_at_micros)),
            completeness: e.completeness,
            missing_expected: std::mem::take(&mut e.missing_expected),
            schema_version: e.schema_version,
            purged_by: e.purged_by,
            chain: e.chain,
            prev_hash: std::mem::take(&mut e.prev_hash),
            hash: std::mem::take(&mut e.hash),
            caller: e.source.clone(),
            event: Some({
                let data = std::mem::take(&mut e.data);
                CloudEvent::stored(e, data, profile, String::new())
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
                extensions: Default::default(),
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
            data_size: r.data_size,
            data_sha256: r.data_sha256,
            purged_by: r.purged_by,
            ..ExportEntry::default()
        },
    }
}
