//! The deployment files stay valid: the compose file parses and describes Kafka in KRaft
//! mode plus two gateways, the Dockerfile builds with the README's command, and the
//! gateway configuration and the documented [kafka] section are accepted by loket.

mod common;

use std::collections::HashMap;

use common::repo_root;
use loket_server::{certs, Config};
use serde_norway::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn compose_file_runs_kafka_in_kraft_mode_and_two_gateways() {
    let compose: Value = serde_norway::from_str(&read("deploy/docker-compose.yml")).expect("docker-compose.yml parses");
    let services = compose["services"].as_mapping().expect("services");
    let kafka = &compose["services"]["kafka"];
    assert!(kafka["image"].as_str().unwrap().starts_with("apache/kafka:"), "{kafka:?}");
    let roles = kafka["environment"]["KAFKA_PROCESS_ROLES"].as_str().unwrap();
    assert!(roles.contains("controller") && roles.contains("broker"), "KRaft: {roles}");
    let gateways: Vec<&str> =
        services.keys().filter_map(Value::as_str).filter(|name| name.starts_with("gateway-")).collect();
    assert_eq!(gateways, ["gateway-1", "gateway-2"]);
    for name in gateways {
        let gateway = &compose["services"][name];
        // The anchor's build section is merged in by compose (`<<`); the file names it.
        let build = if gateway["build"].is_null() { &gateway["<<"]["build"] } else { &gateway["build"] };
        assert_eq!(build["dockerfile"].as_str(), Some("deploy/Dockerfile"), "{name}: {gateway:?}");
        assert!(gateway["ports"].as_sequence().is_some_and(|p| !p.is_empty()), "{name} publishes its port");
    }
}

#[test]
fn dockerfile_builds_with_the_readmes_command() {
    let dockerfile = read("deploy/Dockerfile");
    let readme = read("README.md");
    let builds: Vec<&str> =
        dockerfile.lines().filter_map(|l| l.strip_prefix("RUN ")).filter(|c| c.starts_with("cargo ")).collect();
    assert_eq!(builds, ["cargo build --release --locked"]);
    for command in builds {
        assert!(readme.lines().any(|l| l.trim() == command), "README.md must show `{command}` on its own line");
    }
}

#[test]
fn gateway_config_and_documented_kafka_section_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let partners: Vec<_> = ["dtv", "kmar"].iter().map(|p| p.parse().unwrap()).collect();
    certs::init(dir.path(), &partners, false).unwrap();
    let text = read("deploy/gateway.toml").replace("/etc/loket/certs", &dir.path().display().to_string());
    let config = Config::parse(&text, "deploy/gateway.toml", &HashMap::new()).unwrap();
    assert_eq!(config.kafka.as_ref().unwrap().brokers, "kafka:9092");

    // config/loket.toml documents [kafka] commented out at its end; uncommented, it must
    // be valid.
    let shipped = read("config/loket.toml");
    let (before, section) = shipped.split_once("# [kafka]\n").expect("a commented [kafka] section");
    let keys: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')))
        .collect();
    assert!(keys.len() >= 6, "every [kafka] key documented: {keys:?}");
    let kafka_only = format!("{before}[kafka]\n{}\n", keys.join("\n"));
    let config = Config::parse(&kafka_only, "config/loket.toml", &HashMap::new()).unwrap();
    let kafka = config.kafka.expect("the documented [kafka] section");
    assert_eq!(kafka.ack_timeout_ms, 30_000);
    // The embedded default has no Kafka.
    assert!(Config::parse(&shipped, "config/loket.toml", &HashMap::new()).unwrap().kafka.is_none());
}
