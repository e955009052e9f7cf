//! A publish stream: up to `in_flight` events of one stream are checked and in the journal
//! queue at once; replies leave in request order, and a refused event gets its
//! `google.rpc.Status` in its reply while the stream goes on. A stream with nothing pending
//! that sends no event for `idle` is ended (STREAM_IDLE), so forgotten streams do not
//! hold the gateway's resources.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use loket_domain::PartnerId;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::Publisher;
use crate::error::to_rpc_status;
use crate::proto::{publish_stream_reply, PublishRequest, PublishStreamReply};
use crate::trace::CallTrace;
use crate::Error;

type PendingReply = Pin<Box<dyn Future<Output = PublishStreamReply> + Send>>;

/// Serves one publish stream from `partner` (whose call carried the trace context `call`)
/// until the client ends it or the gateway stops.
pub(crate) fn publish_stream(
    publisher: Publisher,
    partner: PartnerId,
    call: CallTrace,
    mut inbound: Streaming<PublishRequest>,
    in_flight: usize,
    idle: Duration,
    stopping: CancellationToken,
) -> ReceiverStream<Result<PublishStreamReply, Status>> {
    let (tx, rx) = mpsc::channel(in_flight);
    tokio::spawn(async move {
        let idle_timer = tokio::time::sleep(idle);
        tokio::pin!(idle_timer);
        // Replies leave in request order; the journal sequences events in submit order,
        // so one stream's events keep their order too.
        let mut pending: FuturesOrdered<PendingReply> = FuturesOrdered::new();
        let mut reading = true;
        let mut interrupted = false;
        while reading || !pending.is_empty() {
            tokio::select! {
                biased;
                Some(reply) = pending.next(), if !pending.is_empty() => {
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                    idle_timer.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                // On shutdown, stop taking new events but answer every one already taken.
                () = stopping.cancelled(), if reading => {
                    reading = false;
                    interrupted = true;
                }
                () = &mut idle_timer, if reading && pending.is_empty() => {
                    tracing::debug!(partner = %partner, "idle publish stream closed");
                    let _ = tx.send(Err(Error::StreamIdle { seconds: idle.as_secs() }.into())).await;
                    return;
                }
                message = inbound.message(), if reading && pending.len() < in_flight => match message {
                    Ok(Some(req)) => {
                        idle_timer.as_mut().reset(tokio::time::Instant::now() + idle);
                        pending.push_back(publish_one(&publisher, &partner, req, &call));
                    }
                    Ok(None) => reading = false,
                    Err(status) => {
                        tracing::debug!(%status, partner = %partner, "publish stream ended by the client");
                        reading = false;
                    }
                },
            }
        }
        if interrupted {
            // Tell the publisher to reconnect and resend what got no reply.
            let _ = tx.send(Err(Error::ShuttingDown.into())).await;
        }
    });
    ReceiverStream::new(rx)
}

fn publish_one(publisher: &Publisher, partner: &PartnerId, req: PublishRequest, call: &CallTrace) -> PendingReply {
    let id = req.event.as_ref().map(|e| e.id.clone()).unwrap_or_default();
    let reply = publisher.start(partner, req, call, false);
    Box::pin(async move {
        let outcome = match reply.await {
            Ok(reply) => publish_stream_reply::Outcome::Accepted(reply),
            Err(refusal) => publish_stream_reply::Outcome::Rejected(to_rpc_status(&refusal.into())),
        };
        PublishStreamReply { id, outcome: Some(outcome) }
    })
}
