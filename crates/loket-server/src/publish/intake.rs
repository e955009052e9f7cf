//! The publish path's checks, in the order a publisher would want to hear about them:
//! envelope, identity, type and publish grant, size, schema, payload. Pure CPU work: nothing here touches the
//! journal.

use std::sync::Arc;

use loket_access::{Policy, CONSENT_TYPE};
use loket_domain::profile::{check_extensions, TRACEPARENT, TRACESTATE};
use loket_domain::trace::valid_tracestate;
use loket_domain::{
    CaseId, FieldViolation, PartnerId, Profile, TraceParent, GATEWAY_TYPES, JSON_CONTENT_TYPE as JSON, SPEC_VERSION,
};
use loket_journal::NewEvent;
use loket_quality::{RuleSet, Severity};
use loket_schema::Registry;
use serde_json::Value;

use crate::access::ConsentClaims;
use crate::proto::timestamp::to_micros;
use crate::proto::CloudEvent;
use crate::trace::{continue_trace, CallTrace};
use crate::Error;

/// Longest accepted `id`; CloudEvents sets no limit, but an id is a key, not a document.
const MAX_ID_LEN: usize = 256;

#[derive(Clone)]
pub(crate) struct Intake {
    pub registry: Arc<Registry>,
    pub policy: Arc<Policy>,
    pub rules: Arc<RuleSet>,
    pub max_event_bytes: usize,
    /// Who registered each consent form.
    pub claims: ConsentClaims,
    /// The envelope's outside names: type aliases, partners' source URNs.
    pub profile: Arc<Profile>,
}

/// An event that passed every check, ready for the journal.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub event: NewEvent,
    /// The schema's expected fields, for the quality figures.
    pub expected: Vec<String>,
    /// The `flag` rules it failed.
    pub flagged: Vec<String>,
    /// The publisher's span the intake continued (hex; empty when it sent no trace).
    pub publisher_span: String,
}

impl Intake {
    /// Checks one event from `caller` and turns it into a journal entry, or says every
    /// reason it cannot be accepted.
    /// `span` is the intake's span: it continues the publisher's trace.
    pub fn admit(
        &self,
        caller: &PartnerId,
        event: Option<&CloudEvent>,
        call: &CallTrace,
        span: &tracing::Span,
    ) -> Result<Admitted, Error> {
        let event = event.ok_or_else(|| {
            Error::InvalidEnvelope(vec![FieldViolation::attribute("event", "the request carries no event")])
        })?;
        let (time_micros, trace) = check_envelope(event, call, span)?;
        if !self.profile.is_source_of(&event.source, caller.as_str()) {
            return Err(Error::SourceMismatch { identity: caller.to_string(), claimed: event.source.clone() });
        }
        // The journal, the policy and the schemas speak short types; the canonical
        // reverse-DNS name is an alias of it on input.
        let event_type = self.profile.short_type(&event.r#type);
        // An unknown type is a mistake to hear about before a missing grant for it.
        let schema = self.registry.resolve(event_type, Some(event.dataschema.as_str()))?;
        if let Some(reserved) = GATEWAY_TYPES.iter().find(|t| **t == event_type) {
            return Err(Error::ReservedType(reserved));
        }
        if !self.policy.may_publish(caller.as_str(), event_type) {
            return Err(Error::PublishNotGranted { partner: caller.to_string(), event_type: event_type.to_owned() });
        }
        let consent = event_type == CONSENT_TYPE;
        if consent && !self.policy.is_consent_registrar(caller.as_str()) {
            return Err(Error::NotAConsentRegistrar { partner: caller.to_string() });
        }
        if event.data.len() > self.max_event_bytes {
            return Err(Error::PayloadTooLarge { size: event.data.len(), limit: self.max_event_bytes });
        }
        let data: Value = serde_json::from_slice(&event.data).map_err(|e| Error::MalformedJson(e.to_string()))?;
        if !data.is_object() {
            return Err(Error::NotAnObject(json_kind(&data)));
        }

        let mut violations = Vec::new();
        let completeness = match schema.check(&data) {
            Ok(c) => Some(c),
            Err(v) => {
                violations = v;
                None
            }
        };
        let v_number = data.get("vNumber").and_then(Value::as_str);
        let subject = if event.subject.is_empty() {
            v_number.unwrap_or_default().to_owned()
        } else {
            if let Some(v) = v_number.filter(|v| *v != event.subject) {
                violations.push(FieldViolation::new(
                    "/vNumber",
                    format!("{v:?} differs from the event subject {:?}", event.subject),
                ));
            }
            event.subject.clone()
        };
        let Some(completeness) = completeness.filter(|_| violations.is_empty()) else {
            violations.sort();
            return Err(Error::SchemaViolation { dataschema: schema.id().to_owned(), violations });
        };

        // Quality rules only see data the schema accepted, so they may rely on its shape.
        let (rejected, flagged): (Vec<_>, Vec<_>) =
            self.rules.evaluate(event_type, &data).into_iter().partition(|f| f.severity == Severity::Reject);
        if !rejected.is_empty() {
            return Err(Error::RuleViolation { dataschema: schema.id().to_owned(), rules: rejected });
        }
        // Last, so that only a form about to be journalled claims its id.
        if let Some(id) = data.get("consentId").and_then(Value::as_str).filter(|_| consent) {
            self.claims.claim(id, caller.as_str()).map_err(|owner| Error::ConsentNotOwned {
                partner: caller.to_string(),
                consent_id: id.to_owned(),
                owner,
            })?;
        }
        let extensions = event
            .extensions
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), TRACEPARENT | TRACESTATE))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let event = NewEvent {
            source: caller.to_string(),
            id: event.id.clone(),
            event_type: event_type.to_owned(),
            schema_version: schema.version(),
            dataschema: schema.id().to_owned(),
            subject,
            time_micros,
            datacontenttype: JSON.to_owned(),
            // Stored re-serialised so that a resend with other whitespace or key order is
            // recognised as the same event.
            data: serde_json::to_vec(&data).map_err(|e| Error::MalformedJson(e.to_string()))?,
            completeness: completeness.score,
            missing_expected: completeness.missing,
            extensions,
            traceparent: trace.parent.to_string(),
            tracestate: trace.state.clone().unwrap_or_default(),
        };
        Ok(Admitted {
            event,
            expected: schema.expected().to_vec(),
            flagged: flagged.into_iter().map(|f| f.name).collect(),
            publisher_span: trace.publisher_span.unwrap_or_default(),
        })
    }
}

