//! The deployment files stay valid and consistent with each other: the compose file parses
//! and describes Kafka (KRaft, SASL_SSL, ACLs) plus two gateways with health checks,
//! metrics on the host's loopback only and secrets in named volumes; every configuration
//! in config/ and deploy/, and every one the compose file mounts (with the secrets
//! deploy/make-secrets.sh makes), passes `loket serve --check-config`; the Dockerfile
//! builds locked, caches its dependency layer and runs as non-root; the workspace's
//! rust-version is the highest of the locked dependencies.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::repo_root;
use serde_norway::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    serde_norway::from_str(&read("deploy/docker-compose.yml")).expect("docker-compose.yml parses")
}

/// A service's key, also when it comes from the `x-gateway` anchor (compose merges `<<`).
fn field<'a>(service: &'a Value, key: &str) -> &'a Value {
    if service[key].is_null() {
        &service["<<"][key]
    } else {
        &service[key]
    }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_sequence().map(|s| s.iter().filter_map(Value::as_str).map(str::to_owned).collect()).unwrap_or_default()
}

fn gateways(compose: &Value) -> Vec<String> {
    let services = compose["services"].as_mapping().expect("services");
    services.keys().filter_map(Value::as_str).filter(|n| n.starts_with("gateway-")).map(str::to_owned).collect()
}

/// `loket serve --check-config` on `config`.
fn check_config(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loket"))
        .args(["serve", "--check-config", "--config"])
        .arg(config)
        .env_remove("LOKET_DATA_DIR")
        .env_remove("LOKET_KAFKA_SASL_PASSWORD")
        .output()
        .unwrap()
}

fn assert_valid(config: &Path, what: &str) {
    let out = check_config(config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: loket serve --check-config refused it:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.trim_end().ends_with(": valid"), "{what}: {stdout}");
}

/// Runs deploy/make-secrets.sh into `dir`, as the compose file's `secrets` service does.
fn make_secrets(dir: &Path) {
    let out = Command::new("sh").arg(repo_root().join("deploy/make-secrets.sh")).env("SECRETS", dir).output().unwrap();
    assert!(out.status.success(), "make-secrets.sh: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn compose_file_runs_kafka_on_sasl_ssl_with_acls_and_two_gateways() {
    let compose = compose();
    let kafka = &compose["services"]["kafka"];
    assert!(kafka["image"].as_str().unwrap().starts_with("apache/kafka:"), "{kafka:?}");
    let start = read("deploy/kafka/start.sh");
    for setting in [
        "process.roles=broker,controller",
        "listeners=SASL_SSL://:9092,CONTROLLER://localhost:9093",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        "ssl.keystore.location=",
    ] {
        assert!(start.lines().any(|l| l.starts_with(setting)), "deploy/kafka/start.sh sets {setting}");
    }
    // The scripts the services run are the ones in deploy/.
    for (service, script) in [("kafka", "./kafka/start.sh"), ("kafka-acls", "./kafka/acls.sh")] {
        let volumes = strings(&compose["services"][service]["volumes"]);
        assert!(volumes.iter().any(|v| v.starts_with(&format!("{script}:"))), "{service} mounts {script}");
    }
    let acls = read("deploy/kafka/acls.sh");
    assert!(acls.contains("--allow-principal User:gateway") && acls.contains("--operation Write"));
    assert_eq!(acls.matches("--operation Write").count(), 1, "only gateways write");

    // Secrets: made once by a one-shot service into named volumes; no host directory.
    let secrets = &compose["services"]["secrets"];
    assert!(strings(&secrets["entrypoint"]).iter().any(|a| a.ends_with("make-secrets.sh")));
    let named: BTreeSet<String> =
        compose["volumes"].as_mapping().unwrap().keys().filter_map(Value::as_str).map(str::to_owned).collect();

    let gateways = gateways(&compose);
    assert_eq!(gateways, ["gateway-1", "gateway-2"]);
    let mut host_ports = BTreeSet::new();
    for name in &gateways {
        let gateway = &compose["services"][name.as_str()];
        assert_eq!(field(gateway, "build")["dockerfile"].as_str(), Some("deploy/Dockerfile"), "{name}");
        // gRPC and metrics published, on the host's loopback only.
        let ports = strings(&gateway["ports"]);
        assert!(ports.iter().all(|p| p.starts_with("127.0.0.1:")), "{name}: {ports:?}");
        assert!(ports.iter().any(|p| p.ends_with(":7443")) && ports.iter().any(|p| p.ends_with(":9464")), "{name}");
        host_ports.extend(ports.iter().map(|p| p.rsplit_once(':').unwrap().0.to_owned()));
        // Health checked with gRPC health, as a client with a certificate.
        let health = strings(&field(gateway, "healthcheck")["test"]);
        assert_eq!(&health[..3], ["CMD", "loket", "health"], "{name}: {health:?}");
        let depends = field(gateway, "depends_on").as_mapping().unwrap();
        for service in ["secrets", "kafka-acls"] {
            let condition = depends[service]["condition"].as_str();
            assert_eq!(condition, Some("service_completed_successfully"), "{name} waits for {service}");
        }
        for volume in strings(&gateway["volumes"]) {
            let source = volume.split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(
                    volume.ends_with(":ro") && source.ends_with(".toml"),
                    "{name}: only its config from the host: {volume}"
                );
            } else {
                assert!(named.contains(source), "{name}: {source} is a named volume");
            }
        }
    }
    assert_eq!(host_ports.len(), 4, "each gateway on its own host ports: {host_ports:?}");
}

