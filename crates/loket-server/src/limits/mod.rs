//! Per-partner quotas and load shedding, checked before any work is done for a call:
//! the gateway-wide high-water mark on the journal queue, a token bucket per partner
//! (`governor`), semaphores for events in flight and open subscriber streams, and the
//! count of named subscriptions a partner keeps. A refusal is an [`Error`] with the
//! quota's name, its limit and how long to wait, which `error/` turns into
//! RESOURCE_EXHAUSTED with google.rpc.QuotaFailure and RetryInfo. Connection limits live
//! with the accept loop (`connections.rs`), the per-call admission and request timeout
//! in `guard.rs`; the gateway-wide limit of unary publishes in
//! flight, adapted to their latency, in `admission.rs`, shared fairly between partners by
//! `shares.rs`.

pub(crate) mod admission;
pub(crate) mod connections;
pub(crate) mod guard;
pub(crate) mod shares;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use loket_access::Policy;
use loket_domain::PartnerId;
use loket_journal::Journal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::admission::Admission;
use self::guard::GuardLayer;
use crate::config::{LimitsConfig, PartnerQuotas};
use crate::http::metrics as m;
use crate::Error;

/// The quota names refusals and metrics carry.
pub(crate) const EVENTS_PER_SECOND: &str = "events_per_second";
pub(crate) const IN_FLIGHT: &str = "in_flight";
pub(crate) const SUBSCRIPTIONS: &str = "subscriptions";
pub(crate) const NAMED_SUBSCRIPTIONS: &str = "named_subscriptions";

/// One partner's live quota state.
struct PartnerState {
    quotas: PartnerQuotas,
    rate: Option<DefaultDirectRateLimiter>,
    in_flight: Arc<Semaphore>,
    subscriptions: Arc<Semaphore>,
}

impl PartnerState {
    fn new(quotas: PartnerQuotas) -> Self {
        let rate = NonZeroU32::new(quotas.events_per_second).map(|per_second| {
            let burst = NonZeroU32::new(quotas.burst).unwrap_or(per_second);
            RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst))
        });
        Self {
            quotas,
            rate,
            in_flight: Arc::new(Semaphore::new(quotas.in_flight as usize)),
            subscriptions: Arc::new(Semaphore::new(quotas.subscriptions as usize)),
        }
    }
}

/// The gateway's quotas; cheap to clone.
#[derive(Clone)]
pub(crate) struct Limits {
    config: Arc<LimitsConfig>,
    journal: Journal,
    /// Created on a partner's first call: only authenticated partners of the policy get
    /// here, so the map is bounded by the policy.
    partners: Arc<Mutex<HashMap<String, Arc<PartnerState>>>>,
    /// `gateway_events_per_second`, when set.
    gateway_rate: Option<Arc<DefaultDirectRateLimiter>>,
    /// `gateway_in_flight` adapted to `publish_latency_target_ms`, when set.
    admission: Option<Arc<Admission>>,
}

fn refused(partner: &PartnerId, quota: &'static str, limit: u32, retry_after: Duration) -> Error {
    metrics::counter!(m::QUOTA_REFUSED, "partner" => partner.to_string(), "quota" => quota).increment(1);
    Error::QuotaExceeded { partner: partner.to_string(), quota, limit, retry_after }
}

impl Limits {
    pub fn new(config: LimitsConfig, journal: Journal) -> Self {
        let gateway_rate = NonZeroU32::new(config.gateway_events_per_second)
            .map(|rate| Arc::new(RateLimiter::direct(Quota::per_second(rate))));
        let admission = (config.gateway_in_flight > 0)
            .then(|| Admission::new(config.gateway_in_flight, Duration::from_millis(config.publish_latency_target_ms)));
        Self { config: Arc::new(config), journal, partners: Arc::default(), gateway_rate, admission }
    }

    fn state(&self, partner: &PartnerId) -> Arc<PartnerState> {
        let mut partners = self.partners.lock().unwrap_or_else(|e| e.into_inner());
        partners
            .entry(partner.to_string())
            .or_insert_with(|| Arc::new(PartnerState::new(self.config.quotas(partner.as_str()))))
            .clone()
    }