/// The trace an admitted event is stored with: the intake's span under the publisher's
/// trace (or a new one), and the publisher's `tracestate`.
struct Trace {
    parent: TraceParent,
    state: Option<String>,
    /// The publisher's span id, hex.
    publisher_span: Option<String>,
}

/// The event's trace context: its `traceparent`/`tracestate` extensions, else the call's
/// metadata. A malformed extension is the publisher's mistake to hear about; a malformed
/// header was already ignored.
fn trace_of(event: &CloudEvent, call: &CallTrace, span: &tracing::Span, problems: &mut Vec<FieldViolation>) -> Trace {
    let extension = |name: &str| event.extensions.get(name).map(String::as_str);
    let (parent, state) = match extension(TRACEPARENT) {
        Some(text) => {
            let parent = TraceParent::parse(text);
            if parent.is_none() {
                problems.push(FieldViolation::attribute(
                    "extensions.traceparent",
                    "must be a W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero",
                ));
            }
            (parent, extension(TRACESTATE).map(str::to_owned))
        }
        None => (call.parent, call.state.clone()),
    };
    if let Some(state) = state.as_deref().filter(|s| !valid_tracestate(s)) {
        problems.push(FieldViolation::attribute(
            "extensions.tracestate",
            format!("{state:?} is not a W3C tracestate: at most 32 key=value members, 512 characters"),
        ));
    }
    Trace { parent: continue_trace(span, parent), state, publisher_span: parent.map(|p| p.span_id_hex()) }
}

/// Every envelope problem at once; returns the event time in microseconds when valid, and
/// the trace the event continues.
fn check_envelope(event: &CloudEvent, call: &CallTrace, span: &tracing::Span) -> Result<(Option<i64>, Trace), Error> {
    let mut problems = check_extensions(event.extensions.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let trace = trace_of(event, call, span, &mut problems);
    if event.id.is_empty() {
        problems.push(FieldViolation::attribute("id", "is required"));
    } else if event.id.len() > MAX_ID_LEN || event.id.chars().any(char::is_control) {
        problems.push(FieldViolation::attribute(
            "id",
            format!("must be at most {MAX_ID_LEN} bytes without control characters"),
        ));
    }
    if event.source.is_empty() {
        problems.push(FieldViolation::attribute("source", "is required (the publishing partner)"));
    }
    if event.r#type.is_empty() {
        problems.push(FieldViolation::attribute("type", "is required (see ListSchemas)"));
    }
    if !event.subject.is_empty() && event.subject.parse::<CaseId>().is_err() {
        problems.push(FieldViolation::attribute("subject", "must be the case's V-number: exactly 10 digits"));
    }
    if !matches!(event.specversion.as_str(), "" | SPEC_VERSION) {
        problems.push(FieldViolation::attribute("specversion", format!("must be {SPEC_VERSION}")));
    }
    let content_type = event.datacontenttype.split(';').next().unwrap_or_default().trim();
    if !event.datacontenttype.is_empty() && !content_type.eq_ignore_ascii_case(JSON) {
        problems.push(FieldViolation::attribute("datacontenttype", format!("must be {JSON}")));
    }
    if event.data.is_empty() {
        problems.push(FieldViolation::attribute("data", "is required (a JSON object)"));
    }
    let time = match &event.time {
        None => None,
        Some(ts) => match to_micros(ts) {
            Some(m) => Some(m),
            None => {
                problems.push(FieldViolation::attribute("time", "must be a valid instant between years 1 and 9999"));
                None
            }
        },
    };
    if problems.is_empty() {
        Ok((time, trace))
    } else {
        Err(Error::InvalidEnvelope(problems))
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
