//! `loket demo`: the whole exchange in one command, in a temporary directory. A gateway
//! runs in-process (loket_server::run) with development certificates, a generated log is
//! replayed from every partner, and two partners subscribe. What each one prints is what
//! the gateway delivered to it, so any per-partner view the gateway applies (entitlements,
//! redaction) shows up here without changes to the demo.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use loket_messagelog::{generate, Gaps, GenOptions};
use loket_server::certs;
use loket_server::client::{connect, ClientOptions};
use loket_server::config::CHAIN_PARTNERS;
use loket_server::proto::{subscribe_request::Start, Delivery, Earliest, QualityReportRequest, SubscribeRequest};
use loket_server::Config;
use serde_json::Value;
use tokio_stream::StreamExt;

use crate::cli::DemoArgs;
use crate::replay::{replay, Rate, ReplayOptions};

/// The two subscribers and the event types each asks for.
const SUBSCRIBERS: &[(&str, &[&str])] = &[
    ("kmar", &["transport-status", "medical-file-transfer", "physical-features"]),
    ("dvo", &["transport-status", "baggage"]),
];

/// A subscription is done when nothing arrives for this long (the log is replayed by then).
const QUIET: Duration = Duration::from_millis(800);

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data_dir = temp.path().join("data");
    let certs_dir = data_dir.join("certs");
    let partners: Vec<_> = CHAIN_PARTNERS.iter().filter_map(|p| p.parse().ok()).collect();
    certs::init(&certs_dir, &partners, false)?;
    let config = Config::parse(
        &format!("data_dir = {:?}\n", data_dir.display().to_string()),
        "demo",
        &std::collections::HashMap::new(),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen on 127.0.0.1")?;
    let server = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(loket_server::run(listener, config, async move {
        let _ = stopped.await;
    }));
    println!("== gateway on {server}, data in {}", data_dir.display());

    let log = temp.path().join("generated.ndjson");
    let options = GenOptions {
        seed: args.seed,
        cases: args.cases,
        missing_rate: 0.25,
        invalid_rate: 0.06,
        start: 1_767_600_000,
        first_case: None,
        gaps: Gaps { late_baggage: 0.2, missing_features: 0.2, no_consent: 0.2 },
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&log)?);
    let generated = generate(&options, &mut file)?;
    std::io::Write::flush(&mut file)?;
    drop(file);
    println!("== generated {} events for {} cases (seed {})", generated.events, args.cases, args.seed);

    let summary = replay(
        &log,
        &ReplayOptions {
            server: server.clone(),
            certs: certs_dir.clone(),
            rate: Rate::Max,
            diff: None,
            progress: false,
        },
    )
    .await?;
    println!(
        "== replayed from every partner: sent {}, accepted {}, rejected {} (kept in the rejection log), mismatches {}",
        summary.sent, summary.accepted, summary.rejected, summary.mismatches
    );

    for (partner, types) in SUBSCRIBERS {
        let deliveries = receive(&server, &certs_dir, partner, types).await?;
        println!("\n== {partner} subscribed to {} and received {} events", types.join(", "), deliveries.len());
        for d in deliveries.iter().take(args.show) {
            show(d);
        }
        summarise(&deliveries);
    }

    readiness(&server, &certs_dir).await?;

    let _ = stop.send(());
    gateway.await.context("the gateway task failed")??;
    Ok(ExitCode::SUCCESS)
}

async fn receive(
    server: &str,
    certs_dir: &std::path::Path,
    partner: &str,
    types: &[&str],
) -> anyhow::Result<Vec<Delivery>> {
    let options =
        ClientOptions { server: server.to_owned(), certs: certs_dir.to_owned(), partner: (*partner).to_owned() };
    let mut client = connect(&options).await?;
    let request = SubscribeRequest {
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        start: Some(Start::Earliest(Earliest {})),
        name: String::new(),
        limit: 0,
    };
    let mut stream = client
        .subscribe(request)
        .await
        .map_err(|s| anyhow::anyhow!("subscribe as {partner} refused: {}", s.message()))?
        .into_inner();
    let mut out = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(QUIET, stream.next()).await {
        out.push(item.map_err(|s| anyhow::anyhow!("subscription of {partner} failed: {}", s.message()))?);
    }
    Ok(out)
}

/// The handovers of the replayed cases as the quality team reads them: per kind how many
/// were ready, and which items were missing, from whom.
async fn readiness(server: &str, certs_dir: &std::path::Path) -> anyhow::Result<()> {
    let options = ClientOptions { server: server.to_owned(), certs: certs_dir.to_owned(), partner: "quality".into() };
    let mut client = connect(&options).await?;
    let report = client
        .get_quality_report(QualityReportRequest::default())
        .await
        .map_err(|s| anyhow::anyhow!("quality report refused: {}", s.message()))?
        .into_inner();
    println!("\n== handover readiness (what the receiving partner had at each handover)");
    for k in &report.handover_kinds {
        println!("  {:<24} {} of {} handovers ready ({:.0}%)", k.handover, k.ready, k.handovers, k.ready_share * 100.0);
        for i in report.handover_items.iter().filter(|i| i.handover == k.handover && i.met < i.due) {
            println!(
                "    {:<20} from {:<5} met {} of {} (missing {}, stale {}, unmet {})",
                i.item, i.partner, i.met, i.due, i.missing, i.stale, i.unmet
            );
        }
    }
    Ok(())
}

fn show(d: &Delivery) {
    let Some(e) = &d.event else { return };
    let data: Value = serde_json::from_slice(&e.data).unwrap_or(Value::Null);
    let mut text = serde_json::to_string(&data).unwrap_or_default();
    if text.len() > 160 {
        let mut cut = 160;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    println!(
        "  #{:<4} {:<24} from {:<5} case {}  completeness {:.2}{}",
        d.sequence,
        e.r#type,
        e.source,
        e.subject,
        d.completeness,
        if d.missing_expected.is_empty() {
            String::new()
        } else {
            format!("  missing {}", d.missing_expected.join(", "))
        }
    );
    println!("         {text}");
}

fn summarise(deliveries: &[Delivery]) {
    let mut per_type: BTreeMap<&str, (u32, f64, HashMap<&str, u32>)> = BTreeMap::new();
    for d in deliveries {
        let Some(e) = &d.event else { continue };
        let entry = per_type.entry(e.r#type.as_str()).or_default();
        entry.0 += 1;
        entry.1 += d.completeness;
        for m in &d.missing_expected {
            *entry.2.entry(m.as_str()).or_default() += 1;
        }
    }
    println!("  completeness per type:");
    for (t, (n, sum, missing)) in per_type {
        let mut worst: Vec<_> = missing.into_iter().collect();
        worst.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let worst: Vec<String> = worst.iter().take(3).map(|(f, c)| format!("{f} ({c}x)")).collect();
        println!(
            "    {t:<24} {n:>4} events, average {:.2}{}",
            sum / f64::from(n),
            if worst.is_empty() { String::new() } else { format!(", most missing: {}", worst.join(", ")) }
        );
    }
}
