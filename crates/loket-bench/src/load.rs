//! Load generators over gRPC with mutual TLS, one client connection per publishing partner.
//! Latency is measured from each request's *scheduled* send time in the open-loop
//! generator, so a stalled server cannot hide its stall (no coordinated omission).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use loket_server::client::{connect, Client, ClientOptions};
use loket_server::proto::publish_stream_reply::Outcome;
use tonic::Code;

use crate::corpus::{sources, Item};
use crate::stats::{histogram, record};

/// What one load run saw.
pub struct RunOutcome {
    pub done: u64,
    pub rejected: u64,
    /// Publishes that got no answer from the gateway (transport errors, timeouts), and the
    /// first such error.
    pub failed: u64,
    pub first_failure: Option<String>,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

pub struct Clients(HashMap<String, Client>);

impl Clients {
    pub async fn connect(url: &str, certs: &Path, items: &[Item]) -> anyhow::Result<Self> {
        let mut map = HashMap::new();
        for source in sources(items) {
            let options = ClientOptions { server: url.to_owned(), certs: certs.to_owned(), partner: source.clone() };
            let client = connect(&options).await.with_context(|| format!("cannot connect as {source}"))?;
            map.insert(source, client.max_decoding_message_size(64 * 1024 * 1024));
        }
        Ok(Self(map))
    }

    fn get(&self, source: &str) -> Client {
        self.0[source].clone()
    }

    /// The connection of `source`, for arms with a load of their own.
    pub fn client(&self, source: &str) -> Client {
        self.get(source)
    }
}

/// Whether a failed publish is the gateway refusing a bad event (expected: the corpus has
/// defects) rather than the benchmark breaking.
fn refused(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::InvalidArgument | Code::AlreadyExists | Code::PermissionDenied)
}

/// Each task's (answered, refused, latencies) of a closed-loop run, added up.
type TaskTally = tokio::task::JoinHandle<anyhow::Result<(u64, u64, Histogram<u64>)>>;

async fn sum(tasks: Vec<TaskTally>, start: Instant) -> anyhow::Result<RunOutcome> {
    let mut out = RunOutcome {
        done: 0,
        rejected: 0,
        failed: 0,
        first_failure: None,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    for t in tasks {
        let (done, rejected, h) = t.await??;
        out.done += done;
        out.rejected += rejected;
        out.latency.add(&h)?;
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// `concurrency` callers, each publishing the next event as soon as the previous is
/// acknowledged, until `total` events are done.
pub async fn unary_closed(
    clients: &Clients,
    items: &Arc<Vec<Item>>,
    concurrency: usize,
    total: u64,
) -> anyhow::Result<RunOutcome> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let items = items.clone();
        let next = next.clone();
        let clients: HashMap<String, Client> = clients.0.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let (mut done, mut rejected) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let item = &items[(i % items.len() as u64) as usize];
                let mut client = clients[&item.source].clone();
                let t0 = Instant::now();
                match client.publish(item.request(i / items.len() as u64)).await {
                    Ok(_) => {}
                    Err(s) if refused(&s) => rejected += 1,
                    Err(s) => anyhow::bail!("publish failed: {s}"),
                }
                record(&mut h, t0.elapsed());
                done += 1;
            }
            Ok::<_, anyhow::Error>((done, rejected, h))
        }));
    }
    sum(tasks, start).await
}

/// When each event of a run was handed to its transport, by event index, so that a
/// latency can be measured where the event comes out (a Kafka consumer, a delivery report).
pub struct SendLog {
    epoch: Instant,
    /// Nanoseconds after `epoch` plus one; zero while not sent.
    at: Vec<AtomicU64>,
}

impl SendLog {
    pub fn new(events: u64) -> Self {
        Self { epoch: Instant::now(), at: (0..events).map(|_| AtomicU64::new(0)).collect() }
    }

    pub fn mark(&self, index: u64, at: Instant) {
        if let Some(slot) = self.at.get(index as usize) {
            let nanos = u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1);
            slot.store(nanos + 1, Ordering::Release);
        }
    }

    pub fn get(&self, index: u64) -> Option<Instant> {
        match self.at.get(index as usize)?.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.epoch + Duration::from_nanos(n - 1)),
        }
    }
}

/// One publish stream per partner, each sending its share of `total` events as fast as
/// the stream's flow control allows. Latency is from the moment the stream takes an event.
pub async fn streams(clients: &Clients, items: &Arc<Vec<Item>>, total: u64) -> anyhow::Result<RunOutcome> {
    streams_logged(clients, items, total, None).await
}

