//! `loket replay`: publishes a message log again, each event as the partner that
//! published it (one client and one PublishStream per partner), paced as asked, and
//! compares every outcome with the recorded one.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use loket_messagelog::LogLine;
use loket_server::proto::{publish_stream_reply, PublishRequest, PublishStreamReply};
use prost::Message;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tonic_types::StatusExt;

use self::publisher::{publisher, Publisher};
use crate::cli::ReplayArgs;
use crate::EXIT_REJECTED;

mod publisher;

/// Completeness scores closer than this are equal (they are ratios of small integers).
const EPSILON: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Max,
    /// Recorded gaps divided by this factor (1 = original pace).
    Factor(f64),
}

pub fn parse_rate(text: &str) -> anyhow::Result<Rate> {
    match text {
        "max" => Ok(Rate::Max),
        "original" => Ok(Rate::Factor(1.0)),
        other => {
            let factor = other
                .strip_suffix('x')
                .and_then(|f| f.parse::<f64>().ok())
                .filter(|f| f.is_finite() && *f > 0.0)
                .with_context(|| {
                    format!("--rate {other:?}: expected max, original or a positive factor such as 10x or 0.5x")
                })?;
            Ok(Rate::Factor(factor))
        }
    }
}

pub struct ReplayOptions {
    pub server: String,
    pub certs: PathBuf,
    pub rate: Rate,
    pub diff: Option<PathBuf>,
    /// Report progress on standard error (a bar on a terminal, lines otherwise).
    pub progress: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub malformed: u64,
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub mismatches: u64,
    /// Lines whose payload the export left out (a tester's export): not sent.
    pub omitted: u64,
    /// Lines of the gateway's own events (digests, handover findings), not sent: the
    /// gateway replayed into derives its own.
    pub gateway: u64,
}

impl Summary {
    pub fn to_json(self) -> Value {
        json!({
            "sent": self.sent, "accepted": self.accepted, "rejected": self.rejected,
            "duplicates": self.duplicates, "mismatches": self.mismatches, "malformed": self.malformed,
            "omitted": self.omitted, "gateway": self.gateway,
        })
    }
}

/// What the log says happened.
#[derive(Debug, Clone)]
enum Recorded {
    Accepted { completeness: Option<f64>, missing: Vec<String> },
    Rejected { reason: String, fields: Vec<String> },
}

impl Recorded {
    fn of(line: &LogLine) -> anyhow::Result<Recorded> {
        Ok(if line.accepted() {
            let mut missing = line.missing_expected();
            missing.sort();
            Recorded::Accepted { completeness: line.completeness_value()?, missing }
        } else {
            let mut fields: Vec<String> = line.violation_list()?.into_iter().map(|v| v.field).collect();
            fields.sort();
            Recorded::Rejected { reason: line.reason.clone().unwrap_or_default(), fields }
        })
    }

    fn to_json(&self) -> Value {
        match self {
            Recorded::Accepted { completeness, missing } => {
                json!({"outcome": "accepted", "completeness": completeness, "missingExpected": missing})
            }
            Recorded::Rejected { reason, fields } => {
                json!({"outcome": "rejected", "reason": reason, "violations": fields})
            }
        }
    }
}

struct Expectation {
    /// The event as sent, kept to send it again when the gateway advises a retry.
    request: PublishRequest,
    /// Retries so far.
    retry: u32,
    line: u64,
    id: String,
    source: String,
    event_type: String,
    subject: String,
    recorded: Recorded,
}

struct Replayed {
    outcome: Recorded,
    duplicate: bool,
}

/// A refused event's status as tonic's (with its details).
fn refusal(status: &tonic_types::pb::Status) -> tonic::Status {
    tonic::Status::with_details(
        tonic::Code::from(status.code),
        status.message.clone(),
        tonic::codegen::Bytes::from(status.encode_to_vec()),
    )
}

