//! Connection limits at the accept loop: most open connections overall and per client IP
//! address, and the time a connection may take to become usable (its TLS handshake). A
//! connection past a limit is closed right after `accept`, before any handshake work, so
//! a flood of idle sockets cannot exhaust descriptors or memory; the slot is released when
//! tonic drops the connection. What a connection's certificate presents is resolved here
//! too, once, in its handshake task ([`Peer`]), for every request on it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::access::Certified;
use crate::http::metrics as m;

/// Connections made usable and waiting for the server to take them.
const ACCEPTED_BUFFER: usize = 64;

#[derive(Default)]
struct Counts {
    open: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// The connection limits of one listener.
#[derive(Clone)]
pub(crate) struct ConnectionGate {
    max: usize,
    per_address: usize,
    counts: Arc<Mutex<Counts>>,
}

/// An open connection's place under the limits, released on drop.
pub(crate) struct Slot {
    address: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.open -= 1;
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&self.address);
            }
        }
        metrics::gauge!(m::CONNECTIONS_OPEN).set(counts.open as f64);
    }
}

impl ConnectionGate {
    pub fn new(max: usize, per_address: usize) -> Self {
        Self { max, per_address, counts: Arc::default() }
    }

    /// A slot for a connection from `address`, or the name of the limit it exceeds.
    pub fn open(&self, address: IpAddr) -> Result<Slot, &'static str> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.open >= self.max {
            return Err("max_connections");
        }
        let from_address = counts.by_address.entry(address).or_insert(0);
        if *from_address >= self.per_address {
            return Err("max_connections_per_address");
        }
        *from_address += 1;
        counts.open += 1;
        metrics::gauge!(m::CONNECTIONS_OPEN).set(counts.open as f64);
        Ok(Slot { address, counts: self.counts.clone() })
    }
}

/// What tonic puts into the extensions of every request on a connection (its
/// `ConnectInfo`), resolved once when the connection became usable.
#[derive(Clone, Default)]
pub(crate) struct Peer {
    /// What the client certificate presents (`access/identity.rs`); `None` on plain TCP,
    /// where the `x-loket-partner` header names the caller per request.
    pub certified: Option<Arc<Certified>>,
    /// The key the admission shares its places by (`limits/shares.rs`): the presented
    /// name or OIN, empty for a certificate that presents neither.
    pub partner_key: Option<Arc<str>>,
}

impl Peer {
    /// The peer of a TLS connection whose certificate presented `certified`.
    pub fn certified(certified: Certified) -> Self {
        let key = certified.as_ref().map_or("", |presented| presented.key());
        Self { partner_key: Some(Arc::from(key)), certified: Some(Arc::new(certified)) }
    }
}

/// A connection that holds its slot for as long as it is open.
pub(crate) struct Limited<S> {
    inner: S,
    _slot: Slot,
    peer: Peer,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S> Connected for Limited<S> {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// The connections of `listener` under `gate`, each made usable by `prepare` (the TLS
/// handshake and what the certificate presents; for plain TCP the stream itself) in its
/// own task within `timeout`, so a slow or hostile client holds up no other. A failed or
/// late preparation is logged with the peer's address and the connection closed.
pub(crate) fn incoming<S, F, P>(
    listener: TcpListener,
    gate: ConnectionGate,
    timeout: Duration,
    shutdown: CancellationToken,
    prepare: P,
) -> ReceiverStream<Result<Limited<S>, io::Error>>
where
    S: Send + 'static,
    F: Future<Output = io::Result<(S, Peer)>> + Send + 'static,
    P: Fn(TcpStream) -> F + Send + 'static,
{
    let (tx, rx) = mpsc::channel(ACCEPTED_BUFFER);
    tokio::spawn(async move {
        loop {
            let (stream, peer): (TcpStream, SocketAddr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors and the like: wait a moment rather than spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            let slot = match gate.open(peer.ip()) {
                Ok(slot) => slot,
                Err(limit) => {
                    metrics::counter!(m::CONNECTIONS_REFUSED, "limit" => limit).increment(1);
                    tracing::debug!(peer = %peer, limit, "connection refused: limit reached");
                    continue;
                }
            };
            let prepared = prepare(stream);
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, prepared).await {
                    Ok(Ok((inner, peer))) => {
                        let _ = tx.send(Ok(Limited { inner, _slot: slot, peer })).await;
                    }
                    Ok(Err(e)) => tracing::warn!(peer = %peer, error = %e, "tls handshake refused"),
                    Err(_) => {
                        metrics::counter!(m::HANDSHAKE_TIMEOUTS).increment(1);
                        tracing::debug!(peer = %peer, "tls handshake timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
