//! The `overload` arm: a gateway offered three times what it sustains, from several
//! partners, plus one abusive partner offering as much again alone. First the saturation
//! rate S is measured (closed-loop unary publishes); then for the run every partner but
//! the abuser offers its share of 3·S as an open loop (latency from each request's
//! scheduled time), the abuser 3·S under a rate quota of S/10, against a gateway with the
//! production defaults otherwise (its admission adapts the publishes in flight to their
//! latency; no fixed admission rate). Reported per partner:
//! accepted/s, shed (RESOURCE_EXHAUSTED, by reason), p99 of the accepted, errors of any
//! other kind (which must be 0: no broken pipe, no timeout), and the gateway's RSS; and
//! for the gateway, from its `/metrics`, how long accepted publishes took inside it and
//! waited before their handler, so that a wait outside it (in the client's queue for
//! HTTP/2 streams, in socket buffers) shows as the difference. A call whose stream the
//! gateway's HTTP/2 refused (REFUSED_STREAM: not processed) is sent again once, as gRPC
//! clients do transparently (gRFC A6), and counted in the note. The client's own lag is
//! reported apart: each call's latency is also taken from the moment its task actually
//! sent it (the load generator shares the cores with the gateway and may start calls
//! late), with the p99 of that lag and the CPU the client and the gateway used; and a
//! `Status` call every 50 ms on each partner's connection (no admission, no journal)
//! shows what a round trip through the busy connection and both processes costs alone.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tonic::Code;
use tonic_types::StatusExt;

use crate::corpus::{sources, Item};
use crate::load::{self, Clients};
use crate::procs::{own_cpu, ServerProcess};
use crate::stats::{histogram, record, ArmResult};

/// What one partner's open loop saw.
#[derive(Default)]
struct Tally {
    accepted: AtomicU64,
    /// Refused by intake (the corpus has defects): answered, not shed.
    refused: AtomicU64,
    over_quota: AtomicU64,
    overloaded: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Calls the gateway's HTTP/2 refused (REFUSED_STREAM) and that were sent again.
    refused_streams: AtomicU64,
    /// Accepted, from the scheduled time (what a client with this schedule waits).
    latency: Mutex<Option<Histogram<u64>>>,
    /// Accepted, from the moment the call was sent.
    from_send: Mutex<Option<Histogram<u64>>>,
    /// Every call: how late the client sent it after its scheduled time.
    lag: Mutex<Option<Histogram<u64>>>,
}

/// Records `latency` into the histogram behind `h`.
fn add(h: &Mutex<Option<Histogram<u64>>>, latency: Duration) {
    record(h.lock().expect("histogram lock").get_or_insert_with(histogram), latency);
}

/// The p99 of the histogram behind `h`, in ms.
fn p99_ms(h: &Mutex<Option<Histogram<u64>>>) -> String {
    let h = h.lock().expect("histogram lock");
    h.as_ref().map_or("-".to_owned(), |h| format!("{:.0} ms", h.value_at_quantile(0.99) as f64 / 1000.0))
}

impl Tally {
    fn note(&self, outcome: Result<(), tonic::Status>, scheduled: Instant, sent: Instant) {
        add(&self.lag, sent.duration_since(scheduled));
        match outcome {
            Ok(()) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                add(&self.latency, scheduled.elapsed());
                add(&self.from_send, sent.elapsed());
            }
            Err(s) if matches!(s.code(), Code::InvalidArgument | Code::AlreadyExists | Code::PermissionDenied) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                let reason = s.get_details_error_info().map(|i| i.reason).unwrap_or_default();
                let counter = if reason == "OVERLOADED" { &self.overloaded } else { &self.over_quota };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(s) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.first_error.lock().expect("error lock").get_or_insert_with(|| s.to_string());
            }
        }
    }
}