/// Every configuration file, checked by the binary; the ones the compose file mounts with
/// the secrets that make-secrets.sh makes, mapped from the container's paths.
#[test]
fn every_config_in_config_and_deploy_passes_check_config() {
    let compose = compose();
    let temp = tempfile::tempdir().unwrap();
    let secrets = temp.path().join("secrets");
    make_secrets(&secrets);
    // Named volume → where make-secrets.sh wrote it.
    let made: BTreeMap<String, PathBuf> = strings(&compose["services"]["secrets"]["volumes"])
        .iter()
        .map(|v| {
            let (volume, target) = v.split_once(':').unwrap();
            let under = target.strip_prefix("/secrets").expect("secrets volumes are under /secrets");
            (volume.to_owned(), secrets.join(under.trim_start_matches('/')))
        })
        .collect();

    let mut checked = BTreeSet::new();
    for name in gateways(&compose) {
        let gateway = &compose["services"][name.as_str()];
        let command = strings(field(gateway, "command"));
        let config_at = &command[command.iter().position(|a| a == "--config").unwrap() + 1];
        let mut host_config = None;
        let mut mounts = Vec::new();
        for volume in strings(&gateway["volumes"]) {
            let mut parts = volume.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().unwrap());
            if target == config_at {
                host_config = Some(repo_root().join("deploy").join(source));
            } else if let Some(dir) = made.get(source) {
                mounts.push((target.to_owned(), dir.clone()));
            }
        }
        let host_config = host_config.unwrap_or_else(|| panic!("{name} mounts its {config_at}"));
        let mut text = std::fs::read_to_string(&host_config).unwrap();
        assert!(!mounts.is_empty(), "{name} mounts the gateway secrets");
        for (target, dir) in &mounts {
            text = text.replace(target.as_str(), &dir.display().to_string());
        }
        let mapped = temp.path().join(format!("{name}.toml"));
        std::fs::write(&mapped, text).unwrap();
        assert_valid(&mapped, &name);
        checked.insert(host_config.canonicalize().unwrap());
    }
    for dir in ["config", "deploy"] {
        for entry in std::fs::read_dir(repo_root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") && !checked.contains(&path.canonicalize().unwrap()) {
                assert_valid(&path, &path.display().to_string());
                checked.insert(path.canonicalize().unwrap());
            }
        }
    }
    assert!(checked.len() >= 2, "{checked:?}");

    // Without its secrets the gateway configuration is refused, every problem named.
    let out = check_config(&repo_root().join("deploy/gateway.toml"));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for key in ["tls.client_ca", "kafka.ca", "kafka.sasl_password_file", "kafka.record_key_file"] {
        assert!(stdout.lines().any(|l| l.contains(key)), "{key} named in:\n{stdout}");
    }
}

