//! Bounded growth through the real interface: the dedup window, the rejection log's payload
//! cap and the disk-space floor (`[journal]`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use loket_journal::{Journal, JournalConfig};
use loket_server::proto::{subscribe_request::Start, Earliest, SubscribeRequest};
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn baggage(id: &str, case: &str) -> loket_server::proto::CloudEvent {
    event("dji", "baggage", id, &example_for("baggage", case))
}

/// The rejections a stopped gateway's journal holds.
fn rejections(data_dir: &Path) -> Vec<loket_journal::StoredRejection> {
    let journal =
        Journal::open(&JournalConfig { dir: data_dir.join("journal"), ..JournalConfig::default() }).unwrap();
    let all = journal.read_rejections_from(1, 1000).unwrap();
    journal.close().unwrap();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_counts_only_inside_the_dedup_window() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[journal]\ndedup_window = \"2s\"\n").await;
    let mut client = gw.client("dji").await;
    let first = publish(&mut client, baggage("bag-1", "0000000001")).await.unwrap();
    assert!(!first.duplicate);
    let again = publish(&mut client, baggage("bag-1", "0000000001")).await.unwrap();
    assert!(again.duplicate, "a resend inside the window is the same event");
    assert_eq!(again.sequence, first.sequence);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = publish(&mut client, baggage("bag-1", "0000000001")).await.unwrap();
    assert!(!later.duplicate, "after the window the same id is a new event");
    assert!(later.sequence > first.sequence);
    // And the new one is the original within its own window.
    let resend = publish(&mut client, baggage("bag-1", "0000000001")).await.unwrap();
    assert_eq!((resend.duplicate, resend.sequence), (true, later.sequence));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_large_publish_keeps_only_the_configured_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[journal]\nrejection_payload_bytes = 1000\n").await;
    let mut client = gw.client("dji").await;
    let mut data = example_for("baggage", "0000000002");
    data["pieces"] = serde_json::Value::String("x".repeat(200_000));
    let refused = event("dji", "baggage", "big-1", &data);
    let payload = refused.data.clone();
    assert!(payload.len() > 200_000);
    let status = publish(&mut client, refused).await.unwrap_err();
    assert_eq!((status.code(), reason(&status).as_str()), (Code::InvalidArgument, "SCHEMA_VIOLATION"));
    gw.stop().await;
    let stored = rejections(dir.path());
    assert_eq!(stored.len(), 1);
    let r = &stored[0];
    assert_eq!(r.id, "big-1");
    assert_eq!(r.data, payload[..1000], "the first configured bytes are kept");
    assert_eq!(r.data_size, payload.len() as u64);
    assert_eq!(r.data_sha256, Sha256::digest(&payload).to_vec());
    // The journal's files hold no more than a small part of what was refused.
    let on_disk = dir_size(&dir.path().join("journal"));
    assert!(on_disk < payload.len() as u64 * 4, "journal takes {on_disk} bytes");
    let report = loket_journal::audit::verify_dir(&dir.path().join("journal")).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| if e.metadata().unwrap().is_dir() { dir_size(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop. `None` where this
/// process may not mount (not root, or no mount namespace rights).
struct SmallFs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        let parent = tempfile::tempdir().ok()?;
        let dir = parent.path().join("small");
        std::fs::create_dir(&dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs { dir, _parent: parent })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

async fn health(gw: &Gateway, service: &str) -> ServingStatus {
    let (endpoint, header) = loket_server::client::endpoint(&gw.options("dji")).unwrap();
    let mut health = HealthClient::with_interceptor(endpoint.connect().await.unwrap(), header);
    let reply = health.check(HealthCheckRequest { service: service.to_owned() }).await.unwrap().into_inner();
    ServingStatus::try_from(reply.status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_disk_refuses_publishes_before_storage_fails_and_recovers() {
    let Some(fs) = SmallFs::mount("24m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); the disk-low test did not run");
        return;
    };
    let data_dir = fs.dir.join("data");
    std::fs::create_dir(&data_dir).unwrap();
    // Certificates first, so the ballast leaves what the stores get.
    let gw = Gateway::start_in(&data_dir, "[journal]\nmin_free_bytes = 4000000\ncache_mib = 4\n").await;
    let ballast = fs.dir.join("ballast");
    let free = free_space(&fs.dir);
    std::fs::write(&ballast, vec![7u8; (free - 8_000_000) as usize]).unwrap();
    assert_eq!(health(&gw, loket_server::PUBLISH_HEALTH).await, ServingStatus::Serving);

    let mut client = gw.client("dji").await;
    let mut acked = Vec::new();
    let low = loop {
        let mut data = example_for("baggage", "0000000003");
        let item = serde_json::json!({ "category": "clothing", "description": "z".repeat(190) });
        data["items"] = serde_json::Value::Array(vec![item; 20]);
        match publish(&mut client, event("dji", "baggage", &format!("fill-{}", acked.len()), &data)).await {
            Ok(reply) => acked.push(reply.sequence),
            Err(status) => break status,
        }
        assert!(acked.len() < 100_000, "the disk never got low");
    };
    assert_eq!(
        (low.code(), reason(&low).as_str()),
        (Code::ResourceExhausted, "DISK_LOW"),
        "the first refusal is the floor, not a storage failure: {low:?}"
    );
    assert!(!acked.is_empty());
    assert_eq!(health(&gw, loket_server::PUBLISH_HEALTH).await, ServingStatus::NotServing);
    assert_eq!(health(&gw, "loket.v1.Gateway").await, ServingStatus::Serving);
    // Subscriptions keep working: everything acked is delivered.
    let mut sub = gw.client("dji").await;
    let req = SubscribeRequest {
        types: vec!["baggage".into()],
        start: Some(Start::Earliest(Earliest {})),
        limit: acked.len() as u64,
        ..Default::default()
    };
    let mut stream = sub.subscribe(req).await.unwrap().into_inner();
    let mut delivered = Vec::new();
    while let Some(d) = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap() {
        delivered.push(d.sequence);
    }
    assert_eq!(delivered, acked);

    std::fs::remove_file(&ballast).unwrap();
    let resumed = 'wait: {
        for _ in 0..100 {
            match publish(&mut client, baggage("after-space", "0000000003")).await {
                Ok(reply) => break 'wait reply,
                Err(status) => assert_eq!(reason(&status), "DISK_LOW"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("publishing did not resume after space was freed");
    };
    assert_eq!(resumed.sequence, acked.last().unwrap() + 1, "nothing acked was lost or reused");
    assert_eq!(health(&gw, loket_server::PUBLISH_HEALTH).await, ServingStatus::Serving);
    gw.stop().await;
    drop(fs);
}

fn free_space(dir: &Path) -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().unwrap();
    String::from_utf8(out.stdout).unwrap().lines().nth(1).unwrap().trim().parse().unwrap()
}
