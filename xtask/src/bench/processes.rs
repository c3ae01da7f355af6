//! The programs under test, started and stopped by the benchmark: the
//! agent (`agent run` on a free loopback port) and libbpf-tools `runqlat`.

use std::{
    fs::{self, File},
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    bpf_stats::bpf_fds_of,
    guard::{ChildGuard, check_interrupted, sleep_interruptible},
};

/// Maximum time for the agent to return 200 on `/healthz`, and for runqlat
/// to attach, before the benchmark fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `agent run`, stopped with SIGTERM on drop.
pub struct AgentProcess {
    guard: ChildGuard,
    address: String,
    /// Wall time from spawning the process to the first 200 from `/healthz`.
    pub startup: Duration,
}

impl AgentProcess {
    /// Starts `BINARY run --listen 127.0.0.1:PORT` and waits for `/healthz`.
    /// The agent's log (RUST_LOG=warn) goes to `log`.
    pub fn start(binary: &Path, log: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let address = format!("127.0.0.1:{port}");
        let log_file = open_log(log)?;
        let started_at = Instant::now();
        let child = Command::new(binary)
            .args(["run", "--listen", &address])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} failed", binary.display()))?;
        let mut agent =
            Self { guard: ChildGuard::new(child, "agent run", libc::SIGTERM), address, startup: Duration::ZERO };

        while started_at.elapsed() < START_TIMEOUT {
            check_interrupted()?;
            agent
                .guard
                .check_running()
                .with_context(|| format!("the agent did not start; its log is {}", log.display()))?;
            if let Ok(response) = agent.get("/healthz")
                && response.status == 200
            {
                agent.startup = started_at.elapsed();
                return Ok(agent);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!(
            "timed out after {START_TIMEOUT:?} waiting for status 200 from the agent's /healthz; its log is {}",
            log.display()
        )
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Sends `GET path` and reads the whole response.
    pub fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        http_get(&self.address, path)
    }
}

/// A running libbpf-tools `runqlat`, stopped with SIGINT (after which it
/// prints its histogram, which goes to /dev/null) on drop.
pub struct RunqlatProcess {
    guard: ChildGuard,
}

/// `runqlat` attaches three programs: sched_wakeup, sched_wakeup_new and
/// sched_switch.
const RUNQLAT_LINKS: usize = 3;

impl RunqlatProcess {
    /// Starts `runqlat` with no interval, so it runs until interrupted, and
    /// waits until it has descriptors of its three BPF links, which means
    /// it has attached.
    pub fn start(binary: &Path, log: &Path) -> anyhow::Result<Self> {
        let child = Command::new(binary)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(open_log(log)?)
            .spawn()
            .with_context(|| format!("starting {} failed; install the libbpf-tools package", binary.display()))?;
        let mut runqlat = Self { guard: ChildGuard::new(child, "runqlat", libc::SIGINT) };

        let started_at = Instant::now();
        while started_at.elapsed() < START_TIMEOUT {
            check_interrupted()?;
            runqlat
                .guard
                .check_running()
                .with_context(|| format!("runqlat did not start; its log is {}", log.display()))?;
            // The process may close or open descriptors while we read; a
            // failed read is retried on the next poll.
            if let Ok(fds) = bpf_fds_of(runqlat.pid())
                && fds.links >= RUNQLAT_LINKS
            {
                return Ok(runqlat);
            }
            sleep_interruptible(Duration::from_millis(20))?;
        }
        bail!("runqlat did not attach {RUNQLAT_LINKS} programs within {START_TIMEOUT:?}; its log is {}", log.display())
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

/// Status and body of an HTTP response, and the wall time of the request.
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

/// Sends a minimal HTTP/1.1 GET with `Connection: close` and reads the
/// whole response, timed from connect to the last byte.
pub fn http_get(address: &str, path: &str) -> anyhow::Result<HttpResponse> {
    let started_at = Instant::now();
    let mut stream = TcpStream::connect(address).with_context(|| format!("connecting to {address} failed"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
        .with_context(|| format!("sending GET {path} to {address} failed"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the response to GET {path} from {address} failed"))?;
    let elapsed = started_at.elapsed();
    let (status, body) =
        parse_response(&response).with_context(|| format!("invalid response to GET {path} from {address}"))?;
    Ok(HttpResponse { status, body: body.to_vec(), elapsed })
}

/// Splits a raw HTTP/1.1 response into its status code and body.
fn parse_response(response: &[u8]) -> anyhow::Result<(u16, &[u8])> {
    let Some(header_end) = response.windows(4).position(|window| window == b"\r\n\r\n") else {
        bail!("no end of headers in {} bytes", response.len());
    };
    let head = String::from_utf8_lossy(&response[..header_end]);
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("invalid status line {status_line:?}"))?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        bail!("chunked bodies are not supported, and the agent is not expected to send them");
    }
    Ok((status, &response[header_end + 4..]))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port failed")?;
    Ok(listener.local_addr()?.port())
}

fn open_log(path: &Path) -> anyhow::Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {} failed", parent.display()))?;
    }
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log file {} failed", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_status_and_body() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";

        let (status, body) = parse_response(raw).unwrap();

        assert_eq!(status, 200);
        assert_eq!(body, b"ok\n");
    }

    #[test]
    fn response_without_header_end() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn response_with_invalid_status() {
        assert!(parse_response(b"HTTP/1.1 OK\r\n\r\n").is_err());
    }
}
