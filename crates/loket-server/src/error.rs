//! The server crate's one error type, and the one place where errors become gRPC statuses.

use std::collections::HashMap;

use loket_domain::FieldViolation;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every google.rpc.ErrorInfo loket sends.
pub const ERROR_DOMAIN: &str = "loket";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// CloudEvents attributes that are absent or malformed (named `@attribute`).
    #[error("invalid CloudEvents envelope: {}", join(.0))]
    InvalidEnvelope(Vec<FieldViolation>),
    #[error("event data is {size} bytes; the limit is {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("event data is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("event data must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("{0}")]
    UnknownSchema(#[from] loket_schema::Error),
    #[error("event does not match schema {dataschema}: {}", join(.violations))]
    SchemaViolation { dataschema: String, violations: Vec<FieldViolation> },
    #[error("event fails quality rules of {dataschema}: {}", join_rules(.rules))]
    RuleViolation { dataschema: String, rules: Vec<loket_quality::RuleFailure> },
    #[error("event type {0:?} is published by the gateway itself, not by partners")]
    ReservedType(&'static str),
    #[error("partner {caller:?} may not read the quality figures of {requested:?}")]
    QualityAccessDenied { caller: String, requested: String },
    #[error("invalid quality report request: {}", join(.0))]
    InvalidReportRequest(Vec<FieldViolation>),
    #[error("quality figures unavailable: {0}")]
    Quality(#[from] loket_quality::Error),
    #[error("caller is not identified: {0}")]
    Unauthenticated(&'static str),
    #[error("partner {identity:?} may not publish with source {claimed:?}")]
    SourceMismatch { identity: String, claimed: String },
    #[error("certificate identity {identity:?} belongs to no partner in the policy")]
    UnknownIdentity { identity: String },
    #[error("partner {partner:?} may not publish events of type {event_type:?}")]
    PublishNotGranted { partner: String, event_type: String },
    #[error("partner {partner:?} may not receive events of type {}", .types.join(", "))]
    SubscribeNotGranted { partner: String, types: Vec<String> },
    #[error("partner {partner:?} may not receive any event type")]
    NoGrants { partner: String },
    #[error("partner {partner:?} published no event with id {id:?}")]
    EventNotFound { partner: String, id: String },
    #[error("partner {partner:?} may read only its own denials, not those of {asked:?}")]
    AuditNotPermitted { partner: String, asked: String },
    /// The access store failed; details stay in the log.
    #[error("access store failure: {0}")]
    Access(String),
    #[error("event id {id:?} was already used by {publisher:?} for different content (sequence {sequence})")]
    IdConflict { publisher: String, id: String, sequence: u64 },
    #[error("invalid subscription request: {}", join(.0))]
    InvalidSubscription(Vec<FieldViolation>),
    #[error("no subscription named {name:?} for partner {partner:?}")]
    SubscriptionNotFound { partner: String, name: String },
    #[error("cannot acknowledge sequence {sequence}: the journal ends at {last}")]
    AckBeyondEnd { sequence: u64, last: u64 },
    /// The journal could not store or read; the client may retry. Details stay in the log.
    #[error("journal failure: {0}")]
    Journal(loket_journal::Error),
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("partner {partner:?} may not export the message log")]
    ExportNotAllowed { partner: String },
    #[error("invalid export request: {}", join(.0))]
    InvalidExport(Vec<FieldViolation>),
    /// `ack = "kafka"`: stored, but the broker did not confirm in time.
    #[error("event stored as sequence {sequence} but kafka has not confirmed it yet; publish it again to wait for the confirmation")]
    NotOnKafka { sequence: u64 },
    #[error("subscription {name:?} is not open on this gateway: acknowledge on the gateway that streams it")]
    SubscriptionNotOpen { name: String },
    #[error("nothing with sequence {sequence} was delivered on subscription {name:?} since its last acknowledgement")]
    AckNotDelivered { name: String, sequence: u64 },
    /// Kafka failed while serving a request (subscribe in Kafka mode). Details stay in the log.
    #[error("kafka failure: {0}")]
    Kafka(#[from] loket_kafka::Error),

    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    #[error("tls setup failed: {0}")]
    Tls(String),
    #[error("certificate generation failed: {0}")]
    Certificates(#[from] rcgen::Error),
    #[error("{context}: {reason}")]
    Io { context: String, reason: std::io::Error },
    #[error("grpc transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl Error {
    /// A stable code for the denial log, for refusals that are recorded.
    pub(crate) fn denial_code(&self) -> Option<&'static str> {
        Some(match self {
            Error::UnknownIdentity { .. } => "UNKNOWN_PARTNER",
            Error::SourceMismatch { .. } => "SOURCE_MISMATCH",
            Error::PublishNotGranted { .. } | Error::SubscribeNotGranted { .. } => "TYPE_NOT_GRANTED",
            Error::NoGrants { .. } => "NO_GRANTS",
            Error::AuditNotPermitted { .. } => "AUDIT_NOT_PERMITTED",
            _ => return None,
        })
    }

    pub(crate) fn io(context: impl Into<String>, reason: std::io::Error) -> Self {
        Self::Io { context: context.into(), reason }
    }
}

impl From<loket_journal::Error> for Error {
    fn from(e: loket_journal::Error) -> Self {
        match e {
            loket_journal::Error::Conflict { publisher, id, sequence } => Self::IdConflict { publisher, id, sequence },
            loket_journal::Error::NotFound { partner, name } => Self::SubscriptionNotFound { partner, name },
            other => Self::Journal(other),
        }
    }
}

fn join(violations: &[FieldViolation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn join_rules(rules: &[loket_quality::RuleFailure]) -> String {
    rules.iter().map(|r| format!("{}: {}", r.name, r.description)).collect::<Vec<_>>().join("; ")
}

fn details(reason: &str, metadata: &[(&str, String)], violations: &[FieldViolation]) -> ErrorDetails {
    let mut details = ErrorDetails::new();
    let metadata: HashMap<String, String> = metadata.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    details
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        let (code, details) = match &error {
            Error::InvalidEnvelope(v) => (Code::InvalidArgument, details("INVALID_ENVELOPE", &[], v)),
            Error::PayloadTooLarge { size, limit } => (
                Code::InvalidArgument,
                details(
                    "PAYLOAD_TOO_LARGE",
                    &[("size", size.to_string()), ("limit", limit.to_string())],
                    &[FieldViolation::attribute("data", format!("{size} bytes exceeds the limit of {limit}"))],
                ),
            ),
            Error::MalformedJson(why) => (
                Code::InvalidArgument,
                details("MALFORMED_JSON", &[], &[FieldViolation::attribute("data", why.clone())]),
            ),
            Error::NotAnObject(kind) => (
                Code::InvalidArgument,
                details(
                    "MALFORMED_JSON",
                    &[],
                    &[FieldViolation::attribute("data", format!("must be a JSON object, not {kind}"))],
                ),
            ),
            Error::UnknownSchema(e) => {
                let (reason, field) = match e {
                    loket_schema::Error::UnknownType { .. } => ("UNKNOWN_TYPE", "type"),
                    loket_schema::Error::UnknownSchema { .. } => ("UNKNOWN_SCHEMA", "dataschema"),
                    loket_schema::Error::Load { .. } => ("SCHEMA_SET_INVALID", "type"),
                };
                (Code::InvalidArgument, details(reason, &[], &[FieldViolation::attribute(field, e.to_string())]))
            }
            Error::SchemaViolation { dataschema, violations } => {
                (Code::InvalidArgument, details("SCHEMA_VIOLATION", &[("dataschema", dataschema.clone())], violations))
            }
            Error::RuleViolation { dataschema, rules } => {
                let names = rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(",");
                // One BadRequest violation per failed rule, named `rule:<name>` (a rule
                // relates fields, so no single field path fits).
                let violations: Vec<FieldViolation> = rules
                    .iter()
                    .map(|r| FieldViolation::new(format!("rule:{}", r.name), r.description.clone()))
                    .collect();
                (
                    Code::InvalidArgument,
                    details("RULE_VIOLATION", &[("dataschema", dataschema.clone()), ("rules", names)], &violations),
                )
            }
            Error::ReservedType(t) => (
                Code::PermissionDenied,
                details(
                    "RESERVED_TYPE",
                    &[],
                    &[FieldViolation::attribute("type", format!("{t} is published by the gateway"))],
                ),
            ),
            Error::QualityAccessDenied { requested, .. } => {
                (Code::PermissionDenied, details("QUALITY_ACCESS_DENIED", &[("partner", requested.clone())], &[]))
            }
            Error::InvalidReportRequest(v) => (Code::InvalidArgument, details("INVALID_REPORT_REQUEST", &[], v)),
            Error::Quality(inner) => {
                tracing::error!(error = %inner, "quality store failure");
                return tonic::Status::with_error_details(
                    Code::Unavailable,
                    "the quality figures cannot be read now; retry later",
                    details("QUALITY_UNAVAILABLE", &[], &[]),
                );
            }
            Error::Unauthenticated(_) => (Code::Unauthenticated, details("UNAUTHENTICATED", &[], &[])),
            Error::SourceMismatch { identity, claimed } => (
                Code::PermissionDenied,
                details(
                    "SOURCE_MISMATCH",
                    &[("identity", identity.clone()), ("source", claimed.clone())],
                    &[FieldViolation::attribute(
                        "source",
                        format!("must be {identity:?}, the caller's certificate identity"),
                    )],
                ),
            ),
            Error::UnknownIdentity { identity } => {
                (Code::PermissionDenied, details("UNKNOWN_PARTNER", &[("identity", identity.clone())], &[]))
            }
            Error::PublishNotGranted { partner, event_type } => (
                Code::PermissionDenied,
                details(
                    "TYPE_NOT_GRANTED",
                    &[("partner", partner.clone()), ("type", event_type.clone())],
                    &[FieldViolation::attribute("type", format!("{partner} may not publish {event_type}"))],
                ),
            ),
            Error::SubscribeNotGranted { partner, types } => (
                Code::PermissionDenied,
                details(
                    "TYPE_NOT_GRANTED",
                    &[("partner", partner.clone()), ("types", types.join(","))],
                    &types
                        .iter()
                        .map(|t| FieldViolation::new("types", format!("{partner} may not receive {t}")))
                        .collect::<Vec<_>>(),
                ),
            ),
            Error::NoGrants { partner } => {
                (Code::PermissionDenied, details("NO_GRANTS", &[("partner", partner.clone())], &[]))
            }
            Error::EventNotFound { id, .. } => (
                Code::NotFound,
                details(
                    "EVENT_NOT_FOUND",
                    &[],
                    &[FieldViolation::new("id", format!("no event {id:?} published by the caller"))],
                ),
            ),
            Error::AuditNotPermitted { asked, .. } => (
                Code::PermissionDenied,
                details(
                    "AUDIT_NOT_PERMITTED",
                    &[("partner", asked.clone())],
                    &[FieldViolation::new("partner", "only auditors read other partners' denials")],
                ),
            ),
            Error::Access(inner) => {
                tracing::error!(error = %inner, "access store failure");
                return tonic::Status::with_error_details(
                    Code::Unavailable,
                    "the access store could not be read or written; retry later",
                    details("ACCESS_STORE_UNAVAILABLE", &[], &[]),
                );
            }
            Error::IdConflict { sequence, .. } => {
                (Code::AlreadyExists, details("ID_CONFLICT", &[("sequence", sequence.to_string())], &[]))
            }
            Error::InvalidSubscription(v) => (Code::InvalidArgument, details("INVALID_SUBSCRIPTION", &[], v)),
            Error::SubscriptionNotFound { .. } => (Code::NotFound, details("SUBSCRIPTION_NOT_FOUND", &[], &[])),
            Error::AckBeyondEnd { last, .. } => {
                (Code::OutOfRange, details("ACK_BEYOND_END", &[("last", last.to_string())], &[]))
            }
            Error::Journal(inner) => {
                tracing::error!(error = %inner, "journal failure");
                return tonic::Status::with_error_details(
                    Code::Unavailable,
                    "the journal could not store or read the event; nothing was stored, retry later",
                    details("JOURNAL_UNAVAILABLE", &[], &[]),
                );
            }
            Error::ShuttingDown => (Code::Unavailable, details("SHUTTING_DOWN", &[], &[])),
            Error::ExportNotAllowed { .. } => (Code::PermissionDenied, details("EXPORT_NOT_ALLOWED", &[], &[])),
            Error::InvalidExport(v) => (Code::InvalidArgument, details("INVALID_EXPORT", &[], v)),
            Error::NotOnKafka { sequence } => {
                (Code::Unavailable, details("KAFKA_NOT_CONFIRMED", &[("sequence", sequence.to_string())], &[]))
            }
            Error::SubscriptionNotOpen { .. } => (Code::FailedPrecondition, details("SUBSCRIPTION_NOT_OPEN", &[], &[])),
            Error::AckNotDelivered { sequence, .. } => (
                Code::InvalidArgument,
                details(
                    "ACK_NOT_DELIVERED",
                    &[],
                    &[FieldViolation::new("sequence", format!("{sequence} was not delivered on this stream"))],
                ),
            ),
            Error::Kafka(inner) => {
                tracing::error!(error = %inner, "kafka failure");
                return tonic::Status::with_error_details(
                    Code::Unavailable,
                    "kafka is not reachable from this gateway; retry later",
                    details("KAFKA_UNAVAILABLE", &[], &[]),
                );
            }
            Error::Config(_) | Error::Tls(_) | Error::Certificates(_) | Error::Io { .. } | Error::Transport(_) => {
                tracing::error!(%error, "internal error while serving a request");
                return tonic::Status::internal("internal error");
            }
        };
        tonic::Status::with_error_details(code, message, details)
    }
}

/// The google.rpc.Status a unary call would have failed with, for stream replies.
pub(crate) fn to_rpc_status(status: &tonic::Status) -> tonic_types::pb::Status {
    use prost::Message;
    let plain = || tonic_types::pb::Status {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: Vec::new(),
    };
    if status.details().is_empty() {
        return plain();
    }
    tonic_types::pb::Status::decode(status.details()).unwrap_or_else(|_| plain())
}
