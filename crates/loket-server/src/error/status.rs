//! The edge: errors become gRPC statuses here and nowhere else, with their details
//! (google.rpc.ErrorInfo, BadRequest, RetryInfo, QuotaFailure).

use std::collections::HashMap;

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use super::{Error, ERROR_DOMAIN};

/// The edge: the one place an error becomes a gRPC status.
impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        if let Some(message) = error.public_message() {
            tracing::error!(%error, reason = error.reason(), "failure while serving a request");
            if error.code() == Code::Internal {
                return tonic::Status::internal(message);
            }
            return tonic::Status::with_error_details(error.code(), message, details(&error));
        }
        tonic::Status::with_error_details(error.code(), error.to_string(), details(&error))
    }
}

fn details(error: &Error) -> ErrorDetails {
    let mut details = ErrorDetails::new();
    let metadata: HashMap<String, String> = error.metadata().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    details.set_error_info(error.reason(), ERROR_DOMAIN, metadata);
    for v in error.violations() {
        details.add_bad_request_violation(v.field, v.description);
    }
    if let Some(delay) = error.retry_after() {
        details.set_retry_info(Some(delay));
    }
    if let Error::QuotaExceeded { partner, quota, limit, .. } = error {
        details.add_quota_failure_violation(format!("partner:{partner}"), format!("{quota}: limit {limit}"));
    }
    details
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
