//! `loket audit verify`: checks the journal's hash chain, on disk or in an exported log.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use loket_journal::audit::{verify_dir, ChainWalk, Link, Problem};
use loket_messagelog::LogLine;

use crate::cli::AuditVerifyArgs;

/// Exit status when the chain is broken.
const EXIT_TAMPERED: u8 = 3;

pub fn verify(args: AuditVerifyArgs) -> anyhow::Result<ExitCode> {
    let (walk, problem) = match &args.log {
        Some(log) => verify_log(log, args.partial)?,
        None => {
            let dir = args.data.join("journal");
            let report = verify_dir(&dir).with_context(|| {
                format!("cannot read the journal in {} (is the gateway still running?)", dir.display())
            })?;
            print_purges(&report);
            (report.walk, report.problem)
        }
    };
    if args.log.is_some() && walk.start.position > 0 {
        println!(
            "the log starts after chain position {} (earlier entries expired or are not in it): its first prevhash {} must equal the checkpoint hash `loket audit verify` prints for the journal",
            walk.start.position,
            hex::encode(walk.start.hash)
        );
    }
    if !walk.purged.is_empty() {
        let mut by_record: std::collections::BTreeMap<u64, Vec<String>> = std::collections::BTreeMap::new();
        for (entry, record) in &walk.purged {
            by_record.entry(*record).or_default().push(entry.to_string());
        }
        for (record, entries) in by_record {
            println!(
                "payload removed by purge record {record} (links checked, content no longer hashable): {}",
                entries.join(", ")
            );
        }
    }
    let tip = walk.tip();
    match problem {
        None => {
            println!(
                "chain intact: {} entries ({} accepted, {} rejected){}; tip position {} hash {}",
                walk.entries,
                walk.accepted,
                walk.rejected,
                if walk.gaps > 0 { format!(", a partial log with {} gaps", walk.gaps) } else { String::new() },
                tip.position,
                hex::encode(tip.hash)
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(problem) => {
            println!("chain broken after {} intact entries: {problem}", walk.entries);
            Ok(ExitCode::from(EXIT_TAMPERED))
        }
    }
}

/// What left the journal: where the retained chain starts and every purge record.
fn print_purges(report: &loket_journal::audit::AuditReport) {
    let r = &report.retained;
    if r.checkpoint_position > 0 {
        println!(
            "expired: chain positions 1..={} (events before sequence {}, rejections before {}) removed by purge record {}; checkpoint hash {}",
            r.checkpoint_position,
            r.first_sequence,
            r.first_rejection,
            r.purge,
            hex::encode(r.checkpoint_hash)
        );
    }
    for p in &report.purges {
        let at = loket_domain::time::rfc3339(p.at_micros).unwrap_or_default();
        let case = if p.case.is_empty() { String::new() } else { format!(" case {}", p.case) };
        println!(
            "purge record {} {} at {at} by {}{case}: {} (events below {}, rejections below {}, payloads removed: {})",
            p.number,
            p.kind,
            p.actor,
            p.reason,
            p.events_below,
            p.rejections_below,
            p.stripped.len()
        );
    }
}

/// Walks an exported log. A filtered export (`partial`) may skip chain positions; the
/// links between consecutive entries are still checked.
fn verify_log(path: &Path, partial: bool) -> anyhow::Result<(ChainWalk, Option<Problem>)> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // A complete export of a journal whose first entries expired starts later: the walk
    // starts at its first line, whose prevhash is the checkpoint `audit verify` prints.
    let mut walk = if partial { ChainWalk::partial() } else { ChainWalk::from_first_entry() };
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = LogLine::parse(&line).with_context(|| format!("line {number}"))?;
        anyhow::ensure!(
            parsed.pseudonymised != Some(true),
            "line {number}: a pseudonymised (tester's) export carries no hashes; verify an auditor's export"
        );
        anyhow::ensure!(parsed.hash.is_some(), "line {number}: no hash (not an export of a gateway's journal)");
        let checked = if parsed.accepted() {
            let record = parsed.stored_event().with_context(|| format!("line {number}"))?;
            walk.check(&Link::event(&record))
        } else {
            let record = parsed.stored_rejection().with_context(|| format!("line {number}"))?;
            walk.check(&Link::rejection(&record))
        };
        if let Err(problem) = checked {
            let detail = format!("line {number}: {}", problem.detail);
            return Ok((walk, Some(Problem { detail, ..problem })));
        }
    }
    Ok((walk, None))
}
