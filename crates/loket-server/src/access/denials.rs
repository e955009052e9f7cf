//! The denial log as the gateway writes and partners read it: refusals (recorded before the
//! refusal is returned), redactions and withholdings.

use loket_domain::time::now_micros;
use loket_domain::{FieldViolation, PartnerId};
use loket_journal::StoredEvent;

use super::{Access, DenialRecord};
use crate::proto::timestamp::{from_micros, to_micros};
use crate::proto::{Denial, ListDenialsRequest};
use crate::Error;

/// Denials listed when the request names no limit.
const DEFAULT_DENIALS: usize = 1000;

impl DenialRecord {
    /// A record about `event` concerning `partner`; the caller fills in kind and reason.
    pub fn about(partner: &str, event: &StoredEvent) -> Self {
        Self {
            partner: partner.to_owned(),
            event_type: event.event_type.clone(),
            event_id: event.id.clone(),
            source: event.source.clone(),
            subject: event.subject.clone(),
            sequence: event.sequence,
            ..Default::default()
        }
    }
}

/// Records a refusal in the denial log when it is one that is recorded (permission, not
/// malformed input). `partner` is the caller, or what it presented when it is no partner.
/// A failure to record is logged; the caller still gets its refusal.
pub(crate) async fn record_refusal(
    access: &Access,
    kind: &str,
    partner: &str,
    error: &Error,
    id: &str,
    event_type: &str,
) {
    let Some(code) = error.denial_code() else { return };
    let record = DenialRecord {
        at_micros: now_micros(),
        partner: partner.to_owned(),
        kind: kind.to_owned(),
        event_type: event_type.to_owned(),
        event_id: id.to_owned(),
        source: partner.to_owned(),
        reason_code: code.to_owned(),
        reason: error.to_string(),
        fields: match error {
            Error::SubscribeNotGranted { types, .. } => types.clone(),
            _ => Vec::new(),
        },
        ..DenialRecord::default()
    };
    if let Err(e) = access.store.refusal(record).await {
        tracing::error!(error = %e, partner = %partner, kind, "could not record a refusal in the denial log");
    }
}

impl Access {
    /// `ListDenials`: an auditor reads everyone's denials (or one partner's), any other
    /// partner only its own refusals: not the redactions and withholdings recorded about
    /// it, which would tell it of events it may not see.
    pub async fn list_denials(&self, caller: &PartnerId, req: ListDenialsRequest) -> Result<Vec<Denial>, Error> {
        let auditor = self.policy.is_auditor(caller.as_str());
        if !auditor && !req.partner.is_empty() && req.partner != caller.as_str() {
            let e = Error::AuditNotPermitted { partner: caller.to_string(), asked: req.partner };
            record_refusal(self, "audit-refused", caller.as_str(), &e, "", "").await;
            return Err(e);
        }
        let since = match &req.since {
            None => i64::MIN,
            Some(ts) => to_micros(ts).ok_or_else(|| {
                Error::InvalidSubscription(vec![FieldViolation::new(
                    "since",
                    "must be a valid instant between years 1 and 9999",
                )])
            })?,
        };
        let filter = match (auditor, req.partner.is_empty()) {
            (true, true) => None,
            (true, false) => Some(req.partner.as_str()),
            (false, _) => Some(caller.as_str()),
        };
        let limit = if req.limit == 0 { DEFAULT_DENIALS } else { req.limit as usize };
        let denials = self.store.denials(since, filter, !auditor, limit)?;
        Ok(denials
            .into_iter()
            .map(|d| Denial {
                at: Some(from_micros(d.at_micros)),
                partner: d.partner,
                kind: d.kind,
                event_type: d.event_type,
                event_id: d.event_id,
                source: d.source,
                subject: d.subject,
                sequence: d.sequence,
                reason_code: d.reason_code,
                reason: d.reason,
                fields: d.fields,
            })
            .collect())
    }
}
