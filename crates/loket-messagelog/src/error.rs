//! What can go wrong reading a message-log line or generating a log. The messages name the
//! line's attribute, so a caller can prefix the file and line number.

/// An error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not JSON, or not of the line's shape (an unknown attribute, a missing one).
    #[error("not a message-log line: {0}")]
    Malformed(serde_json::Error),
    #[error("outcome must be \"accepted\" or \"rejected\", not {0:?}")]
    Outcome(String),
    #[error("extension attribute {name:?}: {reason}")]
    Extension { name: String, reason: String },
    #[error("data and data_base64 are both present")]
    DataTwice,
    #[error("cases {first} to {} do not fit the six digits of a synthetic V-number (9999xxxxxx)", u64::from(*first) + u64::from(*cases))]
    CaseNumbers { first: u32, cases: u32 },
    #[error("id and source are required")]
    NoIdOrSource,
    /// `attribute` is `time` or `receivedat`.
    #[error("{attribute} {value:?} is not an RFC 3339 time")]
    NotRfc3339 { attribute: &'static str, value: String },
    /// An RFC 3339 time outside the years the journal can hold.
    #[error("time {0:?} is not valid")]
    TimeOutOfRange(String),
    #[error("data_base64 is not base64")]
    Base64(#[source] base64::DecodeError),
    #[error("completeness {value:?} is not a number")]
    Completeness {
        value: String,
        #[source]
        source: std::num::ParseFloatError,
    },
    #[error("violations is not a JSON array of {{field, description}}")]
    Violations(#[source] serde_json::Error),
    /// `attribute` is `prevhash` or `hash`.
    #[error("{attribute} is not hexadecimal")]
    Hex {
        attribute: &'static str,
        #[source]
        source: hex::FromHexError,
    },
    #[error("an accepted entry needs a sequence")]
    NoSequence,
    #[error("a rejected entry needs a rejection number")]
    NoRejectionNumber,
    /// Generating: the built-in schemas, which every generated event is checked against.
    #[error("the built-in schemas do not load")]
    Schemas(#[source] loket_schema::Error),
    #[error("a generated type has no schema")]
    NoSchema(#[source] loket_schema::Error),
    /// `what` is what was being encoded.
    #[error("cannot encode {what}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the generated log")]
    Write(#[source] std::io::Error),
}
