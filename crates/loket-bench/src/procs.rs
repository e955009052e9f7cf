//! Servers under test run as child processes, so their CPU time and memory are their own:
//! the running executable (the `loket` binary) started as `loket serve` or as the
//! transport baseline.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use loket_server::certs;

use crate::TRANSPORT_SUBCOMMAND;

/// The gateway counts as idle when it used less than this share of one core over
/// [`SETTLE_WINDOW`].
const IDLE_SHARE: f64 = 0.05;
const SETTLE_WINDOW: Duration = Duration::from_millis(500);
/// How long [`ServerProcess::settle`] waits at most.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(300);

/// "the gateway was idle N s after WHAT" for a note.
pub fn settled_note(settled: Option<Duration>, what: &str) -> String {
    match settled {
        Some(after) => format!("the gateway was idle {:.1} s after {what}", after.as_secs_f64()),
        None => format!("the gateway was still busy {} s after {what}", SETTLE_LIMIT.as_secs()),
    }
}

pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    /// The gateway's `/metrics` listener (the transport baseline has none).
    pub metrics: Option<SocketAddr>,
}

impl ServerProcess {
    /// `loket serve` on a gateway of its own: data in `work/name`, mutual TLS with the
    /// certificates in `certs_dir`, `extra_config` (further sections) at the end of its
    /// config.
    pub fn gateway(work: &Path, name: &str, certs_dir: &Path, extra_config: &str) -> anyhow::Result<Self> {
        let config = gateway_config(work, name, certs_dir, extra_config)?;
        Self::spawn(&["serve", "--config", &config.display().to_string()])
    }

    /// The transport baseline: the null gateway with the certificates in `certs_dir`.
    pub fn transport(certs_dir: &Path) -> anyhow::Result<Self> {
        Self::spawn(&[TRANSPORT_SUBCOMMAND, "--certs", &certs_dir.display().to_string()])
    }

    /// Runs this executable with `args` and waits for the log line that names the address.
    fn spawn(args: &[&str]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the loket executable")?;
        let mut cmd = Command::new(exe);
        cmd.args(args).env("RUST_LOG", "info").stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start the server under test")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Keep draining so the child never blocks on a full pipe.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = |line: &str| line.split_whitespace().find_map(|w| w.strip_prefix("address=")).map(str::to_owned);
        let mut metrics = None;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                // Logged before the gRPC listener's line.
                Ok(line) if line.contains("metrics and quality dashboard serving") => {
                    metrics = address(&line).and_then(|a| a.parse().ok());
                }
                // Both servers log "... gateway serving ... address=HOST:PORT" once listening.
                Ok(line) if line.contains("gateway serving") => {
                    if let Some(addr) = address(&line) {
                        let addr = addr.parse().with_context(|| format!("bad address in {line:?}"))?;
                        return Ok(Self { child, addr, metrics });
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    if let Some(status) = child.try_wait()? {
                        bail!("the server under test exited with {status} before serving");
                    }
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("the server under test did not start within 60 s")
    }

    /// The gateway's `/metrics` page (Prometheus text).
    pub fn scrape(&self) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let addr = self.metrics.context("the server under test serves no metrics")?;
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: loket\r\nConnection: close\r\n\r\n")?;
        let mut page = String::new();
        stream.read_to_string(&mut page)?;
        Ok(page)
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// Waits until the gateway is idle: the followers (access index, handover figures,
    /// processing log) work through what was published after the replies went out, and
    /// their work belongs to the run that published it, not to the next. First until every
    /// follower has reached the journal's last sequence (`loket_follower_sequence` on
    /// `/metrics`; CPU alone misleads while the kernel writes back a long fill and the
    /// gateway waits on the disk), then until it uses almost no CPU. How long that took,
    /// or `None` when it was still busy after [`SETTLE_LIMIT`].
    pub async fn settle(&self) -> anyhow::Result<Option<Duration>> {
        let start = Instant::now();
        if self.metrics.is_some() {
            while !self.followers_caught_up()? {
                if start.elapsed() >= SETTLE_LIMIT {
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        while start.elapsed() < SETTLE_LIMIT {
            let before = self.cpu()?;
            tokio::time::sleep(SETTLE_WINDOW).await;
            let used = self.cpu()?.saturating_sub(before);
            if used.as_secs_f64() < IDLE_SHARE * SETTLE_WINDOW.as_secs_f64() {
                // The quiet window itself is not part of the work.
                return Ok(Some(start.elapsed().saturating_sub(SETTLE_WINDOW)));
            }
        }
        Ok(None)
    }

    /// Whether every follower the gateway reports has reached its journal's last sequence.
    fn followers_caught_up(&self) -> anyhow::Result<bool> {
        let page = self.scrape()?;
        let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.trim().parse::<f64>().ok());
        let last = page.lines().find(|l| l.starts_with("loket_journal_last_sequence ")).and_then(value);
        let followers: Vec<f64> =
            page.lines().filter(|l| l.starts_with("loket_follower_sequence{")).filter_map(value).collect();
        Ok(match last {
            Some(last) => !followers.is_empty() && followers.iter().all(|&f| f >= last),
            None => false,
        })
    }

    /// User plus system CPU time so far.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        process_cpu(self.child.id())
    }

    /// (resident now, peak resident) in bytes.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let status = procfs::process::Process::new(self.child.id() as i32)?.status()?;
        Ok((status.vmrss.unwrap_or(0) * 1024, status.vmhwm.unwrap_or(0) * 1024))
    }

    /// Starts the peak resident set afresh from the current one (`clear_refs` 5), so that
    /// the next [`ServerProcess::memory`] peak is that of what ran since.
    pub fn reset_peak(&self) -> anyhow::Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .context("cannot reset the peak resident set")
    }

    /// SIGKILL and wait: the gateway gets no chance to close anything.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait, so the journal is flushed and closed.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("the server under test ignored SIGTERM for 30 s")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The config of a gateway under test, with `extra` (further sections) at its end.
fn gateway_config(work: &Path, name: &str, certs_dir: &Path, extra: &str) -> anyhow::Result<PathBuf> {
    let data_dir = work.join(name);
    let path = work.join(format!("{name}.toml"));
    let text = format!(
        "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[tls]\nclient_ca = {:?}\nserver_cert = {:?}\nserver_key = {:?}\n{extra}",
        data_dir.display().to_string(),
        certs_dir.join(certs::CA_CERT).display().to_string(),
        certs_dir.join(certs::SERVER_CERT).display().to_string(),
        certs_dir.join(certs::SERVER_KEY).display().to_string(),
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// User plus system CPU time of process `pid` so far.
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = procfs::process::Process::new(pid as i32)?.stat()?;
    Ok(Duration::from_secs_f64((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64))
}

/// CPU time of this process so far.
pub fn own_cpu() -> anyhow::Result<Duration> {
    let stat = procfs::process::Process::myself()?.stat()?;
    Ok(Duration::from_secs_f64((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64))
}

/// Peak resident memory of this process in bytes.
pub fn own_peak_rss() -> Option<u64> {
    procfs::process::Process::myself().ok()?.status().ok()?.vmhwm.map(|kb| kb * 1024)
}

/// Bytes of all files below `dir`.
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
