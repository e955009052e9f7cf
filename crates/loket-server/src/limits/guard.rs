//! The tower layer every call passes as hyper hands over its headers, before its body is
//! read: unary publishes are charged to their partner's rate quota (when the policy
//! knows the identity; else the handler charges it) and admitted into the gateway-wide
//! limit in flight, or refused at once (`admission.rs`), their fair shares keyed by what
//! the connection presented (its [`Peer`], resolved once per connection) or on an
//! insecure gateway by the `x-loket-partner` header; and a call still unanswered after `[grpc]
//! request_timeout_secs` ends with DEADLINE_EXCEEDED (`Error::RequestTimeout`, built
//! where every status is), the code gRPC gives an expired deadline, where tonic's own
//! timeout answers CANCELLED. A streaming call's response (its headers) is ready at
//! once, so streams are never cut by the timeout; their limits are the idle and
//! slow-subscriber timeouts. A client's own shorter `grpc-timeout` is still enforced by
//! tonic.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::http;
use tower::{Layer, Service};

use loket_access::Policy;
use loket_domain::PartnerId;

use super::admission::{Admission, Admitted};
use super::connections::Peer;
use super::Limits;
use crate::access::{Presented, PARTNER_HEADER};
use crate::Error;

/// The unary method the admission applies to.
const PUBLISH_PATH: &str = "/loket.v1.Gateway/Publish";
/// The longest `x-loket-partner` value a share is keyed by (a partner id is far shorter);
/// a longer one shares the unidentified caller's entry.
const MAX_HEADER_KEY: usize = 64;

/// Who the fair shares count `request` under: what its connection presented, else (plain
/// TCP) its `x-loket-partner` header, else nobody in particular (the empty key). The
/// caller is authenticated later, at the handler; this only has to tell callers apart.
fn partner_key<B>(request: &http::Request<B>) -> Arc<str> {
    if let Some(key) = request.extensions().get::<Peer>().and_then(|peer| peer.partner_key.as_ref()) {
        return key.clone();
    }
    let header = request.headers().get(PARTNER_HEADER).and_then(|value| value.to_str().ok());
    Arc::from(header.filter(|name| name.len() <= MAX_HEADER_KEY).unwrap_or(""))
}

/// The partner `request` comes from as `Access::caller` will find it (what the
/// connection presented, or on plain TCP the header, mapped through `policy`); `None`
/// when the policy does not know it (the handler refuses it).
fn partner_of<B>(request: &http::Request<B>, policy: &Policy) -> Option<PartnerId> {
    match request.extensions().get::<Peer>().and_then(|peer| peer.certified.as_deref()) {
        Some(certified) => certified.as_ref().ok()?.partner(policy),
        None => {
            let header = request.headers().get(PARTNER_HEADER)?.to_str().ok()?;
            Presented::Name(header.to_owned()).partner(policy)
        }
    }
}

/// Marks a unary publish the layer has charged to its partner's rate, so that the
/// handler does not charge it again.
#[derive(Clone, Copy)]
pub(crate) struct RateCharged;

impl RateCharged {
    /// Whether the layer charged `request`.
    pub fn of<T>(request: &tonic::Request<T>) -> bool {
        request.extensions().get::<RateCharged>().is_some()
    }
}

#[derive(Clone)]
pub(crate) struct GuardLayer {
    pub limits: Limits,
    pub policy: Arc<Policy>,
    /// `None` when `[limits] gateway_in_flight` is 0.
    pub admission: Option<Arc<Admission>>,
    /// What a refused publish is told to wait.
    pub retry_after: Duration,
    pub request_timeout: Duration,
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub(crate) struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

/// The call answered at once with `refusal`'s status.
fn answered<R, E>(refusal: Error) -> Pin<Box<dyn Future<Output = Result<http::Response<R>, E>> + Send>>
where
    R: Default + Send + 'static,
    E: Send + 'static,
{
    Box::pin(std::future::ready(Ok(tonic::Status::from(refusal).into_http())))
}

impl<S, B, R> Service<http::Request<B>> for Guard<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let publish = request.uri().path() == PUBLISH_PATH;
        if let Some(partner) = publish.then(|| partner_of(&request, &self.layer.policy)).flatten() {
            if let Err(refused) = self.layer.limits.charge_rate(&partner) {
                return answered(refused);
            }
            request.extensions_mut().insert(RateCharged);
        }
        if let (true, Some(admission)) = (publish, &self.layer.admission) {
            match admission.admit(partner_key(&request), self.layer.retry_after) {
                Ok(ticket) => {
                    request.extensions_mut().insert(Admitted(Arc::new(Mutex::new(Some(ticket)))));
                }
                Err(refused) => return answered(refused),
            }
        }
        let limit = self.layer.request_timeout;
        let response = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limit, response).await {
                Ok(response) => response,
                Err(_) => Ok(tonic::Status::from(Error::RequestTimeout { seconds: limit.as_secs() }).into_http()),
            }
        })
    }
}
