//! `loket export`: the message log as NDJSON, from a running gateway (Export RPC) or from a
//! stopped gateway's data directory. Both paths build the same `ExportRequest`, the same
//! journal filter and the same entries (`loket_server::messagelog`), so their output is identical.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use loket_journal::{Journal, JournalConfig};
use loket_messagelog::timestamp::parse_rfc3339;
use loket_messagelog::LogLine;
use loket_server::client::{connect, ClientOptions};
use loket_server::proto::{export_request, ExportRequest, Outcomes};
use tokio_stream::StreamExt;

use crate::cli::ExportArgs;
use crate::output;

fn bound_sequence_or_time(text: &str, flag: &str) -> anyhow::Result<Result<u64, prost_types::Timestamp>> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Ok(text.parse().with_context(|| format!("{flag} {text}: sequence too large"))?));
    }
    parse_rfc3339(text)
        .map(Err)
        .with_context(|| format!("{flag} {text:?}: expected a sequence number or an RFC 3339 time"))
}

pub fn request(args: &ExportArgs) -> anyhow::Result<ExportRequest> {
    let from = match &args.from {
        None => None,
        Some(f) => Some(match bound_sequence_or_time(f, "--from")? {
            Ok(s) => export_request::From::FromSequence(s),
            Err(t) => export_request::From::FromTime(t),
        }),
    };
    let to = match &args.to {
        None => None,
        Some(t) => Some(match bound_sequence_or_time(t, "--to")? {
            Ok(s) => export_request::To::ToSequence(s),
            Err(t) => export_request::To::ToTime(t),
        }),
    };
    let outcomes = if args.all {
        Outcomes::All
    } else if args.rejected {
        Outcomes::Rejected
    } else {
        Outcomes::Accepted
    };
    Ok(ExportRequest {
        from,
        to,
        types: args.types.clone(),
        sources: args.sources.clone(),
        subjects: args.cases.clone(),
        outcomes: outcomes as i32,
    })
}

fn open_output(path: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

pub async fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let request = request(&args)?;
    let mut out = open_output(args.output.as_deref())?;
    let mut count = 0u64;
    if let Some(data) = &args.data {
        // Recorded like every export, in the data directory's own access store.
        let record = loket_server::messagelog::OfflineExport::start(data, &request).await.with_context(|| {
            format!("cannot record the export in {} (is the gateway still running?)", data.display())
        })?;
        let env: std::collections::HashMap<String, String> = std::env::vars().collect();
        let profile = loket_server::Config::load(args.config.as_deref(), &env)?.profile()?;
        let written = export_offline(data, request, &profile, &mut out);
        record.finish(*written.as_ref().unwrap_or(&0), written.is_ok())?;
        count = written?;
    } else {
        let options =
            ClientOptions { server: args.server.clone(), certs: args.certs.clone(), partner: args.partner.clone() };
        let mut client = connect(&options).await.with_context(|| format!("cannot connect to {}", args.server))?;
        let mut stream = match client.export(request).await {
            Ok(s) => s.into_inner(),
            Err(status) => return Ok(output::report_failure("export", &status)),
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(entry) => {
                    writeln!(out, "{}", LogLine::from_export(entry).to_json()).context("cannot write the export")?;
                    count += 1;
                }
                Err(status) => {
                    out.flush().context("cannot write the export")?;
                    return Ok(output::report_failure("export", &status));
                }
            }
        }
    }
    out.flush().context("cannot write the export")?;
    eprintln!("exported {count} entries");
    Ok(ExitCode::SUCCESS)
}

/// Exports from `<data>/journal` of a stopped gateway.
pub fn export_offline(
    data: &Path,
    request: ExportRequest,
    profile: &loket_domain::Profile,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let dir = data.join("journal");
    anyhow::ensure!(dir.is_dir(), "{} holds no journal (expected {})", data.display(), dir.display());
    let filter = loket_server::messagelog::filter(&request, profile)?;
    let journal = Journal::open(&JournalConfig {
        dir: dir.clone(),
        cache_capacity_bytes: 64 << 20,
        max_batch: 1,
        ..JournalConfig::default()
    })
    .with_context(|| format!("cannot open the journal in {} (is the gateway still running?)", dir.display()))?;
    let mut count = 0;
    for entry in journal.entries(filter)? {
        let entry = entry?;
        writeln!(out, "{}", LogLine::from_export(loket_server::messagelog::export_entry(entry, profile)).to_json())
            .context("cannot write the export")?;
        count += 1;
    }
    journal.close()?;
    Ok(count)
}