fn replayed(reply: &PublishStreamReply) -> Replayed {
    match &reply.outcome {
        Some(publish_stream_reply::Outcome::Accepted(a)) => {
            let mut missing = a.missing_expected.clone();
            missing.sort();
            Replayed {
                outcome: Recorded::Accepted { completeness: Some(a.completeness), missing },
                duplicate: a.duplicate,
            }
        }
        Some(publish_stream_reply::Outcome::Rejected(status)) => {
            let details = refusal(status).get_error_details();
            let mut fields: Vec<String> = details
                .bad_request()
                .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
                .unwrap_or_default();
            fields.sort();
            let reason = details.error_info().map(|i| i.reason.clone()).unwrap_or_default();
            Replayed { outcome: Recorded::Rejected { reason, fields }, duplicate: false }
        }
        None => Replayed {
            outcome: Recorded::Rejected { reason: "NO_OUTCOME".into(), fields: Vec::new() },
            duplicate: false,
        },
    }
}

/// Which parts of the outcome differ: "outcome", "violations", "completeness".
fn differences(recorded: &Recorded, replayed: &Recorded) -> Vec<&'static str> {
    match (recorded, replayed) {
        (
            Recorded::Accepted { completeness: c1, missing: m1 },
            Recorded::Accepted { completeness: c2, missing: m2 },
        ) => {
            let score_differs = match (c1, c2) {
                (Some(a), Some(b)) => (a - b).abs() > EPSILON,
                _ => false,
            };
            if score_differs || m1 != m2 {
                vec!["completeness"]
            } else {
                Vec::new()
            }
        }
        (Recorded::Rejected { reason: r1, fields: f1 }, Recorded::Rejected { reason: r2, fields: f2 }) => {
            if r1 != r2 || f1 != f2 {
                vec!["violations"]
            } else {
                Vec::new()
            }
        }
        _ => vec!["outcome"],
    }
}

struct Outcome {
    expectation: Expectation,
    replayed: Replayed,
}

enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { total: u64, last: Instant, started: Instant },
    Quiet,
}

impl Progress {
    fn new(enabled: bool, total: u64) -> Progress {
        if !enabled {
            return Progress::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events, {per_sec}, eta {eta} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Progress::Bar(bar)
        } else {
            Progress::Lines { total, last: Instant::now(), started: Instant::now() }
        }
    }

    fn update(&mut self, done: u64, mismatches: u64) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(done);
                if mismatches > 0 {
                    bar.set_message(format!("{mismatches} mismatches"));
                }
            }
            Progress::Lines { total, last, started } if last.elapsed() >= Duration::from_secs(2) || done == *total => {
                *last = Instant::now();
                let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprintln!("replayed {done}/{total} events ({rate:.0}/s), {mismatches} mismatches");
            }
            _ => {}
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut n = 0;
    for line in std::io::BufReader::new(file).lines() {
        if !line.with_context(|| format!("cannot read {}", path.display()))?.trim().is_empty() {
            n += 1;
        }
    }
    Ok(n)
}

