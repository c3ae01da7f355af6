//! A running `agent run` on a free loopback port, stopped with SIGTERM on
//! drop.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{binary, metrics::Scrape};

pub struct Agent {
    child: Option<Child>,
    pub address: String,
}

impl Agent {
    /// Starts the agent with a short tick, so tests see fresh numbers, and
    /// waits until `/healthz` returns 200.
    pub fn start(extra_args: &[&str]) -> Self {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(binary("agent"))
            .args(["run", "--listen", &address, "--tick", "100ms", "--window", "5s", "--min-duration", "1s"])
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("starting the agent");
        let agent = Self { child: Some(child), address };
        agent.wait_healthy(Duration::from_secs(30));
        agent
    }

    fn wait_healthy(&self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(response) = self.get("/healthz")
                && response.starts_with("HTTP/1.1 200")
            {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("the agent did not become healthy within {timeout:?}");
    }

    /// Sends raw bytes and returns the whole response.
    pub fn request(&self, raw: &[u8]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(&self.address)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(raw)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    }

    pub fn get(&self, path: &str) -> std::io::Result<String> {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes())
    }

    /// Scrapes `/metrics` in the classic text format.
    pub fn scrape(&self) -> Scrape {
        let response = self.get("/metrics").expect("scraping /metrics");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response without body");
        assert!(head.starts_with("HTTP/1.1 200"), "scrape failed: {head}");
        Scrape::parse(body)
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate().expect("agent already stopped")
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("finding a free loopback port")
}