/// config/loket.toml documents every [kafka] key, commented out; uncommented (its files
/// replaced by real ones) it is a valid SASL_SSL configuration.
#[test]
fn the_documented_kafka_section_names_every_key_and_is_valid() {
    let shipped = read("config/loket.toml");
    let (before, section) = shipped.split_once("# [kafka]\n").expect("a commented [kafka] section");
    let lines: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.starts_with('[')
                || l.split_once(" = ").is_some_and(|(k, _)| {
                    k.trim_matches('"').bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
                })
        })
        .collect();
    let keys: BTreeSet<&str> = lines.iter().filter_map(|l| l.split_once(" = ")).map(|(k, _)| k).collect();
    for key in [
        "brokers",
        "topic_prefix",
        "partitions",
        "replication",
        "ack",
        "ack_timeout_ms",
        "security_protocol",
        "ca",
        "certificate",
        "key",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password_file",
        "canonical_view",
        "record_key_file",
        "dedup_window",
    ] {
        assert!(keys.contains(key), "[kafka] {key} is documented in config/loket.toml: {keys:?}");
    }
    assert!(lines.contains(&"[kafka.properties]"), "[kafka.properties] is documented");

    let temp = tempfile::tempdir().unwrap();
    make_secrets(temp.path());
    let files = [
        ("ca", temp.path().join("gateway/ca.pem")),
        ("certificate", temp.path().join("gateway/health/health.pem")),
        ("key", temp.path().join("gateway/health/health.key")),
        ("sasl_password_file", temp.path().join("gateway/kafka-password")),
        ("record_key_file", temp.path().join("gateway/record.key")),
    ];
    let uncommented: Vec<String> = lines
        .iter()
        .map(|l| match files.iter().find(|(k, _)| l.starts_with(&format!("{k} = "))) {
            Some((k, path)) => format!("{k} = {:?}", path.display().to_string()),
            None => (*l).to_owned(),
        })
        .collect();
    let config = temp.path().join("kafka.toml");
    std::fs::write(&config, format!("{before}[kafka]\n{}\n", uncommented.join("\n"))).unwrap();
    assert_valid(&config, "config/loket.toml with its [kafka] section");
    // The embedded default has no Kafka, and is valid as shipped.
    assert!(!shipped.lines().any(|l| l.trim() == "[kafka]"));
}

/// `FROM rust:<version>-…` of the build stage.
fn dockerfile_rust() -> (u32, u32) {
    let dockerfile = read("deploy/Dockerfile");
    let from = dockerfile.lines().find_map(|l| l.strip_prefix("FROM rust:")).expect("a rust build stage");
    let version = from.split(['-', ' ']).next().unwrap();
    let (major, minor) = version.split_once('.').unwrap();
    (major.parse().unwrap(), minor.split('.').next().unwrap().parse().unwrap())
}

fn version(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap_or(0))
}

#[test]
fn dockerfile_builds_locked_as_non_root_with_a_cached_dependency_layer() {
    let dockerfile = read("deploy/Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().collect();
    let builds: Vec<usize> =
        (0..lines.len()).filter(|&i| lines[i].contains("cargo build --release --locked")).collect();
    let copy_all = lines.iter().position(|l| *l == "COPY . .").expect("COPY . .");
    assert_eq!(builds.len(), 2, "a dependency build and the real one");
    assert!(builds[0] < copy_all && copy_all < builds[1], "dependencies are built before the sources are copied");
    // Every workspace member's manifest is in the dependency layer.
    let workspace: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    let members = workspace["workspace"]["members"].as_array().unwrap();
    for member in members.iter().map(|m| m.as_str().unwrap()) {
        let manifest = format!("{member}/Cargo.toml");
        assert!(
            lines[..builds[0]].iter().any(|l| l.starts_with("COPY ") && l.contains(&manifest)),
            "the dependency layer copies {manifest}"
        );
    }
    let user = lines.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("a USER");
    assert!(!user.starts_with("root") && !user.starts_with('0'), "the image runs as non-root: {user}");
    assert!(
        read("README.md").lines().any(|l| l.trim() == "cargo build --release --locked"),
        "README.md shows the build command on its own line"
    );
    let ignore = read(".dockerignore");
    for pattern in ["target/", "data/", "**/*.key", "**/*.pem"] {
        assert!(ignore.lines().any(|l| l.trim() == pattern), ".dockerignore keeps {pattern} out");
    }
}

#[test]
fn workspace_rust_version_is_the_highest_of_the_locked_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let host = Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8(host.stdout).unwrap();
    let host = host.lines().find_map(|l| l.strip_prefix("host: ")).unwrap().to_owned();
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--filter-platform", &host])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: BTreeSet<&str> =
        metadata["workspace_members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    let built: BTreeSet<&str> =
        metadata["resolve"]["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    let (highest, by) = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| built.contains(p["id"].as_str().unwrap()) && !members.contains(p["id"].as_str().unwrap()))
        .filter_map(|p| Some((version(p["rust_version"].as_str()?), p["name"].as_str().unwrap().to_owned())))
        .max()
        .unwrap();
    let workspace: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    let declared = version(workspace["workspace"]["package"]["rust-version"].as_str().unwrap());
    assert_eq!(declared, highest, "rust-version is that of {by}, the most demanding locked dependency");
    assert!(dockerfile_rust() >= declared, "the Dockerfile's Rust accepts the lockfile");
}
