//! The Kafka broker of the Kafka arms: one given with `--kafka`, or a Tansu that this run
//! starts in its work directory and stops when it is done, also when an arm fails.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::procs::process_cpu;

const TANSU_INSTALL: &str = "cargo install tansu --version 0.6.0 --locked --features libsql";

/// Where the broker comes from.
pub enum Source {
    /// `--kafka`: bootstrap servers of a running broker.
    Given(String),
    /// The Tansu executable to start one with.
    Tansu(PathBuf),
}

impl Source {
    pub fn resolve(kafka: Option<&str>) -> anyhow::Result<Self> {
        match kafka {
            Some(bootstrap) => {
                let well_formed = bootstrap.split(',').all(|b| {
                    b.trim()
                        .rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                });
                if !well_formed {
                    bail!("--kafka {bootstrap:?} is not a list like host:9092,host2:9092");
                }
                Ok(Self::Given(bootstrap.to_owned()))
            }
            None => find_tansu().map(Self::Tansu),
        }
    }
}

pub struct Broker {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub bootstrap: String,
    tansu: Option<Child>,
}

impl Broker {
    /// The given broker, or a Tansu started in `dir`.
    pub fn open(source: &Source, dir: &Path) -> anyhow::Result<Self> {
        match source {
            Source::Given(bootstrap) => Ok(Self { bootstrap: bootstrap.clone(), tansu: None }),
            Source::Tansu(tansu) => Self::start_tansu(tansu, dir),
        }
    }

    /// Starts `tansu` with SQLite storage in `dir` on a free loopback port and waits until
    /// it accepts connections. The in-memory engine is not an option: it cannot fetch from
    /// inside a record batch, so the consumer could not read what was produced.
    fn start_tansu(tansu: &Path, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log_path = dir.join("tansu.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = Command::new(tansu)
            .args(["broker", "--storage-engine", "sqlite://tansu.db", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", tansu.display()))?;
        // From here on the guard stops the broker, whatever happens next.
        let mut broker = Self { bootstrap: format!("127.0.0.1:{port}"), tansu: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(child) = broker.tansu.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("tansu exited with {status} before listening; its log: {}", tail(&log_path));
                }
            }
            if Instant::now() > deadline {
                bail!("tansu did not listen on port {port} within 30 s; its log: {}", tail(&log_path));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    /// Answers a metadata request, so that an unreachable broker fails the run at once
    /// rather than as a stalled arm.
    pub async fn check(&self) -> anyhow::Result<()> {
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
            client
                .fetch_metadata(None, Duration::from_secs(15))
                .with_context(|| format!("cannot reach the kafka broker at {bootstrap}"))?;
            Ok(())
        })
        .await?
    }

    /// CPU time of the broker so far, when this run started it.
    pub fn cpu(&self) -> Option<Duration> {
        self.tansu.as_ref().and_then(|c| process_cpu(c.id()).ok())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.tansu.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Tansu executable: on PATH, else where `cargo install` puts it; an error that says
/// what to do when there is none.
fn find_tansu() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("tansu")).collect::<Vec<_>>())
        .unwrap_or_default();
    let installed = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/tansu"));
    on_path.into_iter().chain(installed).find(|p| p.is_file()).with_context(|| {
        format!(
            "the gateway-kafka and rdkafka-raw arms need a kafka broker: give one with --kafka HOST:PORT, \
             install tansu to have one started ({TANSU_INSTALL}), or leave those arms out with --arms"
        )
    })
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let last = lines[lines.len().saturating_sub(10)..].join("\n");
    if last.is_empty() {
        "(empty)".to_owned()
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_broker_list_is_checked_before_use() {
        assert!(matches!(Source::resolve(Some("127.0.0.1:9092, kafka:9093")), Ok(Source::Given(_))));
        for bad in ["nohost", "host:", ":9092", "host:99999", "a:1,"] {
            let err = Source::resolve(Some(bad)).err().unwrap().to_string();
            assert!(err.contains("--kafka"), "{bad}: {err}");
        }
    }
}
