//! Kafka test support: the shared Tansu broker that tests/run starts, a private Tansu a
//! test can stop and restart, and a plain rdkafka consumer that reads a whole topic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Bootstrap address of the broker started by tests/run.
pub const BROKER_ENV: &str = "LOKET_TEST_KAFKA";
/// The Tansu binary tests/run checked, for tests that run their own broker.
pub const TANSU_ENV: &str = "LOKET_TEST_TANSU";

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: the Kafka tests need a broker; run them with tests/run, which starts Tansu")
    })
}

/// The shared broker's bootstrap address.
pub fn shared_broker() -> String {
    required(BROKER_ENV)
}

/// The record key file of every test gateway: one key, so gateways of one test trust each
/// other's records (written once per test binary, in the target's temporary directory).
pub fn record_key_file() -> PathBuf {
    static KEY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join("kafka-record.key");
        let staged = dir.join(format!("kafka-record.key.{}", std::process::id()));
        std::fs::write(&staged, "a record key shared by the gateways of the kafka tests\n").unwrap();
        std::fs::rename(&staged, &path).unwrap();
        path
    })
    .clone()
}

/// A named subscription from the earliest record (Kafka mode), ending after `limit`
/// deliveries (0: never).
pub fn from_earliest(name: &str, limit: u64) -> loket_server::proto::SubscribeRequest {
    use loket_server::proto::{subscribe_request::Start, Earliest};
    loket_server::proto::SubscribeRequest {
        types: vec![],
        start: Some(Start::Earliest(Earliest {})),
        name: name.to_owned(),
        limit,
    }
}

/// A topic prefix no other test uses on the shared broker.
pub fn unique_prefix() -> String {
    format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A Tansu broker owned by one test, on a fixed port and SQLite file so it can be stopped
/// and started again with its data.
pub struct Tansu {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// The address the broker names in its metadata (its own, or a hop's in front of it).
    advertised: String,
    /// Whether clients must log in with SASL (SCRAM), from the next (re)start.
    pub authentication: bool,
}

impl Tansu {
    pub fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_behind(dir, port, &format!("127.0.0.1:{port}"), false)
    }

    /// A broker on `port` that tells clients to connect to `advertised` (a hop in front
    /// of it), with SASL required when `authentication`.
    pub fn start_behind(dir: &Path, port: u16, advertised: &str, authentication: bool) -> Self {
        let mut tansu =
            Tansu { child: None, port, dir: dir.to_owned(), advertised: advertised.to_owned(), authentication };
        tansu.restart();
        tansu
    }

    /// Adds a SCRAM-SHA-512 user (with `tansu user create`, straight to the broker's port).
    pub fn create_user(&self, name: &str, password: &str) {
        let broker = format!("tcp://127.0.0.1:{}", self.port);
        let output = Command::new(required(TANSU_ENV))
            .args(["user", "create", "--broker", &broker, "--mechanism", "scram512", name, password])
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "tansu user create: {output:?}");
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "tansu is already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://{}", self.advertised);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("tansu.log")).unwrap();
        let mut command = Command::new(required(TANSU_ENV));
        command.args(["broker", "--storage-engine", "sqlite://tansu.db", "--listener-url", &url]);
        command.args(["--advertised-listener-url", &advertised]);
        if self.authentication {
            command.arg("--authentication");
        }
        let child = command
            .current_dir(&self.dir)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {} within 30 s", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker (SIGKILL: like a crashed or unplugged broker).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One record as a plain Kafka consumer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub headers: HashMap<String, String>,
    pub payload: Vec<u8>,
    /// The record has no value at all (a tombstone), not an empty one.
    pub null_value: bool,
}

impl Record {
    pub fn header(&self, key: &str) -> &str {
        self.headers.get(key).map(String::as_str).unwrap_or_else(|| panic!("header {key} missing in {self:?}"))
    }
}

/// Reads `topic` from the beginning of every partition until at least `want` records
/// arrived and every partition is read to its end (panics after 60 s with what it has),
/// as a plain consumer without a consumer group of its own.
pub fn read_topic(brokers: &str, topic: &str, want: usize) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let partitions = loop {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(m) if m.topics().first().is_some_and(|t| t.error().is_none() && !t.partitions().is_empty()) => {
                break m.topics()[0].partitions().iter().map(|p| p.id()).collect::<Vec<_>>();
            }
            _ => {
                assert!(Instant::now() < deadline, "topic {topic} does not exist");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        assignment.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut records: Vec<Record> = Vec::new();
    // Then everything up to the high watermarks, so that no duplicate stays unread.
    let mut ends: Option<HashMap<i32, i64>> = None;
    loop {
        if ends.is_none() && records.len() >= want {
            ends = Some(
                partitions
                    .iter()
                    .map(|p| (*p, consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).unwrap().1))
                    .collect(),
            );
        }
        if let Some(ends) = &ends {
            let done = ends.iter().all(|(p, high)| {
                records.iter().filter(|r| r.partition == *p).map(|r| r.offset + 1).max().unwrap_or(0) >= *high
            });
            if done {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {want} records on {topic} after 60 s: {records:#?}",
            records.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => records.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    h.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                payload: m.payload().unwrap_or_default().to_vec(),
                null_value: m.payload().is_none(),
            }),
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    records
}

/// Whether `topic` exists.
pub fn topic_exists(brokers: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    metadata.topics().iter().any(|t| t.name() == topic)
}
