//! One publishing partner of a replay: its PublishStream, the expectations matched in
//! order against the replies, and the retries the gateway advises. An event refused with
//! RESOURCE_EXHAUSTED or UNAVAILABLE and a RetryInfo is sent again after the advised,
//! jittered wait (`crate::retry`), at the end of the stream, with its expectation: only
//! its final reply is compared with the recorded outcome.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use loket_server::client::{connect, ClientOptions};
use loket_server::proto::{publish_stream_reply, PublishRequest};
use tokio::sync::{mpsc, Mutex, Notify};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::{refusal, replayed, Expectation, Outcome, ReplayOptions};
use crate::retry;

/// Requests per partner stream waiting to be sent.
const SEND_WINDOW: usize = 512;

/// The two channels a request goes out on, always together (the reader pairs them up).
struct Sending {
    requests: mpsc::Sender<PublishRequest>,
    expectations: mpsc::UnboundedSender<Expectation>,
}

/// Events sent and not finally answered (retries included).
#[derive(Default)]
struct Outstanding {
    count: AtomicUsize,
    settled: Notify,
}

impl Outstanding {
    fn settle(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.settled.notify_waiters();
    }
}

pub(super) struct Publisher {
    /// `None` once finished; a mutex so that a retry's pair of sends is not interleaved
    /// with another's.
    sending: Arc<Mutex<Option<Sending>>>,
    outstanding: Arc<Outstanding>,
    reader: JoinHandle<anyhow::Result<()>>,
}

/// Sends one expectation and its request; false when the stream has ended.
async fn send_pair(sending: &Mutex<Option<Sending>>, expectation: Expectation) -> bool {
    let guard = sending.lock().await;
    let Some(sending) = guard.as_ref() else { return false };
    let request = expectation.request.clone();
    sending.expectations.send(expectation).is_ok() && sending.requests.send(request).await.is_ok()
}

impl Publisher {
    /// Sends one event; false when the stream has ended (the reader reports why).
    pub async fn send(&self, expectation: Expectation) -> bool {
        self.outstanding.count.fetch_add(1, Ordering::AcqRel);
        send_pair(&self.sending, expectation).await
    }

    /// Waits for every event's final reply (retries included), ends the stream and
    /// returns the reader's result.
    pub async fn finish(mut self) -> Result<anyhow::Result<()>, tokio::task::JoinError> {
        loop {
            let settled = self.outstanding.settled.notified();
            if self.outstanding.count.load(Ordering::Acquire) == 0 || self.reader.is_finished() {
                break;
            }
            tokio::select! {
                () = settled => {}
                result = &mut self.reader => return result,
            }
        }
        self.sending.lock().await.take();
        self.reader.await
    }
}

pub(super) async fn publisher(
    options: &ReplayOptions,
    partner: &str,
    results: mpsc::UnboundedSender<Outcome>,
) -> anyhow::Result<Publisher> {
    let client_options =
        ClientOptions { server: options.server.clone(), certs: options.certs.clone(), partner: partner.to_owned() };
    let mut client =
        connect(&client_options).await.with_context(|| format!("cannot connect to {} as {partner}", options.server))?;
    let (requests, rx) = mpsc::channel(SEND_WINDOW);
    let mut replies = client
        .publish_stream(ReceiverStream::new(rx))
        .await
        .map_err(|s| anyhow::anyhow!("publish stream as {partner} refused ({:?}): {}", s.code(), s.message()))?
        .into_inner();
    let (expectations, mut expected) = mpsc::unbounded_channel::<Expectation>();
    let sending = Arc::new(Mutex::new(Some(Sending { requests, expectations })));
    let outstanding = Arc::new(Outstanding::default());
    let partner = partner.to_owned();
    let reader = {
        let (sending, outstanding) = (sending.clone(), outstanding.clone());
        tokio::spawn(async move {
            while let Some(reply) = replies.next().await {
                let reply = reply.map_err(|s| {
                    anyhow::anyhow!("publish stream as {partner} failed ({:?}): {}", s.code(), s.message())
                })?;
                let Some(mut expectation) = expected.recv().await else {
                    bail!("the gateway answered more events than {partner} sent");
                };
                let wait = match &reply.outcome {
                    Some(publish_stream_reply::Outcome::Rejected(status)) => {
                        retry::delay(&refusal(status), expectation.retry)
                    }
                    _ => None,
                };
                if let Some(wait) = wait {
                    // Later, from its own task: the reader keeps taking replies meanwhile.
                    let (sending, outstanding) = (sending.clone(), outstanding.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        expectation.retry += 1;
                        if !send_pair(&sending, expectation).await {
                            outstanding.settle();
                        }
                    });
                    continue;
                }
                let _ = results.send(Outcome { expectation, replayed: replayed(&reply) });
                outstanding.settle();
            }
            Ok(())
        })
    };
    Ok(Publisher { sending, outstanding, reader })
}
