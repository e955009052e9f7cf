//! The server crate's one error type; `status.rs` is the one place where errors become
//! gRPC statuses.

mod status;

pub(crate) use status::to_rpc_status;

use loket_domain::FieldViolation;
use std::time::Duration;

use tonic::Code;

/// The `domain` of every google.rpc.ErrorInfo loket sends.
pub const ERROR_DOMAIN: &str = "loket";

/// The pause an UNAVAILABLE status advises (google.rpc.RetryInfo): the gateway shutting
/// down, a store or Kafka briefly unreachable.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);
/// The pause a DISK_LOW refusal advises: space returns when someone or the retention
/// compaction frees it, not within a second.
const DISK_LOW_RETRY: Duration = Duration::from_secs(5);

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
    /// `[tls] identity = "oin"`: the certificate carries no usable OIN.
    #[error("the client certificate (common name {common_name:?}) carries no OIN: {problem}")]
    NoOin { common_name: String, problem: &'static str },
    /// `[tls] identity = "oin"`: a well-formed OIN that no partner has.
    #[error("the client certificate's OIN {oin} belongs to no partner in the policy")]
    UnknownOin { oin: String },
    #[error("partner {partner:?} is not a consent registrar: only [access] consent_registrars publish consent forms")]
    NotAConsentRegistrar { partner: String },
    #[error("consent form {consent_id:?} belongs to registrar {owner:?}; {partner:?} may not amend or withdraw it")]
    ConsentNotOwned { partner: String, consent_id: String, owner: String },
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
    #[error("partner {partner:?} may not read the processing log (only access.auditors)")]
    ProcessingAuditNotPermitted { partner: String },
    #[error("{0:?} is not a V-number (exactly 10 digits)")]
    InvalidCase(String),
    /// The processing log failed; details stay in the log.
    #[error("processing log failure: {0}")]
    Processing(String),
    #[error("event id {id:?} was already used by {publisher:?} for different content (sequence {sequence})")]
    IdConflict { publisher: String, id: String, sequence: u64 },
    #[error("invalid subscription request: {}", join(.0))]
    InvalidSubscription(Vec<FieldViolation>),
    #[error("no subscription named {name:?} for partner {partner:?}")]
    SubscriptionNotFound { partner: String, name: String },
    #[error("subscription {name:?} has a stream open; close it before deleting the subscription")]
    SubscriptionOpen { name: String },
    #[error("cannot acknowledge sequence {sequence}: the journal ends at {last}")]
    AckBeyondEnd { sequence: u64, last: u64 },
    /// The journal could not store or read; the client may retry. Details stay in the log.
    #[error("journal failure: {0}")]
    Journal(loket_journal::Error),
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("partner {partner:?} may not erase cases: only [access] auditors may")]
    ErasureNotAllowed { partner: String },
    #[error("invalid erasure request: {}", join(.0))]
    InvalidErasure(Vec<FieldViolation>),
    #[error("the journal holds nothing of case {case:?}")]
    CaseNotFound { case: String },
    /// `[journal] min_free_bytes`: nothing was stored; publishing resumes by itself.
    #[error("disk space is low ({free} bytes free, the minimum is {min_free}): nothing was stored, retry later")]
    DiskLow { free: u64, min_free: u64 },
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
    /// Over one of the partner's quotas (`[limits]`).
    #[error("partner {partner:?} is over its {quota} quota of {limit}; retry in {} ms", .retry_after.as_millis())]
    QuotaExceeded { partner: String, quota: &'static str, limit: u32, retry_after: Duration },
    /// The journal queue is past its high-water mark: refused before any work.
    #[error("the gateway is overloaded; nothing was stored, retry in {} ms", .retry_after.as_millis())]
    Overloaded { retry_after: Duration },
    #[error("the subscriber did not read for {seconds} s; its stream is closed and its buffer dropped")]
    SlowSubscriber { seconds: u64 },
    #[error("the publish stream sent no event for {seconds} s and is closed")]
    StreamIdle { seconds: u64 },
    /// A unary call unanswered after `[grpc] request_timeout_secs`.
    #[error("the call was not answered within the gateway's request timeout of {seconds} s; whatever it started may still complete, so a publish is safe to retry with the same id")]
    RequestTimeout { seconds: u64 },
    #[error("cannot start at sequence {start}: the journal ends at {last}, so {} is the furthest start", .last + 1)]
    StartBeyondEnd { start: u64, last: u64 },
    /// A request message that is not valid protobuf for its method.
    #[error("the request is not a valid protobuf message: {0}")]
    MalformedMessage(String),
    /// A task serving a request ended abnormally. Details stay in the log.
    #[error("a request task failed: {0}")]
    TaskFailed(String),

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

/// What a refusal tells its caller and the logs: a code, a stable reason and every failing
/// field. Refusals travel as [`Error`] values (to the rejection log, the quality counters,
/// the metrics) and become a `tonic::Status` only at the edge, in `From<Error>`.
impl Error {
    /// The stable reason (google.rpc.ErrorInfo `reason`), one per kind of error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidEnvelope(_) => "INVALID_ENVELOPE",
            Error::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Error::MalformedJson(_) | Error::NotAnObject(_) => "MALFORMED_JSON",
            Error::UnknownSchema(loket_schema::Error::UnknownType { .. }) => "UNKNOWN_TYPE",
            Error::UnknownSchema(loket_schema::Error::UnknownSchema { .. }) => "UNKNOWN_SCHEMA",
            Error::UnknownSchema(loket_schema::Error::Load { .. }) => "SCHEMA_SET_INVALID",
            Error::SchemaViolation { .. } => "SCHEMA_VIOLATION",
            Error::RuleViolation { .. } => "RULE_VIOLATION",
            Error::ReservedType(_) => "RESERVED_TYPE",
            Error::QualityAccessDenied { .. } => "QUALITY_ACCESS_DENIED",
            Error::InvalidReportRequest(_) => "INVALID_REPORT_REQUEST",
            Error::Quality(_) => "QUALITY_UNAVAILABLE",
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::SourceMismatch { .. } => "SOURCE_MISMATCH",
            Error::UnknownIdentity { .. } => "UNKNOWN_PARTNER",
            Error::NoOin { .. } => "OIN_MISSING",
            Error::UnknownOin { .. } => "UNKNOWN_OIN",
            Error::NotAConsentRegistrar { .. } => "NOT_A_CONSENT_REGISTRAR",
            Error::ConsentNotOwned { .. } => "CONSENT_NOT_OWNED",
            Error::PublishNotGranted { .. } | Error::SubscribeNotGranted { .. } => "TYPE_NOT_GRANTED",
            Error::NoGrants { .. } => "NO_GRANTS",
            Error::EventNotFound { .. } => "EVENT_NOT_FOUND",
            Error::AuditNotPermitted { .. } => "AUDIT_NOT_PERMITTED",
            Error::Access(_) => "ACCESS_STORE_UNAVAILABLE",
            Error::ProcessingAuditNotPermitted { .. } => "PROCESSING_AUDIT_NOT_PERMITTED",
            Error::InvalidCase(_) => "INVALID_CASE",
            Error::Processing(_) => "PROCESSING_LOG_UNAVAILABLE",
            Error::IdConflict { .. } => "ID_CONFLICT",
            Error::InvalidSubscription(_) => "INVALID_SUBSCRIPTION",
            Error::SubscriptionNotFound { .. } => "SUBSCRIPTION_NOT_FOUND",
            Error::SubscriptionOpen { .. } => "SUBSCRIPTION_OPEN",
            Error::AckBeyondEnd { .. } => "ACK_BEYOND_END",
            Error::Journal(_) => "JOURNAL_UNAVAILABLE",
            Error::ShuttingDown => "SHUTTING_DOWN",
            Error::DiskLow { .. } => "DISK_LOW",
            Error::ErasureNotAllowed { .. } => "ERASURE_NOT_ALLOWED",
            Error::InvalidErasure(_) => "INVALID_ERASURE",
            Error::CaseNotFound { .. } => "CASE_NOT_FOUND",
            Error::ExportNotAllowed { .. } => "EXPORT_NOT_ALLOWED",
            Error::InvalidExport(_) => "INVALID_EXPORT",
            Error::NotOnKafka { .. } => "KAFKA_NOT_CONFIRMED",
            Error::SubscriptionNotOpen { .. } => "SUBSCRIPTION_NOT_OPEN",
            Error::AckNotDelivered { .. } => "ACK_NOT_DELIVERED",
            Error::Kafka(_) => "KAFKA_UNAVAILABLE",
            Error::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            Error::Overloaded { .. } => "OVERLOADED",
            Error::SlowSubscriber { .. } => "SLOW_SUBSCRIBER",
            Error::StreamIdle { .. } => "STREAM_IDLE",
            Error::RequestTimeout { .. } => "REQUEST_TIMEOUT",
            Error::StartBeyondEnd { .. } => "START_BEYOND_END",
            Error::MalformedMessage(_) => "MALFORMED_MESSAGE",
            Error::TaskFailed(_)
            | Error::Config(_)
            | Error::Tls(_)
            | Error::Certificates(_)
            | Error::Io { .. }
            | Error::Transport(_) => "INTERNAL",
        }
    }

    /// The gRPC status code.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidEnvelope(_)
            | Error::PayloadTooLarge { .. }
            | Error::MalformedJson(_)
            | Error::NotAnObject(_)
            | Error::UnknownSchema(_)
            | Error::SchemaViolation { .. }
            | Error::RuleViolation { .. }
            | Error::InvalidReportRequest(_)
            | Error::InvalidSubscription(_)
            | Error::InvalidExport(_)
            | Error::InvalidErasure(_)
            | Error::InvalidCase(_)
            | Error::AckNotDelivered { .. }
            | Error::MalformedMessage(_) => Code::InvalidArgument,
            Error::QuotaExceeded { .. } | Error::Overloaded { .. } | Error::SlowSubscriber { .. } => {
                Code::ResourceExhausted
            }
            Error::StreamIdle { .. } | Error::RequestTimeout { .. } => Code::DeadlineExceeded,
            Error::ReservedType(_)
            | Error::QualityAccessDenied { .. }
            | Error::SourceMismatch { .. }
            | Error::UnknownIdentity { .. }
            | Error::PublishNotGranted { .. }
            | Error::SubscribeNotGranted { .. }
            | Error::NoGrants { .. }
            | Error::AuditNotPermitted { .. }
            | Error::ProcessingAuditNotPermitted { .. }
            | Error::NotAConsentRegistrar { .. }
            | Error::ConsentNotOwned { .. }
            | Error::ExportNotAllowed { .. }
            | Error::ErasureNotAllowed { .. } => Code::PermissionDenied,
            Error::Unauthenticated(_) | Error::NoOin { .. } | Error::UnknownOin { .. } => Code::Unauthenticated,
            Error::EventNotFound { .. } | Error::SubscriptionNotFound { .. } | Error::CaseNotFound { .. } => {
                Code::NotFound
            }
            Error::IdConflict { .. } => Code::AlreadyExists,
            Error::AckBeyondEnd { .. } | Error::StartBeyondEnd { .. } => Code::OutOfRange,
            Error::SubscriptionNotOpen { .. } | Error::SubscriptionOpen { .. } => Code::FailedPrecondition,
            Error::DiskLow { .. } => Code::ResourceExhausted,
            Error::Quality(_)
            | Error::Access(_)
            | Error::Processing(_)
            | Error::Journal(_)
            | Error::ShuttingDown
            | Error::NotOnKafka { .. }
            | Error::Kafka(_) => Code::Unavailable,
            Error::TaskFailed(_)
            | Error::Config(_)
            | Error::Tls(_)
            | Error::Certificates(_)
            | Error::Io { .. }
            | Error::Transport(_) => Code::Internal,
        }
    }

    /// Every failing field (google.rpc.BadRequest), named by JSON pointer or `@attribute`.
    pub fn violations(&self) -> Vec<FieldViolation> {
        match self {
            Error::InvalidEnvelope(v)
            | Error::InvalidReportRequest(v)
            | Error::InvalidSubscription(v)
            | Error::InvalidExport(v)
            | Error::InvalidErasure(v)
            | Error::SchemaViolation { violations: v, .. } => v.clone(),
            Error::PayloadTooLarge { size, limit } => {
                vec![FieldViolation::attribute("data", format!("{size} bytes exceeds the limit of {limit}"))]
            }
            Error::MalformedJson(why) => vec![FieldViolation::attribute("data", why.clone())],
            Error::NotAnObject(kind) => {
                vec![FieldViolation::attribute("data", format!("must be a JSON object, not {kind}"))]
            }
            Error::UnknownSchema(e) => {
                let field = if matches!(e, loket_schema::Error::UnknownSchema { .. }) { "dataschema" } else { "type" };
                vec![FieldViolation::attribute(field, e.to_string())]
            }
            // One violation per failed rule, named `rule:<name>` (a rule relates fields, so
            // no single field path fits).
            Error::RuleViolation { rules, .. } => {
                rules.iter().map(|r| FieldViolation::new(format!("rule:{}", r.name), r.description.clone())).collect()
            }
            Error::ReservedType(t) => {
                vec![FieldViolation::attribute("type", format!("{t} is published by the gateway"))]
            }
            Error::SourceMismatch { identity, .. } => vec![FieldViolation::attribute(
                "source",
                format!("must be {identity:?}, the caller's certificate identity"),
            )],
            Error::PublishNotGranted { partner, event_type } => {
                vec![FieldViolation::attribute("type", format!("{partner} may not publish {event_type}"))]
            }
            Error::SubscribeNotGranted { partner, types } => {
                types.iter().map(|t| FieldViolation::new("types", format!("{partner} may not receive {t}"))).collect()
            }
            Error::EventNotFound { id, .. } => {
                vec![FieldViolation::new("id", format!("no event {id:?} published by the caller"))]
            }
            Error::AuditNotPermitted { .. } => {
                vec![FieldViolation::new("partner", "only auditors read other partners' denials")]
            }
            Error::InvalidCase(_) => vec![FieldViolation::new("case", "must be a V-number: exactly 10 digits")],
            Error::AckNotDelivered { sequence, .. } => {
                vec![FieldViolation::new("sequence", format!("{sequence} was not delivered on this stream"))]
            }
            Error::NotAConsentRegistrar { partner } => {
                vec![FieldViolation::attribute("type", format!("{partner} is not a consent registrar"))]
            }
            Error::ConsentNotOwned { owner, .. } => {
                vec![FieldViolation::new("/consentId", format!("the form belongs to registrar {owner}"))]
            }
            Error::StartBeyondEnd { last, .. } => {
                vec![FieldViolation::new("sequence", format!("must be at most {}", last + 1))]
            }
            _ => Vec::new(),
        }
    }

    /// The names of the quality rules a refused event failed.
    pub fn failed_rules(&self) -> Vec<String> {
        match self {
            Error::RuleViolation { rules, .. } => rules.iter().map(|r| r.name.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// How long the caller should wait before retrying (google.rpc.RetryInfo): the quota's
    /// own wait, or for a shed or unavailable call a short pause.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::QuotaExceeded { retry_after, .. } if retry_after.is_zero() => None,
            Error::QuotaExceeded { retry_after, .. } | Error::Overloaded { retry_after } => Some(*retry_after),
            Error::SlowSubscriber { .. } => Some(UNAVAILABLE_RETRY),
            // Space comes back when an operator or the retention compaction frees it.
            Error::DiskLow { .. } => Some(DISK_LOW_RETRY),
            _ if self.code() == Code::Unavailable => Some(UNAVAILABLE_RETRY),
            _ => None,
        }
    }

    /// google.rpc.ErrorInfo metadata.
    pub(crate) fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::PayloadTooLarge { size, limit } => vec![("size", size.to_string()), ("limit", limit.to_string())],
            Error::SchemaViolation { dataschema, .. } => vec![("dataschema", dataschema.clone())],
            Error::RuleViolation { dataschema, .. } => {
                vec![("dataschema", dataschema.clone()), ("rules", self.failed_rules().join(","))]
            }
            Error::QualityAccessDenied { requested, .. } => vec![("partner", requested.clone())],
            Error::SourceMismatch { identity, claimed } => {
                vec![("identity", identity.clone()), ("source", claimed.clone())]
            }
            Error::UnknownIdentity { identity } => vec![("identity", identity.clone())],
            Error::NoOin { common_name, .. } => vec![("common_name", common_name.clone())],
            Error::UnknownOin { oin } => vec![("oin", oin.clone())],
            Error::NotAConsentRegistrar { partner } => vec![("partner", partner.clone())],
            Error::ConsentNotOwned { consent_id, owner, .. } => {
                vec![("consent_id", consent_id.clone()), ("owner", owner.clone())]
            }
            Error::PublishNotGranted { partner, event_type } => {
                vec![("partner", partner.clone()), ("type", event_type.clone())]
            }
            Error::SubscribeNotGranted { partner, types } => {
                vec![("partner", partner.clone()), ("types", types.join(","))]
            }
            Error::NoGrants { partner } => vec![("partner", partner.clone())],
            Error::AuditNotPermitted { asked, .. } => vec![("partner", asked.clone())],
            Error::IdConflict { sequence, .. } | Error::NotOnKafka { sequence } => {
                vec![("sequence", sequence.to_string())]
            }
            Error::AckBeyondEnd { last, .. } | Error::StartBeyondEnd { last, .. } => vec![("last", last.to_string())],
            Error::DiskLow { free, min_free } => vec![("free", free.to_string()), ("min_free", min_free.to_string())],
            Error::QuotaExceeded { partner, quota, limit, .. } => {
                vec![("partner", partner.clone()), ("quota", (*quota).to_owned()), ("limit", limit.to_string())]
            }
            _ => Vec::new(),
        }
    }

    /// The message the client reads: the error itself, except for failures inside the
    /// gateway, whose details stay in the log.
    pub(crate) fn public_message(&self) -> Option<&'static str> {
        Some(match self {
            Error::Quality(_) => "the quality figures cannot be read now; retry later",
            Error::Access(_) => "the access store could not be read or written; retry later",
            Error::Processing(_) => "the processing log could not be read or written; retry later",
            Error::Journal(_) => "the journal could not store or read the event; nothing was stored, retry later",
            Error::Kafka(_) => "kafka is not reachable from this gateway; retry later",
            Error::TaskFailed(_)
            | Error::Config(_)
            | Error::Tls(_)
            | Error::Certificates(_)
            | Error::Io { .. }
            | Error::Transport(_) => "internal error",
            _ => return None,
        })
    }

    /// Whether this is a verdict on the event itself (invalid, not permitted), as the
    /// rejection log keeps them: not an unauthenticated caller or an unavailable journal.
    pub fn is_verdict(&self) -> bool {
        matches!(self.code(), Code::InvalidArgument | Code::PermissionDenied | Code::FailedPrecondition)
    }

    /// A stable code for the denial log, for refusals that are recorded there (permission,
    /// not malformed input).
    pub(crate) fn denial_code(&self) -> Option<&'static str> {
        matches!(
            self,
            Error::UnknownIdentity { .. }
                | Error::NoOin { .. }
                | Error::UnknownOin { .. }
                | Error::NotAConsentRegistrar { .. }
                | Error::ConsentNotOwned { .. }
                | Error::SourceMismatch { .. }
                | Error::PublishNotGranted { .. }
                | Error::SubscribeNotGranted { .. }
                | Error::NoGrants { .. }
                | Error::AuditNotPermitted { .. }
        )
        .then(|| self.reason())
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
