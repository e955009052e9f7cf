//! Shared test harness: an in-process gateway on 127.0.0.1:0 with a temporary data
//! directory and development certificates, and helpers to build events.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub mod kafka;

use loket_server::client::{connect, Client, ClientOptions};
use loket_server::proto::{CloudEvent, PublishReply, PublishRequest};
use loket_server::{certs, Config};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const PARTNERS: &[&str] = &["dtv", "kmar", "dji", "dvo", "coa", "ind", "politie", "gza", "quality"];
/// The event types partners publish.
pub const TYPES: &[&str] =
    &["physical-features", "medical-transfer-consent", "medical-file-transfer", "baggage", "transport-status"];
/// The event types only the gateway publishes (source "loket").
pub const GATEWAY_TYPES: &[&str] = &["quality-digest", "handover-readiness"];

pub fn repo_root() -> PathBuf {
    // From cargo at run time: a test binary may be reused from the shared target directory
    // (tests/run keeps it in ~/.cache) that a checkout at another path built.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    PathBuf::from(manifest).join("../..")
}

/// The complete example payload of an event type, from schemas/examples/.
pub fn example(event_type: &str) -> Value {
    let path = repo_root().join(format!("schemas/examples/{event_type}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// An example payload of `event_type` for another case.
pub fn example_for(event_type: &str, case: &str) -> Value {
    let mut v = example(event_type);
    v["vNumber"] = Value::String(case.to_owned());
    v
}

pub fn event(source: &str, event_type: &str, id: &str, data: &Value) -> CloudEvent {
    CloudEvent {
        id: id.to_owned(),
        source: source.to_owned(),
        r#type: event_type.to_owned(),
        subject: data["vNumber"].as_str().unwrap_or_default().to_owned(),
        time: None,
        dataschema: String::new(),
        datacontenttype: "application/json".to_owned(),
        data: serde_json::to_vec(data).unwrap(),
        specversion: "1.0".to_owned(),
        extensions: Default::default(),
    }
}

pub struct Gateway {
    pub addr: SocketAddr,
    /// The /metrics and /quality listener (None when the test's config disabled it).
    pub metrics_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), loket_server::Error>>>,
    _temp: Option<TempDir>,
}

impl Gateway {
    /// A fresh gateway in a temporary directory, with certificates for every partner.
    pub async fn start() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let mut gw = Self::start_in(temp.path(), "").await;
        gw._temp = Some(temp);
        gw
    }

    /// A gateway on `data_dir` (which keeps its journal across restarts), configured by
    /// `extra_toml` on top of the defaults.
    pub async fn start_in(data_dir: &Path, extra_toml: &str) -> Self {
        let certs_dir = data_dir.join("certs");
        if !certs::exists(&certs_dir) {
            let partners: Vec<_> = PARTNERS.iter().map(|p| p.parse().unwrap()).collect();
            certs::init(&certs_dir, &partners, false).unwrap();
        }
        let toml = format!("data_dir = {:?}\n{extra_toml}", data_dir.display().to_string());
        let config = Config::parse(&toml, "test", &HashMap::new()).unwrap();
        // Each gateway gets its own metrics listener on a free port unless the test's
        // config turns metrics off.
        let metrics = if config.metrics.enabled {
            Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        } else {
            None
        };
        let metrics_addr = metrics.as_ref().map(|l| l.local_addr().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(loket_server::run_with(listener, metrics, config, async move {
            let _ = stopped.await;
        }));
        Self { addr, metrics_addr, data_dir: data_dir.to_owned(), stop: Some(stop), handle: Some(handle), _temp: None }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.data_dir.join("certs")
    }

    pub fn options(&self, partner: &str) -> ClientOptions {
        ClientOptions { server: self.url(), certs: self.certs_dir(), partner: partner.to_owned() }
    }

    pub async fn client(&self, partner: &str) -> Client {
        connect(&self.options(partner)).await.unwrap()
    }

    /// Graceful stop: ends streams, closes the journal, and returns what `run` returned.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

pub async fn publish(client: &mut Client, event: CloudEvent) -> Result<PublishReply, tonic::Status> {
    client.publish(PublishRequest { event: Some(event) }).await.map(tonic::Response::into_inner)
}

/// The field paths of a status' google.rpc.BadRequest, sorted.
pub fn violation_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    let mut fields: Vec<String> = status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    fields.sort();
    fields
}

/// The google.rpc.ErrorInfo reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|i| i.reason).unwrap_or_default()
}

/// A `loket serve` child process on 127.0.0.1:0 (the address is read from its log).
pub struct ServeProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// The /metrics and /quality listener, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The `address` field of a log line, text (`address=…`) or JSON (`[log] format = "json"`).
fn address_in(line: &str) -> Option<SocketAddr> {
    let text = line.split_whitespace().find_map(|w| w.strip_prefix("address=")).and_then(|a| a.parse().ok());
    text.or_else(|| serde_json::from_str::<Value>(line).ok()?["fields"]["address"].as_str()?.parse().ok())
}

impl ServeProcess {
    /// Writes a config for `data_dir` (plus `extra_toml`) next to it and starts the binary.
    pub fn spawn(data_dir: &Path, extra_toml: &str) -> Self {
        let config = data_dir.with_extension("toml");
        let metrics = if extra_toml.contains("[metrics]") { "" } else { "\n[metrics]\nlisten = \"127.0.0.1:0\"\n" };
        let text = format!(
            "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n{extra_toml}{metrics}",
            data_dir.display().to_string()
        );
        std::fs::write(&config, text).unwrap();
        Self::spawn_with_config(&config).expect("gateway started")
    }

    /// Starts `loket serve --config FILE`; `Err` holds the log when it exits instead.
    pub fn spawn_with_config(config: &Path) -> Result<Self, (Option<i32>, String)> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loket"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut metrics_addr = None;
        while std::time::Instant::now() < deadline {
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(line) if line.contains("metrics and quality dashboard serving") => {
                    metrics_addr = address_in(&line);
                }
                Ok(line) if line.contains("loket gateway serving") => {
                    let addr = address_in(&line).expect("address in the serving line");
                    return Ok(Self { child, addr, metrics_addr, log });
                }
                Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait().unwrap() {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        return Err((status.code(), log.lock().unwrap().join("\n")));
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().unwrap();
                    return Err((status.code(), log.lock().unwrap().join("\n")));
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("gateway did not start within 60 s:\n{}", log.lock().unwrap().join("\n"));
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap().code()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET over plain HTTP/1.1; returns the status line's code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// Debian's Chromium, which tests/run installs.
pub fn chromium() -> std::path::PathBuf {
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let path = Path::new(dir).join(name);
            if path.is_file() {
                return path;
            }
        }
    }
    panic!("chromium is not installed: tests/run installs it (apt-get install -y chromium)");
}

pub fn headless(profile: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap()
}

/// A series' value from `/metrics`: the first line of `name` carrying every label given.
pub fn metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (_, text) = http_get(addr, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// What a RESOURCE_EXHAUSTED status says: its reason, the advised wait (RetryInfo) and
/// the QuotaFailure violations as (subject, description).
pub fn exhausted(status: &tonic::Status) -> (String, Option<std::time::Duration>, Vec<(String, String)>) {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let retry = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let quota = status
        .get_details_quota_failure()
        .map(|q| q.violations.into_iter().map(|v| (v.subject, v.description)).collect())
        .unwrap_or_default();
    (reason(status), retry, quota)
}

/// A unary Publish whose request message never comes, on a connection of its own: the
/// gateway has its headers (so the call holds a place in flight) and waits for the
/// message. Resolves with what the gateway answers (e.g. at its request timeout);
/// dropping the future cancels the call.
pub async fn publish_without_body(options: &ClientOptions) -> Result<PublishReply, tonic::Status> {
    use tonic::service::Interceptor;
    let (endpoint, mut header) = loket_server::client::endpoint(options).unwrap();
    let channel = endpoint.connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/loket.v1.Gateway/Publish");
    let codec = tonic_prost::ProstCodec::<PublishRequest, PublishReply>::default();
    let never = futures::stream::pending::<PublishRequest>();
    let mut request = tonic::Request::new(never);
    // The x-loket-partner header of an insecure gateway, as the client library adds it.
    *request.metadata_mut() = header.call(tonic::Request::new(())).unwrap().metadata().clone();
    grpc.client_streaming(request, path, codec).await.map(tonic::Response::into_inner)
}
