//! Gateway-wide admission of unary publishes that bounds the latency of what it admits.
//!
//! On two cores the CPU (TLS, HTTP/2, validation), not the journal queue, saturates
//! first, and a fixed admission rate admits more than the gateway serves once each event
//! costs more: work then queues behind the admission and accepted replies take seconds.
//! What bounds latency is the number of publishes in flight (Little's law: latency =
//! in flight / service rate), so the gateway limits that number and adapts the limit to
//! the latency it observes (AIMD, as TCP's congestion window):
//!
//! - a publish is admitted or refused as soon as hyper hands over its headers, by the
//!   tower layer around the services (`guard.rs`): a refusal costs no
//!   body decoding, no certificate parsing, no handler, so refusing stays much cheaper
//!   than serving even when most calls are refused;
//! - every admitted publish's latency, from that moment to its reply, feeds a moving
//!   average;
//! - while the average is above `publish_latency_target_ms`, the limit is cut to 80 % of
//!   what is in flight, at most once per target period (the replies of the period before
//!   the cut are late anyway);
//! - while it is below, the limit grows by one per limit's worth of replies, up to
//!   `gateway_in_flight`;
//! - a publish that waited longer than the target before its handler ran, while the limit
//!   is cut and reached, is refused there: it would miss its latency whatever happens
//!   next, and refusing it is cheaper than serving it (CoDel's drop of old work);
//! - the places are shared fairly between the partners that want them (`shares.rs`), so
//!   a partner with more calls arriving does not take every place that frees.
//!
//! A refusal is `Error::Overloaded` (RESOURCE_EXHAUSTED, reason OVERLOADED, RetryInfo).
//! Streams are not counted: each stream is already bounded by its own window
//! (`[grpc] stream_in_flight`) and HTTP/2 flow control.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use loket_domain::PartnerId;

use super::shares::Shares;
use crate::http::metrics as m;
use crate::Error;

/// The limit never falls below this (or `gateway_in_flight` when smaller), so the
/// gateway keeps serving and measuring, and a slow gateway at low load (a debug build, a
/// large event on a slow link) does not shed a handful of concurrent callers.
const MIN_LIMIT: f64 = 16.0;
/// Weight of a new latency sample in the moving average.
const SMOOTHING: f64 = 1.0 / 16.0;
/// What is left of the in-flight count when the latency is over target.
const CUT: f64 = 0.8;

struct State {
    limit: f64,
    /// Moving average of admitted publishes' latency, in seconds.
    latency: f64,
    last_cut: Instant,
}

pub(crate) struct Admission {
    max: f64,
    min: f64,
    target: Duration,
    /// Changed only with `shares` locked; read without it.
    in_flight: AtomicU32,
    state: Mutex<State>,
    shares: Mutex<Shares>,
    /// The limit's gauge is first set on the first call: the metrics recorder is
    /// installed after the admission is built.
    gauge_set: Once,
    /// The gauge of publishes in flight, taken on the first call for the same reason.
    in_flight_gauge: OnceLock<metrics::Gauge>,
}

/// One admitted publish's place in flight; its reply's latency is sampled by
/// [`Ticket::finish`], and dropping it (a caller that went away) frees the place alone.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    arrived: Instant,
    /// The partner whose share the place counts in.
    partner: Arc<str>,
}

impl Admission {
    /// `max` publishes in flight at most; `target` the latency to hold (zero: a fixed
    /// limit of `max`, never adapted).
    pub fn new(max: u32, target: Duration) -> Arc<Self> {
        let max = f64::from(max.max(1));
        Arc::new(Self {
            max,
            min: MIN_LIMIT.min(max),
            target,
            in_flight: AtomicU32::new(0),
            state: Mutex::new(State { limit: max, latency: 0.0, last_cut: Instant::now() }),
            shares: Mutex::default(),
            gauge_set: Once::new(),
            in_flight_gauge: OnceLock::new(),
        })
    }