/// One partner's events offered at `rate` per second for `duration`, each call in its own
/// task so a slow answer never delays the schedule.
async fn offer(clients: Arc<Clients>, items: Vec<Item>, rate: f64, duration: Duration, tally: Arc<Tally>) {
    let total = (rate * duration.as_secs_f64()).max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let item = &items[(i % items.len() as u64) as usize];
        // Rounds from 10^7 on: never the ids of the saturation run.
        let request = item.request(10_000_000 + i / items.len() as u64);
        let mut client = clients.client(&item.source);
        let tally = tally.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let mut outcome = client.publish(request.clone()).await.map(drop);
            // A stream refused at HTTP/2 never reached the gateway's handler: gRPC clients
            // send such a call again transparently (gRFC A6), and so does this one, once.
            // The refusals are counted in the arm's note, not hidden.
            if outcome.as_ref().is_err_and(loket_server::client::refused_stream) {
                tally.refused_streams.fetch_add(1, Ordering::Relaxed);
                outcome = client.publish(request).await.map(drop);
            }
            tally.note(outcome, scheduled, sent);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// `Status` round trips on `partner`'s connection every 50 ms until `done`; their latency.
async fn probe(clients: Arc<Clients>, partner: String, done: Arc<std::sync::atomic::AtomicBool>) -> Histogram<u64> {
    let mut h = histogram();
    let mut client = clients.client(&partner);
    while !done.load(Ordering::Relaxed) {
        let sent = Instant::now();
        if client.status(loket_server::proto::StatusRequest {}).await.is_ok() {
            record(&mut h, sent.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h
}

pub async fn overload_arm(
    work: &Path,
    certs_dir: &Path,
    items: &Arc<Vec<Item>>,
    saturation_events: u64,
    concurrency: usize,
    run: Duration,
) -> anyhow::Result<Vec<ArmResult>> {
    let partners = sources(items);
    anyhow::ensure!(partners.len() >= 2, "the overload arm needs events of at least two partners");
    // The abuser: the partner with the most events, so it can send at any rate.
    let count = |p: &String| items.iter().filter(|i| &i.source == p).count();
    let abuser = partners.iter().max_by_key(|p| count(p)).expect("two partners").clone();

    // Saturation, measured without quotas in the way.
    let unlimited = "[limits]\nevents_per_second = 0\nin_flight = 1000000\nshed_queue_depth = 0\n";
    let server = ServerProcess::gateway(work, "overload-saturation", certs_dir, unlimited)?;
    let clients = Clients::connect(&server.url(), certs_dir, items).await?;
    let saturated = load::unary_closed(&clients, items, concurrency, saturation_events).await?;
    server.stop()?;
    let s = (saturated.done as f64 / saturated.elapsed.as_secs_f64()).max(10.0);
    eprintln!(
        "overload: saturation {s:.0} events/s; offering 3x from {} partners plus {abuser} alone",
        partners.len() - 1
    );

    // The run: production defaults and the abuser's quota.
    let quota = ((s / 10.0) as u64).max(1);
    let config = format!("[limits.partners.{abuser}]\nevents_per_second = {quota}\nburst = {quota}\n");
    let server = ServerProcess::gateway(work, "overload", certs_dir, &config)?;
    let clients = Arc::new(Clients::connect(&server.url(), certs_dir, items).await?);
    let others: Vec<&String> = partners.iter().filter(|p| **p != abuser).collect();
    let mut offered: HashMap<String, f64> =
        others.iter().map(|p| ((*p).clone(), 3.0 * s / others.len() as f64)).collect();
    offered.insert(abuser.clone(), 3.0 * s);
    let tallies: HashMap<String, Arc<Tally>> = partners.iter().map(|p| (p.clone(), Arc::default())).collect();
    let start = Instant::now();
    let (client_cpu0, gateway_cpu0) = (own_cpu()?, server.cpu()?);
    let mut loops = Vec::new();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut probes = Vec::new();
    for partner in &partners {
        let own: Vec<Item> = items.iter().filter(|i| &i.source == partner).cloned().collect();
        loops.push(tokio::spawn(offer(clients.clone(), own, offered[partner], run, tallies[partner].clone())));
        probes.push(tokio::spawn(probe(clients.clone(), partner.clone(), done.clone())));
    }
    for l in loops {
        l.await?;
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut round_trips = histogram();
    for p in probes {
        round_trips.add(p.await?)?;
    }
    eprintln!(
        "overload: a Status round trip on the partners' connections meanwhile (no admission): p50 {:.0} ms, p99 {:.0} ms ({} probes)",
        round_trips.value_at_quantile(0.5) as f64 / 1000.0,
        round_trips.value_at_quantile(0.99) as f64 / 1000.0,
        round_trips.len(),
    );
    let (client_cpu, gateway_cpu) = (own_cpu()? - client_cpu0, server.cpu()? - gateway_cpu0);
    eprintln!(
        "overload: CPU over the {:.1} s run: gateway {:.1} s, the bench client (load generator) {:.1} s, of {} cores",
        elapsed.as_secs_f64(),
        gateway_cpu.as_secs_f64(),
        client_cpu.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, usize::from),
    );
    let (_, peak) = server.memory()?;
    // Where the accepted publishes waited: in the gateway (from hyper handing over the
    // headers to the reply, and the part of it before the handler ran), or before.
    let page = server.scrape()?;
    let bucket = |name: &str, filter: &str, q: f64| {
        quantile_bucket(&page, name, filter, q).map_or("-".to_owned(), |b| format!("{b} s"))
    };
    eprintln!(
        "overload: in the gateway, accepted publishes took p50 ≤ {} and p99 ≤ {} (handler to reply); publishes waited p50 ≤ {}, p99 ≤ {} before the handler; admission limit at the end {}",
        bucket("loket_publish_duration_seconds", "outcome=\"accepted\"", 0.5),
        bucket("loket_publish_duration_seconds", "outcome=\"accepted\"", 0.99),
        bucket("loket_publish_wait_seconds", "", 0.5),
        bucket("loket_publish_wait_seconds", "", 0.99),
        gauge(&page, "loket_publish_admission_limit").unwrap_or_else(|| "-".to_owned()),
    );
    let refused = |reason: &str| {
        let series = format!("loket_publish_admission_refused_total{{reason=\"{reason}\"}}");
        gauge(&page, &series).unwrap_or_else(|| "0".to_owned())
    };
    eprintln!(
        "overload: refused as they arrived: {} with every place taken, {} over their partner's fair share",
        refused("limit"),
        refused("share")
    );
    server.stop()?;

    let mut out = Vec::new();
    let mut errors = 0;
    for partner in &partners {
        let t = &tallies[partner];
        let accepted = t.accepted.load(Ordering::Relaxed);
        let refused = t.refused.load(Ordering::Relaxed);
        let (quota_shed, load_shed) = (t.over_quota.load(Ordering::Relaxed), t.overloaded.load(Ordering::Relaxed));
        let other = t.errors.load(Ordering::Relaxed);
        errors += other;
        let role = if *partner == abuser { "abusive" } else { "partner" };
        let mut note = format!(
            "{role}, offered {:.0}/s; shed {} (quota {quota_shed}, overloaded {load_shed}); other errors {other}; streams refused by HTTP/2 and sent again {}; accepted p99 from send {}, client send lag p99 {}",
            offered[partner],
            quota_shed + load_shed,
            t.refused_streams.load(Ordering::Relaxed),
            p99_ms(&t.from_send),
            p99_ms(&t.lag),
        );
        if let Some(e) = t.first_error.lock().expect("error lock").take() {
            note.push_str(&format!(" (first: {e})"));
        }
        let mut result =
            ArmResult::new(&format!("overload-{partner}"), accepted + refused, refused, elapsed).note(note);
        if let Some(h) = t.latency.lock().expect("histogram lock").as_ref() {
            result = result.latency(h);
        }
        result.peak_rss_mib = Some(peak as f64 / (1024.0 * 1024.0));
        out.push(result);
    }
    if errors > 0 {
        eprintln!("overload: {errors} calls failed with something other than RESOURCE_EXHAUSTED (must be 0)");
    }
    Ok(out)
}

/// The upper bound of the Prometheus histogram bucket holding quantile `q` of `name`
/// (series whose labels contain `filter`).
fn quantile_bucket(page: &str, name: &str, filter: &str, q: f64) -> Option<String> {
    let prefix = format!("{name}_bucket{{");
    let buckets: Vec<(String, f64)> = page
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(filter))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?.to_owned();
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    let total = buckets.last()?.1;
    (total > 0.0).then_some(())?;
    buckets.into_iter().find(|(_, count)| *count >= q * total).map(|(le, _)| le)
}

/// A series' value as the page shows it (a gauge, or a counter with its labels).
fn gauge(page: &str, name: &str) -> Option<String> {
    page.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_owned)
}
