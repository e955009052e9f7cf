//! A subscriber stream's buffer, bounded in bytes: the subscription task puts deliveries
//! in, tonic takes them out as the client reads. A task whose subscriber has not taken
//! anything for the slow-subscriber timeout ends the stream: the buffer is dropped at once
//! (so a subscriber that stopped reading holds no more than HTTP/2's own send window) and
//! the client reads the ending status whenever it reads again. The task also learns here
//! when the client has gone (the receiving stream was dropped).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use prost::Message;
use tokio::sync::Notify;
use tonic::Status;

use crate::proto::Delivery;

struct State {
    items: VecDeque<(Result<Delivery, Status>, usize)>,
    bytes: usize,
    /// The sending side is done: after the items, the stream ends.
    finished: bool,
    /// The receiving stream was dropped (the client went away).
    gone: bool,
}

struct Shared {
    state: Mutex<State>,
    max_bytes: usize,
    /// Wakes the reader: an item or the end.
    readable: Notify,
    /// Wakes the writer: room, or the reader gone.
    writable: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a send did not go through.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The client went away.
    Gone,
    /// Nothing was taken for the slow-subscriber timeout.
    Slow,
}

/// What an item takes in the buffer: a delivery its encoded size, a status nothing.
fn size_of(item: &Result<Delivery, Status>) -> usize {
    item.as_ref().map_or(0, Message::encoded_len)
}

/// The task's side.
pub(crate) struct Outbox {
    shared: Arc<Shared>,
    slow_after: Duration,
}

/// A new outbox of at most `max_bytes` buffered (one larger delivery still goes alone)
/// and the stream tonic serves from it.
pub(crate) fn outbox(
    max_bytes: usize,
    slow_after: Duration,
) -> (Outbox, impl Stream<Item = Result<Delivery, Status>> + Send + 'static) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { items: VecDeque::new(), bytes: 0, finished: false, gone: false }),
        max_bytes,
        readable: Notify::new(),
        writable: Notify::new(),
    });
    let reader = Reader { shared: shared.clone() };
    let stream = futures::stream::unfold(reader, |reader| async move {
        let item = reader.next().await?;
        Some((item, reader))
    });
    (Outbox { shared, slow_after }, stream)
}

impl Outbox {
    /// Queues one delivery, waiting while the buffer is full; refuses when the client has
    /// gone or has not read for the slow-subscriber timeout.
    pub async fn send(&self, item: Result<Delivery, Status>) -> Result<(), Refused> {
        let size = size_of(&item);
        self.room(size, self.deadline()).await?;
        self.push(item, size);
        Ok(())
    }

    /// How long a subscriber may take nothing before it counts as slow.
    pub fn slow_after(&self) -> Duration {
        self.slow_after
    }

    /// When a subscriber that starts waiting for room now counts as slow.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.slow_after
    }

    /// Waits until `size` more bytes fit (or the buffer is empty); refuses when the
    /// client has gone or nothing was taken until `deadline`. Takes nothing, so a task
    /// that also waits for other work can drop this wait and come back with the same
    /// deadline; [`Outbox::push`] then queues without waiting.
    pub async fn room(&self, size: usize, deadline: tokio::time::Instant) -> Result<(), Refused> {
        loop {
            let room = self.shared.writable.notified();
            {
                let state = self.shared.lock();
                if state.gone {
                    return Err(Refused::Gone);
                }
                if state.items.is_empty() || state.bytes + size <= self.shared.max_bytes {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(Refused::Slow);
            }
        }
    }

    /// Queues `item` of `size` bytes now (after [`Outbox::room`]: the task is the only
    /// writer, so the room is still there).
    pub fn push(&self, item: Result<Delivery, Status>, size: usize) {
        let mut state = self.shared.lock();
        state.bytes += size;
        state.items.push_back((item, size));
        drop(state);
        self.shared.readable.notify_one();
    }

    /// Resolves when the client has gone.
    pub async fn closed(&self) {
        loop {
            let changed = self.shared.writable.notified();
            if self.shared.lock().gone {
                return;
            }
            changed.await;
        }
    }

    /// Ends the stream after what is buffered, with `last` (a status) if given.
    pub fn finish(self, last: Option<Status>) {
        let mut state = self.shared.lock();
        if let Some(status) = last {
            state.items.push_back((Err(status), 0));
        }
        state.finished = true;
        drop(state);
        self.shared.readable.notify_one();
    }

    /// Drops everything buffered and ends the stream with `status`: for a subscriber
    /// that stopped reading.
    pub fn abort(self, status: Status) {
        let mut state = self.shared.lock();
        state.items.clear();
        state.bytes = 0;
        drop(state);
        self.finish(Some(status));
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // A task that ends without `finish` (a panic) still ends the stream.
        self.shared.lock().finished = true;
        self.shared.readable.notify_one();
    }
}

/// tonic's side.
struct Reader {
    shared: Arc<Shared>,
}

impl Reader {
    async fn next(&self) -> Option<Result<Delivery, Status>> {
        loop {
            let ready = self.shared.readable.notified();
            {
                let mut state = self.shared.lock();
                if let Some((item, size)) = state.items.pop_front() {
                    state.bytes -= size;
                    drop(state);
                    self.shared.writable.notify_one();
                    return Some(item);
                }
                if state.finished {
                    return None;
                }
            }
            ready.await;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.gone = true;
        state.items.clear();
        drop(state);
        self.shared.writable.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn delivery(bytes: usize) -> Delivery {
        Delivery {
            position: 1,
            event: Some(crate::proto::CloudEvent { data: vec![b'x'; bytes], ..Default::default() }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_reader_that_stops_is_refused_after_the_timeout_and_its_buffer_dropped() {
        let (outbox, stream) = outbox(10_000, Duration::from_millis(200));
        let mut stream = Box::pin(stream);
        // Two fit, the third waits for room and then gives up.
        outbox.send(Ok(delivery(4_000))).await.unwrap();
        outbox.send(Ok(delivery(4_000))).await.unwrap();
        assert_eq!(outbox.send(Ok(delivery(4_000))).await, Err(Refused::Slow));
        assert!(outbox.shared.lock().bytes > 0);
        outbox.abort(Status::resource_exhausted("slow"));
        let ending = stream.next().await.unwrap().unwrap_err();
        assert_eq!(ending.code(), tonic::Code::ResourceExhausted);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_reader_that_reads_makes_room_and_a_dropped_reader_is_noticed() {
        let (outbox, stream) = outbox(5_000, Duration::from_millis(200));
        let mut stream = Box::pin(stream);
        outbox.send(Ok(delivery(4_000))).await.unwrap();
        let (sent, read) = tokio::join!(outbox.send(Ok(delivery(4_000))), stream.next());
        assert!(sent.is_ok() && read.is_some());
        drop(stream);
        outbox.closed().await;
        assert_eq!(outbox.send(Ok(delivery(1))).await, Err(Refused::Gone));
    }
}
