//! `loket subscribe`: prints deliveries as NDJSON and, for a named subscription,
//! acknowledges what it has written out.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use loket_messagelog::timestamp::parse_rfc3339;
use loket_server::client::Client;
use loket_server::proto::{subscribe_request::Start, AckRequest, Earliest, Latest, SubscribeRequest};
use tokio_stream::StreamExt;

use crate::cli::SubscribeArgs;
use crate::output;
use crate::publish::connected;

/// Acknowledge after this many events, or when the stream has been quiet this long.
const ACK_EVERY: u64 = 100;
const ACK_IDLE: Duration = Duration::from_millis(200);

fn start(from: &str) -> anyhow::Result<Start> {
    Ok(match from {
        "earliest" => Start::Earliest(Earliest {}),
        "latest" => Start::Latest(Latest {}),
        s if s.bytes().all(|b| b.is_ascii_digit()) => {
            Start::Sequence(s.parse().with_context(|| format!("--from {s}: sequence too large"))?)
        }
        s => Start::Time(parse_rfc3339(s).with_context(|| {
            format!("--from {s:?}: expected earliest, latest, a sequence number or an RFC 3339 time")
        })?),
    })
}

pub async fn run(args: SubscribeArgs) -> anyhow::Result<ExitCode> {
    let request = SubscribeRequest {
        types: args.types.clone(),
        start: Some(start(&args.from)?),
        name: args.name.clone().unwrap_or_default(),
        limit: args.limit.unwrap_or(0),
    };
    if args.limit == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    let mut client = connected(&args.client).await?;
    let mut stream = match client.subscribe(request).await {
        Ok(s) => s.into_inner(),
        Err(status) => return Ok(output::report_failure("subscribe", &status)),
    };

    let mut acks = Acks { client: client.clone(), name: args.name.clone(), printed: 0, acked: 0, since_ack: 0 };
    let stdout = std::io::stdout();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(ACK_IDLE, stream.next()) => next,
            _ = &mut interrupted => break,
        };
        match next {
            Err(_idle) => acks.flush().await?,
            Ok(None) => break,
            Ok(Some(Err(status))) => {
                acks.flush().await?;
                return Ok(output::report_failure("subscribe", &status));
            }
            Ok(Some(Ok(delivery))) => {
                if delivery.first_retained != 0 {
                    eprintln!(
                        "warning: events before sequence {} have expired under the gateway's retention; starting there",
                        delivery.first_retained
                    );
                }
                let mut out = stdout.lock();
                writeln!(out, "{}", output::cloud_event(&delivery)).context("cannot write to standard output")?;
                out.flush().context("cannot write to standard output")?;
                drop(out);
                // The position, not the sequence: a released event carries its consent's position.
                acks.printed = delivery.position;
                acks.since_ack += 1;
                if acks.since_ack >= ACK_EVERY {
                    acks.flush().await?;
                }
            }
        }
    }
    acks.flush().await?;
    Ok(ExitCode::SUCCESS)
}

/// Acknowledges only what was already written to standard output, so a crash of this
/// process leads to redelivery, never to loss.
struct Acks {
    client: Client,
    name: Option<String>,
    printed: u64,
    acked: u64,
    since_ack: u64,
}

impl Acks {
    async fn flush(&mut self) -> anyhow::Result<()> {
        let Some(name) = &self.name else { return Ok(()) };
        if self.printed <= self.acked {
            return Ok(());
        }
        self.client.ack(AckRequest { name: name.clone(), sequence: self.printed }).await.map_err(|s| {
            anyhow::anyhow!("acknowledging up to {} failed ({:?}): {}", self.printed, s.code(), s.message())
        })?;
        self.acked = self.printed;
        self.since_ack = 0;
        Ok(())
    }
}