/// [`streams`], also noting in `sent` when each event was taken.
pub async fn streams_logged(
    clients: &Clients,
    items: &Arc<Vec<Item>>,
    total: u64,
    sent: Option<Arc<SendLog>>,
) -> anyhow::Result<RunOutcome> {
    let mut per_source: HashMap<String, Vec<u64>> = HashMap::new();
    for i in 0..total {
        let item = &items[(i % items.len() as u64) as usize];
        per_source.entry(item.source.clone()).or_default().push(i);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (source, indices) in per_source {
        let mut client = clients.get(&source);
        let items = items.clone();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
            let stamps = sent_at.clone();
            let n = indices.len() as u64;
            let requests = futures::stream::iter(indices).map(move |i| {
                let now = Instant::now();
                stamps.lock().expect("stamps lock").push_back(now);
                if let Some(sent) = &sent {
                    sent.mark(i, now);
                }
                items[(i % items.len() as u64) as usize].request(i / items.len() as u64)
            });
            let mut replies = client.publish_stream(requests).await?.into_inner();
            let mut h = histogram();
            let (mut done, mut rejected) = (0u64, 0u64);
            while let Some(reply) = replies.message().await? {
                let t0 = sent_at.lock().expect("stamps lock").pop_front().unwrap_or_else(Instant::now);
                record(&mut h, t0.elapsed());
                done += 1;
                if let Some(Outcome::Rejected(status)) = &reply.outcome {
                    if rejected == 0 {
                        // What a run that must not refuse anything refused, on stderr.
                        eprintln!("{source}: first refused event {}: code {}, {}", reply.id, status.code, status.message);
                    }
                    rejected += 1;
                }
            }
            anyhow::ensure!(done == n, "stream of {n} events ended after {done} replies");
            Ok::<_, anyhow::Error>((done, rejected, h))
        }));
    }
    sum(tasks, start).await
}

/// Unary publishes offered at a fixed `rate` per second for `duration`, whatever the
/// server's pace; latency from each request's scheduled time.
pub async fn open_loop(
    clients: &Clients,
    items: &Arc<Vec<Item>>,
    rate: u64,
    duration: Duration,
    id_round_base: u64,
) -> anyhow::Result<RunOutcome> {
    open_loop_logged(clients, items, rate, duration, id_round_base, None).await
}

/// [`open_loop`], also noting in `sent` each event's scheduled time.
pub async fn open_loop_logged(
    clients: &Clients,
    items: &Arc<Vec<Item>>,
    rate: u64,
    duration: Duration,
    id_round_base: u64,
    sent: Option<Arc<SendLog>>,
) -> anyhow::Result<RunOutcome> {
    let total = (rate as f64 * duration.as_secs_f64()).max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let latency = Arc::new(Mutex::new(histogram()));
    let rejected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_failure: Arc<Mutex<Option<String>>> = Arc::default();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0u64;
    while i < total {
        let now = Instant::now();
        // Send everything whose time has come; sleep until the next one.
        while i < total && start + interval.mul_f64(i as f64) <= now {
            let scheduled = start + interval.mul_f64(i as f64);
            if let Some(sent) = &sent {
                sent.mark(i, scheduled);
            }
            let item = &items[(i % items.len() as u64) as usize];
            let request = item.request(id_round_base + i / items.len() as u64);
            let mut client = clients.get(&item.source);
            let (latency, rejected, failed) = (latency.clone(), rejected.clone(), failed.clone());
            let first_failure = first_failure.clone();
            tasks.spawn(async move {
                match client.publish(request).await {
                    Ok(_) => {}
                    Err(s) if refused(&s) => {
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(s) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_failure.lock().expect("failure lock").get_or_insert_with(|| s.to_string());
                    }
                }
                record(&mut latency.lock().expect("histogram lock"), scheduled.elapsed());
            });
            i += 1;
        }
        while let Some(done) = tasks.try_join_next() {
            done?;
        }
        if i < total {
            tokio::time::sleep_until((start + interval.mul_f64(i as f64)).into()).await;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    let latency = Arc::try_unwrap(latency).map_err(|_| anyhow::anyhow!("histogram still shared"))?;
    let first_failure = first_failure.lock().expect("failure lock").take();
    let failed = failed.load(Ordering::Relaxed);
    Ok(RunOutcome {
        done: total - failed,
        rejected: rejected.load(Ordering::Relaxed),
        failed,
        first_failure,
        elapsed: start.elapsed(),
        latency: latency.into_inner().expect("histogram lock"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_log_keeps_the_instant_of_each_marked_event() {
        let log = SendLog::new(3);
        let at = Instant::now() + Duration::from_millis(5);
        log.mark(1, at);
        log.mark(7, at);
        assert_eq!(log.get(0), None);
        assert_eq!(log.get(1), Some(at));
        assert_eq!(log.get(7), None);
    }
}
