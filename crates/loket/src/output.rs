//! What client commands print: JSON for machines on stdout, explanations on stderr.

use std::process::ExitCode;

use loket_messagelog::timestamp::rfc3339;
use loket_server::proto::{Delivery, PublishReply};
use serde_json::{json, Map, Value};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::EXIT_REJECTED;

pub fn publish_reply(id: &str, reply: &PublishReply) -> Value {
    json!({
        "id": id,
        "sequence": reply.sequence,
        "duplicate": reply.duplicate,
        "completeness": reply.completeness,
        "missingExpected": reply.missing_expected,
        "flaggedRules": reply.flagged_rules,
        "dataschema": reply.dataschema,
        "receivedAt": reply.received_at.as_ref().map(rfc3339),
    })
}

/// A delivery as a structured-mode CloudEvent in the NL GOV profile's names. loket's own
/// facts travel as extension attributes, whose values CloudEvents limits to strings,
/// integers and booleans: the event's extensions as delivered (the publisher's, and
/// `sequence` as 20 zero-padded digits with `sequencetype`, `receivedat`, `traceparent`),
/// then the delivery's.
pub fn cloud_event(delivery: &Delivery) -> Value {
    let mut out = Map::new();
    if let Some(e) = &delivery.event {
        out.insert("specversion".into(), json!(e.specversion));
        out.insert("id".into(), json!(e.id));
        out.insert("source".into(), json!(e.source));
        out.insert("type".into(), json!(e.r#type));
        out.insert("subject".into(), json!(e.subject));
        if let Some(t) = &e.time {
            out.insert("time".into(), json!(rfc3339(t)));
        }
        out.insert("dataschema".into(), json!(e.dataschema));
        out.insert("datacontenttype".into(), json!(e.datacontenttype));
        let data = serde_json::from_slice::<Value>(&e.data)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&e.data).into_owned()));
        out.insert("data".into(), data);
        let extensions: std::collections::BTreeMap<_, _> = e.extensions.iter().collect();
        for (name, value) in extensions {
            out.insert(name.clone(), json!(value));
        }
    }
    out.insert("position".into(), json!(delivery.position));
    if !delivery.redacted.is_empty() {
        out.insert("redacted".into(), json!(delivery.redacted.join(",")));
    }
    if delivery.released {
        out.insert("released".into(), json!(true));
    }
    out.insert("completeness".into(), json!(format!("{}", delivery.completeness)));
    out.insert("missingexpected".into(), json!(delivery.missing_expected.join(",")));
    Value::Object(out)
}

/// Whether the gateway refused the request itself, as opposed to not answering.
pub fn is_rejection(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument
            | Code::PermissionDenied
            | Code::AlreadyExists
            | Code::Unauthenticated
            | Code::NotFound
            | Code::OutOfRange
            | Code::FailedPrecondition
    )
}

/// The refusal as JSON: code, message, the stable reason and every field violation.
pub fn rejection(status: &Status) -> Value {
    let details = status.get_error_details();
    let violations: Vec<Value> = details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| json!({"field": v.field, "description": v.description})).collect())
        .unwrap_or_default();
    json!({
        "code": format!("{:?}", status.code()),
        "message": status.message(),
        "reason": details.error_info().map(|i| i.reason.clone()),
        "violations": violations,
    })
}

/// Prints a failed call and picks the exit status: 2 for a refusal, 1 otherwise.
pub fn report_failure(what: &str, status: &Status) -> ExitCode {
    if is_rejection(status) {
        println!("{}", json!({ "rejected": rejection(status) }));
        eprintln!("{what} refused ({:?}): {}", status.code(), status.message());
        for v in status.get_details_bad_request().map(|b| b.field_violations).unwrap_or_default() {
            eprintln!("  {}: {}", if v.field.is_empty() { "(event)" } else { &v.field }, v.description);
        }
        ExitCode::from(EXIT_REJECTED)
    } else {
        eprintln!("error: {what} failed ({:?}): {}", status.code(), status.message());
        ExitCode::FAILURE
    }
}