    /// How long a shed or unavailable caller is told to wait.
    pub fn retry_after(&self) -> Duration {
        Duration::from_millis(self.config.retry_after_ms)
    }

    /// Charges one event of `partner` to its rate quota (`events_per_second`), or refuses
    /// it. Unary publishes are charged in the layer as their headers arrive (`guard.rs`),
    /// before the gateway's admission: a call over its partner's rate then takes no place
    /// in flight, and costs no body decoding or handler.
    pub fn charge_rate(&self, partner: &PartnerId) -> Result<(), Error> {
        self.check_rate(partner, &self.state(partner))
    }

    fn check_rate(&self, partner: &PartnerId, state: &PartnerState) -> Result<(), Error> {
        if let Some(rate) = &state.rate {
            if let Err(not_until) = rate.check() {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                // Never advise less than a millisecond: a zero delay invites a busy loop.
                let wait = wait.max(Duration::from_millis(1));
                return Err(refused(partner, EVENTS_PER_SECOND, state.quotas.events_per_second, wait));
            }
        }
        Ok(())
    }

    /// Admits one publish of `partner`, or refuses it before any work: the journal queue
    /// past its high-water mark (OVERLOADED), the partner's rate (unless `rate_charged`
    /// already, by [`Limits::charge_rate`]), the gateway's rate (OVERLOADED), the
    /// partner's events in flight.
    /// The permit is the event's place in flight, held until its reply (or its
    /// rejection's journal entry) is settled.
    pub fn admit_publish(&self, partner: &PartnerId, rate_charged: bool) -> Result<OwnedSemaphorePermit, Error> {
        let mark = self.config.shed_queue_depth;
        if mark > 0 && self.journal.queue_depth() >= mark {
            metrics::counter!(m::PUBLISH_SHED, "partner" => partner.to_string()).increment(1);
            return Err(Error::Overloaded { retry_after: self.retry_after() });
        }
        let state = self.state(partner);
        if !rate_charged {
            self.check_rate(partner, &state)?;
        }
        if let Some(rate) = &self.gateway_rate {
            if let Err(not_until) = rate.check() {
                metrics::counter!(m::PUBLISH_SHED, "partner" => partner.to_string()).increment(1);
                let wait = not_until.wait_time_from(DefaultClock::default().now()).max(self.retry_after());
                return Err(Error::Overloaded { retry_after: wait });
            }
        }
        state
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| refused(partner, IN_FLIGHT, state.quotas.in_flight, self.retry_after()))
    }

    /// The layer every call passes: charges unary publishes to their partner's rate
    /// (the partner `policy` maps the connection's identity to), admits them into the
    /// gateway-wide limit in flight (`admission.rs`; every call passes when
    /// `gateway_in_flight` is 0) and ends unary calls unanswered after `request_timeout`.
    pub fn guard_layer(&self, request_timeout: Duration, policy: Arc<Policy>) -> GuardLayer {
        GuardLayer {
            limits: self.clone(),
            admission: self.admission.clone(),
            policy,
            retry_after: self.retry_after(),
            request_timeout,
        }
    }

    /// A slot for one open subscriber stream of `partner`, held by the stream's task.
    pub fn open_subscription(&self, partner: &PartnerId) -> Result<OwnedSemaphorePermit, Error> {
        let state = self.state(partner);
        state
            .subscriptions
            .clone()
            .try_acquire_owned()
            .map_err(|_| refused(partner, SUBSCRIPTIONS, state.quotas.subscriptions, self.retry_after()))
    }

    /// Whether `partner` may create one more named subscription besides the `kept` ones.
    pub fn check_named(&self, partner: &PartnerId, kept: usize) -> Result<(), Error> {
        let limit = self.config.quotas(partner.as_str()).named_subscriptions;
        if kept >= limit as usize {
            // Waiting does not help here: a name must be deleted (or expire) first.
            return Err(refused(partner, NAMED_SUBSCRIPTIONS, limit, Duration::ZERO));
        }
        Ok(())
    }

    /// After how long an unused named subscription expires; `None`: never.
    pub fn subscription_expiry(&self) -> Option<Duration> {
        (self.config.unused_subscription_secs > 0).then(|| Duration::from_secs(self.config.unused_subscription_secs))
    }
}
