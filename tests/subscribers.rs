//! Careless and hostile subscribers: starts beyond the journal, streams nobody reads,
//! too many streams or names, forgotten names; the gauge of open subscriptions, and
//! managing named subscriptions over gRPC and with `loket subscriptions`.

mod common;

use std::time::Duration;

use common::*;
use loket_server::client::Client;
use loket_server::proto::{
    subscribe_request::Start, DeleteSubscriptionRequest, Earliest, ListSubscriptionsRequest, SubscribeRequest,
};
use serde_json::json;
use tonic::Code;

fn from(start: Start, name: &str) -> SubscribeRequest {
    SubscribeRequest { types: vec![], start: Some(start), name: name.to_owned(), limit: 0 }
}

/// Polls `check` until it holds, for up to 60 s.
/// Polls `check` for up to three minutes: generous, so a loaded machine cannot fail it.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1800 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 180 s");
}

async fn names(client: &mut Client) -> Vec<(String, bool)> {
    let list = client.list_subscriptions(ListSubscriptionsRequest {}).await.unwrap().into_inner();
    list.subscriptions.into_iter().map(|s| (s.name, s.open)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_beyond_the_journal_is_out_of_range_and_a_cancelled_subscriber_ends() {
    let gw = Gateway::start().await;
    let mut publisher = gw.client("dtv").await;
    let last = publish(&mut publisher, event("dtv", "baggage", "b-1", &example("baggage"))).await.unwrap().sequence;
    // `gza` subscribes in this test only, so its gauge is this test's alone.
    let mut sub = gw.client("gza").await;
    for start in [u64::MAX, last + 2] {
        let status = sub.subscribe(from(Start::Sequence(start), "")).await.unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{start}: {status:?}");
        assert_eq!(reason(&status), "START_BEYOND_END");
        assert_eq!(violation_fields(&status), vec!["sequence"]);
    }
    let status = sub.subscribe(from(Start::Sequence(u64::MAX), "named")).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "a named cursor cannot be set there either");
    assert!(names(&mut sub).await.is_empty());
    // The next sequence to come is a valid start.
    let stream = sub.subscribe(from(Start::Sequence(last + 1), "")).await.unwrap().into_inner();

    let metrics = gw.metrics_addr.unwrap();
    let open = move || metric(metrics, "loket_subscriptions_open", &[("partner", "gza")]).unwrap_or(-1.0);
    eventually("the gauge counting the subscription", || open() == 1.0).await;
    drop(stream);
    eventually("the cancelled subscriber's task ending", || open() == 0.0).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_name_quotas_refuse_with_details_and_names_are_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[limits.partners.kmar]\nsubscriptions = 2\nnamed_subscriptions = 2\n";
    let gw = Gateway::start_in(dir.path(), config).await;
    let mut kmar = gw.client("kmar").await;
    let a = kmar.subscribe(from(Start::Earliest(Earliest {}), "a")).await.unwrap().into_inner();
    let b = kmar.subscribe(from(Start::Earliest(Earliest {}), "b")).await.unwrap().into_inner();
    let status = kmar.subscribe(from(Start::Earliest(Earliest {}), "")).await.unwrap_err();
    let (reason, retry, quota) = exhausted(&status);
    assert_eq!(reason, "QUOTA_EXCEEDED");
    assert!(retry.is_some());
    assert_eq!(quota, vec![("partner:kmar".to_owned(), "subscriptions: limit 2".to_owned())]);
    // Another partner is not limited by kmar's streams.
    let mut dji = gw.client("dji").await;
    let _other = dji.subscribe(from(Start::Earliest(Earliest {}), "")).await.unwrap();

    assert_eq!(names(&mut kmar).await, vec![("a".to_owned(), true), ("b".to_owned(), true)]);
    let open = kmar.delete_subscription(DeleteSubscriptionRequest { name: "a".into() }).await.unwrap_err();
    assert_eq!(open.code(), Code::FailedPrecondition, "an open subscription is not deleted");
    drop((a, b));
    // With both streams closed: a third name is over the kept-names quota.
    let mut third = Err(tonic::Status::unknown("not tried"));
    for _ in 0..100 {
        third = kmar.subscribe(from(Start::Earliest(Earliest {}), "c")).await.map(drop);
        if matches!(&third, Err(s) if reason_of(s) == "QUOTA_EXCEEDED" && is_named_quota(s)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = third.unwrap_err();
    let (_, retry, quota) = exhausted(&status);
    assert_eq!(quota, vec![("partner:kmar".to_owned(), "named_subscriptions: limit 2".to_owned())]);
    assert!(retry.is_none(), "waiting does not free a name");

    eventually_deleted(&mut kmar, "a").await;
    let missing = kmar.delete_subscription(DeleteSubscriptionRequest { name: "a".into() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let _c = kmar.subscribe(from(Start::Earliest(Earliest {}), "c")).await.unwrap();
    let listed: Vec<String> = names(&mut kmar).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(listed, vec!["b", "c"]);
    gw.stop().await;
}

fn reason_of(status: &tonic::Status) -> String {
    reason(status)
}

fn is_named_quota(status: &tonic::Status) -> bool {
    exhausted(status).2.iter().any(|(_, d)| d.starts_with("named_subscriptions"))
}

/// Deletes `name`, retrying while its closed stream's task is still winding down.
async fn eventually_deleted(client: &mut Client, name: &str) {
    for _ in 0..100 {
        match client.delete_subscription(DeleteSubscriptionRequest { name: name.into() }).await {
            Ok(_) => return,
            Err(s) if s.code() == Code::FailedPrecondition => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(s) => panic!("delete {name}: {s:?}"),
        }
    }
    panic!("{name} stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_named_subscriptions_expire() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[limits]\nunused_subscription_secs = 1\n").await;
    let mut coa = gw.client("coa").await;
    let kept = coa.subscribe(from(Start::Earliest(Earliest {}), "kept-open")).await.unwrap();
    drop(coa.subscribe(from(Start::Earliest(Earliest {}), "forgotten")).await.unwrap());
    let mut listed = Vec::new();
    for _ in 0..300 {
        listed = names(&mut coa).await;
        if listed.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed, vec![("kept-open".to_owned(), true)], "the forgotten one expired, the open one stays");
    drop(kept);
    gw.stop().await;
}

/// A baggage event of about 100 KB (200 items of 500 characters).
fn large(i: usize) -> serde_json::Value {
    let mut data = example_for("baggage", &format!("{:010}", i % 7));
    let description = format!("{i:05}").repeat(100);
    data["items"] = json!(vec![json!({"category": "other", "description": description}); 200]);
    data
}

/// The resident set of process `pid` in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kib / 1024
}

/// 50 subscribers that never read, each offered 30 MB: unbounded, the gateway would buffer
/// about 1.5 GB for them (it buffered up to 256 deliveries per stream before). With
/// `subscriber_buffer_bytes = 1 MiB` each holds at most that plus HTTP/2's send window,
/// so the gateway stays under the stated 300 MiB (measured: ~125 MiB after publishing,
/// ~200 MiB with the 50 stalled subscribers); after the slow-subscriber timeout their
/// streams end with SLOW_SUBSCRIBER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_never_read_keep_the_gateway_memory_bounded() {
    const BOUND_MIB: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    // Continues the harness's [grpc] section.
    // The timeout leaves time to open all 50 streams (50 handshakes) on a loaded machine
    // before the first is dropped.
    let config = "subscriber_buffer_bytes = 1048576\nslow_subscriber_timeout_secs = 60\n\
                  [limits]\nevents_per_second = 0\nsubscriptions = 100\n";
    let gw = ServeProcess::spawn(&dir.path().join("data"), config);
    let certs = dir.path().join("data/certs");
    let options = |partner: &str| loket_server::client::ClientOptions {
        server: gw.url(),
        certs: certs.clone(),
        partner: partner.to_owned(),
    };
    let mut publisher = loket_server::client::connect(&options("dtv")).await.unwrap();
    for i in 0..300 {
        publish(&mut publisher, event("dtv", "baggage", &format!("big-{i}"), &large(i))).await.unwrap();
    }
    // One connection each (a stalled stream also stalls its connection's window), opened
    // together.
    let mut streams: Vec<_> = futures::future::join_all((0..50).map(|_| async {
        let mut client = loket_server::client::connect(&options("kmar")).await.unwrap();
        client.subscribe(from(Start::Earliest(Earliest {}), "")).await.unwrap().into_inner()
    }))
    .await;
    let metrics = gw.metrics_addr.unwrap();
    let open = || metric(metrics, "loket_subscriptions_open", &[("partner", "kmar")]).unwrap_or(-1.0);
    eventually("all 50 subscriptions counted", || open() == 50.0).await;
    // Every subscription task meets its full buffer and waits, then gives up.
    let mut peak = 0;
    eventually("the slow subscribers being dropped", || {
        peak = peak.max(rss_mib(gw.child.id()));
        open() == 0.0
    })
    .await;
    assert!(peak < BOUND_MIB, "gateway RSS peaked at {peak} MiB (bound {BOUND_MIB} MiB)");
    // A subscriber that reads again gets what was in flight, then the ending status.
    let mut stream = streams.pop().unwrap();
    let ending = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    let (reason, retry, _) = exhausted(&ending);
    assert_eq!(reason, "SLOW_SUBSCRIBER");
    assert!(retry.is_some());
    // Still serving: a new subscriber reads from the start.
    let mut client = loket_server::client::connect(&options("kmar")).await.unwrap();
    let mut fresh = client
        .subscribe(SubscribeRequest { limit: 3, ..from(Start::Earliest(Earliest {}), "") })
        .await
        .unwrap()
        .into_inner();
    let mut read = 0;
    while fresh.message().await.unwrap().is_some() {
        read += 1;
    }
    assert_eq!(read, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loket_subscriptions_lists_and_deletes_named_subscriptions() {
    let gw = Gateway::start().await;
    let mut politie = gw.client("politie").await;
    drop(politie.subscribe(from(Start::Earliest(Earliest {}), "nightly")).await.unwrap());
    let certs = gw.certs_dir().display().to_string();
    let url = gw.url();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_loket")).args(args).output().unwrap()
        })
    };
    let base = |cmd: &str| -> Vec<String> {
        ["subscriptions", cmd, "--server", &url, "--certs", &certs, "--as", "politie"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    };
    let mut list = base("list");
    list.push("--json".into());
    let listed = run(list.clone()).await.unwrap();
    assert!(listed.status.success());
    let line: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(line["name"], "nightly");
    assert_eq!(line["acked"], 0);
    let mut delete = base("delete");
    delete.push("nightly".into());
    let mut deleted = run(delete.clone()).await.unwrap();
    for _ in 0..100 {
        if deleted.status.success() {
            break;
        }
        // The dropped stream's task may still hold the name a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        deleted = run(delete.clone()).await.unwrap();
    }
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    assert!(run(list).await.unwrap().stdout.is_empty(), "nothing left to list");
    let again = run(delete).await.unwrap();
    assert_eq!(again.status.code(), Some(2), "deleting it again: no such subscription");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_series_of_deleted_and_expired_subscriptions_leave_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[limits]\nunused_subscription_secs = 2\n").await;
    let metrics = gw.metrics_addr.unwrap();
    let mut kmar = gw.client("kmar").await;
    publish(&mut kmar, event("kmar", "baggage", "lag-1", &example_for("baggage", "0000000007"))).await.unwrap();
    let lag =
        |name: &str| metric(metrics, "loket_subscriber_lag_events", &[("partner", "dtv"), ("subscription", name)]);
    let mut dtv = gw.client("dtv").await;
    let mut open = Vec::new();
    for name in ["to-delete", "to-expire", "kept"] {
        let mut stream = dtv.subscribe(from(Start::Earliest(Earliest {}), name)).await.unwrap().into_inner();
        stream.message().await.unwrap().expect("the event");
        eventually(&format!("{name}'s lag on /metrics"), || lag(name).is_some()).await;
        // "kept" stays open, so it neither expires nor can be deleted.
        if name == "kept" {
            open.push(stream);
        }
    }
    eventually_deleted(&mut dtv, "to-delete").await;
    assert_eq!(lag("to-delete"), None, "a deleted subscription's series is gone");
    eventually("the expired subscription's series leaving /metrics", || lag("to-expire").is_none()).await;
    assert!(names(&mut dtv).await.iter().all(|(name, _)| name != "to-expire"), "it expired");
    assert_eq!(lag("kept"), Some(0.0), "an open subscription keeps its series");
    drop(open);
    gw.stop().await;
}
