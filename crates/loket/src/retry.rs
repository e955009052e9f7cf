//! Honouring the gateway's google.rpc.RetryInfo: a call refused with RESOURCE_EXHAUSTED
//! (over a quota, or shed under load) or UNAVAILABLE that says how long to wait is tried
//! again after that wait, doubled per attempt and jittered (so many clients refused at
//! once do not come back at once), a bounded number of times. A call whose HTTP/2 stream
//! was refused (REFUSED_STREAM: not processed) is tried again after a short jittered
//! pause, as gRPC clients do transparently.

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Attempts after the first.
pub const MAX_RETRIES: u32 = 8;
/// Longest single wait.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The first pause after a refused stream (the connection was at its stream limit).
const REFUSED_STREAM_WAIT: Duration = Duration::from_millis(10);

/// How long to wait before attempt `retry` (0-based) after `status`, or `None` when the
/// status is not one to retry (no RetryInfo, another code, or attempts used up).
pub fn delay(status: &Status, retry: u32) -> Option<Duration> {
    if retry >= MAX_RETRIES || !matches!(status.code(), Code::ResourceExhausted | Code::Unavailable) {
        return None;
    }
    let advised = if loket_server::client::refused_stream(status) {
        REFUSED_STREAM_WAIT
    } else {
        status.get_details_retry_info()?.retry_delay?
    };
    let backoff = advised.saturating_mul(1 << retry.min(16)).min(MAX_WAIT);
    // Full jitter over the upper half: never sooner than half the advice.
    Some(backoff.mul_f64(0.5 + fastrand::f64() * 0.5).max(Duration::from_millis(1)))
}

/// Runs `call` until it succeeds, fails in a way not to retry, or retries run out.
pub async fn retrying<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut retry = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(status) => match delay(&status, retry) {
                Some(wait) => {
                    tracing::debug!(code = ?status.code(), wait_ms = wait.as_millis() as u64, "retrying as advised");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                None => return Err(status),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    fn refused(code: Code, advice: Option<Duration>) -> Status {
        let mut details = ErrorDetails::new();
        if let Some(d) = advice {
            details.set_retry_info(Some(d));
        }
        Status::with_error_details(code, "refused", details)
    }

    #[test]
    fn only_advised_exhausted_or_unavailable_calls_are_retried_with_growing_jittered_waits() {
        let advice = Duration::from_millis(100);
        assert_eq!(delay(&refused(Code::InvalidArgument, Some(advice)), 0), None);
        assert_eq!(delay(&refused(Code::ResourceExhausted, None), 0), None);
        assert_eq!(delay(&refused(Code::Unavailable, Some(advice)), MAX_RETRIES), None);
        for retry in 0..4 {
            let full = advice * (1 << retry);
            let wait = delay(&refused(Code::ResourceExhausted, Some(advice)), retry).unwrap();
            assert!(wait >= full / 2 && wait <= full, "{retry}: {wait:?}");
        }
        assert!(delay(&refused(Code::Unavailable, Some(advice)), 7).unwrap() <= MAX_WAIT);
    }

    #[test]
    fn a_stream_refused_by_http2_is_retried_without_advice_and_other_transport_errors_are_not() {
        let refused_stream = Status::from_error(Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM)));
        assert_eq!(refused_stream.code(), Code::Unavailable);
        let wait = delay(&refused_stream, 0).unwrap();
        assert!(wait >= REFUSED_STREAM_WAIT / 2 && wait <= REFUSED_STREAM_WAIT, "{wait:?}");
        let reset = Status::from_error(Box::new(h2::Error::from(h2::Reason::INTERNAL_ERROR)));
        assert_eq!(delay(&reset, 0), None);
        assert_eq!(delay(&refused_stream, MAX_RETRIES), None);
    }
}
