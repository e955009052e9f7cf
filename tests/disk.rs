//! The disk-space floor through the real interface (`[journal] min_free_bytes`): publishes
//! are refused with `DISK_LOW` before storage fails, nothing acked is lost, publishing
//! resumes by itself. (Moved from retention.rs, which holds retention and erasure.)

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use loket_server::proto::{subscribe_request::Start, Earliest, SubscribeRequest};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

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

fn baggage(id: &str, case: &str) -> loket_server::proto::CloudEvent {
    event("dji", "baggage", id, &example_for("baggage", case))
}