/// Replays `path`; malformed lines are reported on standard error with their number and
/// skipped.
pub async fn replay(path: &Path, options: &ReplayOptions) -> anyhow::Result<Summary> {
    let total = count_lines(path)?;
    let mut diff = match &options.diff {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let (results_tx, mut results) = mpsc::unbounded_channel::<Outcome>();
    let mut progress = Progress::new(options.progress, total);
    let aggregator = tokio::spawn(async move {
        let mut summary = Summary::default();
        let mut done = 0;
        while let Some(Outcome { expectation, replayed }) = results.recv().await {
            done += 1;
            match &replayed.outcome {
                Recorded::Accepted { .. } => summary.accepted += 1,
                Recorded::Rejected { .. } => summary.rejected += 1,
            }
            if replayed.duplicate {
                summary.duplicates += 1;
            }
            let differs = differences(&expectation.recorded, &replayed.outcome);
            if !differs.is_empty() {
                summary.mismatches += 1;
                if let Some(out) = diff.as_mut() {
                    let line = json!({
                        "line": expectation.line,
                        "id": expectation.id,
                        "source": expectation.source,
                        "type": expectation.event_type,
                        "subject": expectation.subject,
                        "differs": differs,
                        "recorded": expectation.recorded.to_json(),
                        "replayed": replayed.outcome.to_json(),
                    });
                    writeln!(out, "{line}").context("cannot write the diff file")?;
                }
            }
            progress.update(done, summary.mismatches);
        }
        progress.finish();
        if let Some(out) = diff.as_mut() {
            out.flush().context("cannot write the diff file")?;
        }
        anyhow::Ok(summary)
    });

    let mut publishers: HashMap<String, Publisher> = HashMap::new();
    let mut sent = 0;
    let mut malformed = 0;
    let mut omitted = 0;
    let mut gateway = 0;
    let mut lines = 0;
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut started: Option<tokio::time::Instant> = None;
    let mut first_received: Option<i64> = None;
    let mut failure = None;
    for (index, text) in std::io::BufReader::new(file).lines().enumerate() {
        let number = index as u64 + 1;
        let text = text.with_context(|| format!("cannot read {}", path.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        lines += 1;
        let line = LogLine::parse(&text);
        if line.as_ref().is_ok_and(LogLine::is_omitted) {
            // The export left the payload out: there is nothing to publish.
            omitted += 1;
            continue;
        }
        let parsed = line.map_err(anyhow::Error::from).and_then(|line| {
            let event = line.cloud_event()?;
            let recorded = Recorded::of(&line)?;
            Ok((line, event, recorded))
        });
        let (line, event, recorded) = match parsed {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{}:{number}: skipped: {e:#}", path.display());
                malformed += 1;
                continue;
            }
        };
        if line.source == loket_domain::GATEWAY_SOURCE {
            gateway += 1;
            continue;
        }
        let partner = line.publisher().to_owned();
        if !publishers.contains_key(&partner) {
            match publisher(options, &partner, results_tx.clone()).await {
                Ok(p) => {
                    publishers.insert(partner.clone(), p);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Paced after connecting: a new partner's connection takes from the wait before its
        // event, not from the recorded gaps, and the clock starts when the first event is
        // ready to go.
        if let Rate::Factor(factor) = options.rate {
            let received = line.received_micros()?;
            let first = *first_received.get_or_insert(received);
            let start = *started.get_or_insert_with(tokio::time::Instant::now);
            let offset = Duration::from_micros((received - first).max(0) as u64).div_f64(factor);
            tokio::time::sleep_until(start + offset).await;
        }
        let publisher = publishers.get(&partner).expect("inserted above");
        let expectation = Expectation {
            request: PublishRequest { event: Some(event) },
            retry: 0,
            line: number,
            id: line.id.clone(),
            source: line.source.clone(),
            event_type: line.event_type.clone(),
            subject: line.subject.clone(),
            recorded,
        };
        if !publisher.send(expectation).await {
            // The reader ended early: its error is reported below.
            break;
        }
        sent += 1;
    }
    drop(results_tx);
    for (_, p) in publishers.drain() {
        match p.finish().await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(anyhow::anyhow!("reply reader failed: {e}"))),
        }
    }
    let mut summary = aggregator.await.context("result aggregation failed")??;
    if let Some(e) = failure {
        return Err(e);
    }
    summary.lines = lines;
    summary.sent = sent;
    summary.malformed = malformed;
    summary.omitted = omitted;
    summary.gateway = gateway;
    Ok(summary)
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let options = ReplayOptions {
        server: args.server.clone(),
        certs: args.certs.clone(),
        rate: parse_rate(&args.rate)?,
        diff: args.diff.clone(),
        progress: true,
    };
    let summary = replay(&args.file, &options).await?;
    println!("{}", summary.to_json());
    eprintln!(
        "sent {}, accepted {}, rejected {}, duplicates {}, mismatches {}, malformed lines {}",
        summary.sent, summary.accepted, summary.rejected, summary.duplicates, summary.mismatches, summary.malformed
    );
    if args.expect_recorded && summary.mismatches > 0 {
        eprintln!("{} outcomes differ from the recorded ones", summary.mismatches);
        return Ok(ExitCode::from(EXIT_REJECTED));
    }
    if summary.malformed > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