    fn shares(&self) -> std::sync::MutexGuard<'_, Shares> {
        self.shares.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn in_flight_gauge(&self) -> &metrics::Gauge {
        self.in_flight_gauge.get_or_init(|| metrics::gauge!(m::ADMISSION_IN_FLIGHT))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current limit of publishes in flight.
    #[cfg(test)]
    fn limit(&self) -> u32 {
        self.state().limit as u32
    }

    /// Admits one publish of `partner` (what its connection presented) arriving now, or
    /// refuses it: every place taken, or its share taken while others want theirs.
    pub fn admit(self: &Arc<Self>, partner: Arc<str>, retry_after: Duration) -> Result<Ticket, Error> {
        let limit = self.state().limit;
        self.gauge_set.call_once(|| metrics::gauge!(m::ADMISSION_LIMIT).set(limit.floor()));
        let arrived = Instant::now();
        let taken = {
            let mut shares = self.shares();
            let in_flight = self.in_flight.load(Ordering::Acquire);
            let taken = shares.take(partner, limit as u32, in_flight, arrived);
            if taken.is_ok() {
                self.in_flight.fetch_add(1, Ordering::AcqRel);
            }
            taken
        };
        match taken {
            Ok(partner) => {
                self.in_flight_gauge().increment(1.0);
                Ok(Ticket { admission: self.clone(), arrived, partner })
            }
            Err(refusal) => {
                metrics::counter!(m::ADMISSION_REFUSED, "reason" => refusal.label()).increment(1);
                Err(Error::Overloaded { retry_after })
            }
        }
    }

    /// Adapts the limit to one reply's latency.
    fn sample(&self, latency: Duration) {
        if self.target.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut state = self.state();
        state.latency += SMOOTHING * (latency.as_secs_f64() - state.latency);
        let before = state.limit;
        if state.latency > self.target.as_secs_f64() {
            if now.duration_since(state.last_cut) >= self.target {
                let in_flight = f64::from(self.in_flight.load(Ordering::Acquire));
                state.limit = (state.limit.min(in_flight) * CUT).max(self.min);
                state.last_cut = now;
            }
        } else {
            state.limit = (state.limit + 1.0 / state.limit).min(self.max);
        }
        if state.limit as u32 != before as u32 {
            metrics::gauge!(m::ADMISSION_LIMIT).set(state.limit.floor());
        }
    }
}

impl Ticket {
    /// At the handler, once `partner` is known: refuses a publish that waited longer than
    /// the target since its admission while the gateway is cut back (see the module).
    pub fn check_wait(&self, partner: &PartnerId, retry_after: Duration) -> Result<(), Error> {
        let waited = self.arrived.elapsed();
        metrics::histogram!(m::PUBLISH_WAIT).record(waited.as_secs_f64());
        let admission = &self.admission;
        let target = admission.target;
        // Only while the limit is cut and reached: at low load a publish that took long
        // to arrive (a large event on a slow link) is no sign of a queue.
        let limit = admission.state().limit;
        let full = f64::from(admission.in_flight.load(Ordering::Acquire)) >= limit.floor();
        if !target.is_zero() && waited > target && limit < admission.max && full {
            metrics::counter!(m::PUBLISH_SHED, "partner" => partner.to_string()).increment(1);
            return Err(Error::Overloaded { retry_after });
        }
        Ok(())
    }

    /// Ends the publish: its latency adapts the limit unless it was refused by a quota or
    /// load shedding further on (such a refusal is instant and says nothing of the load).
    pub fn finish<T>(self, result: &Result<T, Error>) {
        if !matches!(result, Err(Error::QuotaExceeded { .. } | Error::Overloaded { .. })) {
            self.admission.sample(self.arrived.elapsed());
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let admission = &self.admission;
        {
            let mut shares = admission.shares();
            shares.release(&self.partner);
            admission.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        admission.in_flight_gauge().decrement(1.0);
    }
}

/// An admitted publish's ticket, handed from the layer to the handler through the
/// request's extensions (which must be `Clone`).
#[derive(Clone)]
pub(crate) struct Admitted(pub Arc<Mutex<Option<Ticket>>>);

impl Admitted {
    /// The ticket of `request`, if the layer admitted it.
    pub fn take<T>(request: &tonic::Request<T>) -> Option<Ticket> {
        let admitted = request.extensions().get::<Admitted>()?;
        admitted.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Duration = Duration::from_millis(10);

    #[test]
    fn past_the_limit_a_publish_is_refused_and_a_finished_one_frees_its_place() {
        let admission = Admission::new(4, Duration::ZERO);
        let tickets: Vec<Ticket> = (0..4).map(|_| admission.admit(dtv(), RETRY).unwrap()).collect();
        assert!(matches!(admission.admit(dtv(), RETRY), Err(Error::Overloaded { .. })));
        drop(tickets);
        assert!(admission.admit(dtv(), RETRY).is_ok());
    }

    fn dtv() -> Arc<str> {
        Arc::from("dtv")
    }

    #[test]
    fn a_partner_holding_its_share_is_refused_while_another_is_admitted() {
        let admission = Admission::new(4, Duration::ZERO);
        let dji = || Arc::from("dji");
        let _theirs = admission.admit(dji(), RETRY).unwrap();
        let _mine: Vec<Ticket> = (0..2).map(|_| admission.admit(dtv(), RETRY).unwrap()).collect();
        // dtv holds its share (2 of 4): a third would leave less than a share free.
        assert!(matches!(admission.admit(dtv(), RETRY), Err(Error::Overloaded { .. })));
        assert!(admission.admit(dji(), RETRY).is_ok());
    }

    #[test]
    fn latency_over_target_cuts_the_limit_and_latency_under_it_grows_it_back() {
        let target = Duration::from_millis(1);
        let admission = Admission::new(100, target);
        let held: Vec<Ticket> = (0..50).map(|_| admission.admit(dtv(), RETRY).unwrap()).collect();
        std::thread::sleep(target * 2);
        for _ in 0..40 {
            admission.sample(Duration::from_secs(1));
        }
        let cut = admission.limit();
        assert!(cut <= 40, "cut to 80 % of the 50 in flight: {cut}");
        // Waited past the target before its handler while the limit is cut: refused.
        let partner: PartnerId = "dtv".parse().unwrap();
        assert!(matches!(held[0].check_wait(&partner, RETRY), Err(Error::Overloaded { .. })));
        drop(held);
        for _ in 0..2_000 {
            admission.sample(Duration::ZERO);
        }
        assert!(admission.limit() > cut, "grown back: {}", admission.limit());
        assert!(admission.limit() <= 100);
    }
}
