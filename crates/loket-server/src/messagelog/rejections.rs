//! The rejection log: refused publishes journalled with the refusal their publisher got.

use std::future::Future;

use loket_domain::PartnerId;
use loket_journal::{Journal, NewRejection, Violation};

use crate::proto::timestamp::to_micros;
use crate::proto::CloudEvent;
use crate::Error;

/// Journals a refused publish with its refusal (reason, message and violations exactly as
/// the publisher hears them), enqueued now; the future resolves once it is durable, with
/// the next group commit (the publish path answers after it, within the partner's
/// in-flight quota, so refusals are back-pressured like accepted events). Only verdicts on the event are recorded
/// (invalid, not permitted): not an unauthenticated caller or an unavailable journal;
/// conflicts (`ALREADY_EXISTS`) are journalled by the journal's writer, which detects them.
pub(crate) fn record_rejection(
    journal: &Journal,
    caller: &PartnerId,
    event: Option<&CloudEvent>,
    refusal: &Error,
) -> Option<impl Future<Output = Result<u64, loket_journal::Error>> + Send + 'static> {
    if !refusal.is_verdict() {
        return None;
    }
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
        data: if matches!(refusal, Error::PayloadTooLarge { .. }) { Vec::new() } else { event.data.clone() },
        reason: refusal.reason().to_owned(),
        message: refusal.to_string(),
        violations: refusal
            .violations()
            .into_iter()
            .map(|v| Violation { field: v.field, description: v.description })
            .collect(),
    };
    Some(journal.reject(rejection))
}
