//! The transport's timers (`[grpc]`): a unary call unanswered at `request_timeout_secs`
//! ends with DEADLINE_EXCEEDED (reason REQUEST_TIMEOUT) while streams outlive it, and a
//! client that stops answering HTTP/2 pings is disconnected by the keepalive while a
//! healthy one keeps its connection.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use loket_server::proto::{subscribe_request::Start, Earliest, SubscribeRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::Code;

fn valid(source: &str, id: &str) -> loket_server::proto::CloudEvent {
    event(source, "baggage", id, &example_for("baggage", "0000000007"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_unary_call_ends_with_deadline_exceeded_and_streams_outlive_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[grpc]\nrequest_timeout_secs = 1\n").await;
    let mut subscriber = gw.client("dtv").await;
    let request = SubscribeRequest { start: Some(Start::Earliest(Earliest {})), ..Default::default() };
    let mut deliveries = subscriber.subscribe(request).await.unwrap().into_inner();

    // A publish whose message never comes: the gateway answers it at its timeout.
    let status = publish_without_body(&gw.options("kmar")).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(reason(&status), "REQUEST_TIMEOUT");
    assert!(status.message().contains("request timeout of 1 s"), "{}", status.message());

    // Calls that are answered are not affected, and the subscription opened before the
    // timeout still delivers.
    let mut publisher = gw.client("kmar").await;
    let reply = publish(&mut publisher, valid("kmar", "after-timeout")).await.unwrap();
    let delivery = deliveries.message().await.unwrap().expect("the stream is still open");
    assert_eq!(delivery.sequence, reply.sequence);
    gw.stop().await;
}

/// A TCP proxy in front of the gateway, one upstream connection per client connection.
/// Frozen, it passes nothing on: the client's bytes and the gateway's (its pings) are
/// read and dropped, as if the client had stopped answering. `closed` turns true when
/// the gateway closes a connection.
struct Proxy {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    closed: watch::Receiver<bool>,
}

impl Proxy {
    async fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (closed_tx, closed) = watch::channel(false);
        let closed_tx = Arc::new(closed_tx);
        let (f, a) = (frozen.clone(), accepted.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let upstream = TcpStream::connect(to).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (gateway_read, gateway_write) = upstream.into_split();
                tokio::spawn(pass(client_read, gateway_write, f.clone(), None));
                tokio::spawn(pass(gateway_read, client_write, f.clone(), Some(closed_tx.clone())));
            }
        });
        Self { addr, frozen, accepted, closed }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }
}

/// Copies `from` to `to` until `from` ends (then `closed`, if given, is set); while
/// `frozen`, what is read is dropped. The sockets stay open either way.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    closed: Option<Arc<watch::Sender<bool>>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(n) if n > 0 => {
                if !frozen.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    if let Some(closed) = closed {
        closed.send_replace(true);
    }
    // Keep the other half open: only the gateway may close this connection.
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_pings_is_disconnected_and_a_healthy_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[grpc]\nkeepalive_interval_secs = 1\nkeepalive_timeout_secs = 1\n").await;
    let (mut stalled, mut healthy) = (Proxy::start(gw.addr).await, Proxy::start(gw.addr).await);
    let through = |proxy: &Proxy, partner: &str| {
        let mut options = gw.options(partner);
        options.server = proxy.url();
        options
    };
    let mut stalled_client = loket_server::client::connect(&through(&stalled, "dji")).await.unwrap();
    let mut healthy_client = loket_server::client::connect(&through(&healthy, "dtv")).await.unwrap();
    publish(&mut stalled_client, valid("dji", "before-stall")).await.unwrap();
    publish(&mut healthy_client, valid("dtv", "before-stall")).await.unwrap();

    stalled.frozen.store(true, Ordering::SeqCst);
    let waited = tokio::time::timeout(Duration::from_secs(60), stalled.closed.wait_for(|closed| *closed)).await;
    assert!(waited.is_ok(), "the gateway closes the connection whose pings go unanswered");

    // The healthy connection answered the same pings: still open, still serving, and the
    // same connection (its proxy accepted no other).
    assert!(!*healthy.closed.borrow_and_update(), "the healthy connection was closed");
    publish(&mut healthy_client, valid("dtv", "after-stall")).await.unwrap();
    assert!(!*healthy.closed.borrow(), "the healthy connection was closed");
    assert_eq!(healthy.accepted.load(Ordering::SeqCst), 1, "the healthy client had to reconnect");
    drop(stalled_client);
    gw.stop().await;
}
