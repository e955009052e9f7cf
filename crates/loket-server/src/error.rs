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
    #[error("caller is not identified: {0}")]
    Unauthenticated(&'static str),
    #[error("partner {identity:?} may not publish with source {claimed:?}")]
    SourceMismatch { identity: String, claimed: String },
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
