//! `loket`: the gateway (`serve`) and the partner-side commands that talk to it.

mod access;
mod audit;
mod cli;
mod demo;
mod export;
mod gen;
mod health;
mod output;
mod publish;
mod quality;
mod replay;
mod retry;
mod schemas;
mod serve;
mod subscribe;
mod subscriptions;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{AuditCommand, CertsCommand, Cli, Command, QualityCommand, SchemasCommand};

/// mimalloc asks for transparent huge pages (MADV_HUGEPAGE) for its arenas; each touched
/// 2 MiB region then stays resident whole, which cost the gateway ~16 % of its RSS after a
/// load (BENCHMARKS.md). Opting the process out keeps ordinary 4 KiB pages. Linux only:
/// other systems have no such flag (and no prctl), so the binary builds there without it.
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process; no memory is touched.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() {}

/// mimalloc keeps freed pages for a second (v3's `purge_delay` default) before it returns
/// them to the OS; under a steady load that is ~50 MiB of the gateway's resident set held
/// for reuse (BENCHMARKS.md: 441 / 460 -> 393 / 391 MiB after storing and replaying 200,000
/// events, two pairs of runs, with no measurable CPU cost). Purging at once is the default here, unless the operator
/// chose otherwise with `MIMALLOC_PURGE_DELAY` (which mimalloc reads at start-up).
fn purge_freed_memory_at_once() {
    // `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (include/mimalloc.h); the
    // Rust binding names only some of the options.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one option value; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    }
}

// glibc's malloc took a third of the gateway's request threads under load (sled 0.34 and
// the publish path make many short-lived allocations across threads); see BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status of a client command whose request the gateway refused (bad input,
/// permission): distinct from 1, which means "could not get an answer".
pub const EXIT_REJECTED: u8 = 2;

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    purge_freed_memory_at_once();
    let cli = Cli::parse();
    let default_level =
        if matches!(cli.command, Command::Serve(_) | Command::BenchTransport { .. }) { "info" } else { "warn" };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `serve` logs and exports spans as its configuration says; a configuration that does
    // not load is reported by `serve` itself.
    let config = match &cli.command {
        Command::Serve(args) if !args.check_config => serve::load(args).ok(),
        _ => None,
    };
    let format = config.as_ref().map(|c| c.log.format).unwrap_or_default();
    let telemetry = {
        // The OTLP exporter's connection lives in the runtime.
        let _runtime = runtime.enter();
        match telemetry::init(default_level, format, config.as_ref().map(|c| &c.telemetry)) {
            Ok(telemetry) => telemetry,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Health(args) => health::run(args).await,
            Command::Certs { command: CertsCommand::Init(args) } => serve::certs_init(args).map(|()| ExitCode::SUCCESS),
            Command::Certs { command: CertsCommand::Revoke(args) } => {
                serve::certs_revoke(args).map(|()| ExitCode::SUCCESS)
            }
            Command::Publish(args) => publish::run(args).await,
            Command::Subscribe(args) => subscribe::run(args).await,
            Command::Status(args) => access::status(args).await,
            Command::Audit { command: AuditCommand::Denials(args) } => access::denials(args).await,
            Command::Audit { command: AuditCommand::Exports(args) } => access::exports(args).await,
            Command::Audit { command: AuditCommand::Processing(args) } => access::processing(args).await,
            Command::Quality { command: Some(QualityCommand::Rebuild(args)), .. } => quality::rebuild(args),
            Command::Quality { command: None, report } => quality::report(report).await,
            Command::Schemas { command: SchemasCommand::List(args) } => schemas::list(args).await,
            Command::Subscriptions { command } => subscriptions::run(command).await,
            Command::Bench(args) => loket_bench::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::BenchTransport { certs } => {
                loket_bench::serve_null_gateway(certs).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Export(args) => export::run(args).await,
            Command::Replay(args) => replay::run(args).await,
            Command::Gen(args) => gen::run(args),
            Command::Audit { command: AuditCommand::Verify(args) } => audit::verify(args),
            Command::Demo(args) => demo::run(args).await,
            Command::Erase(args) => access::erase(args).await,
        }
    });
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
