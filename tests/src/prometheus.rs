//! A real Prometheus server (Debian package `prometheus`) scraping an agent
//! on loopback, queried over its HTTP API. Stopped and its data removed on
//! drop.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The job name the deploy/ scrape configuration uses.
pub const JOB: &str = "chokepoint-agent";

pub struct Prometheus {
    child: Child,
    address: String,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (HOST:PORT) every second.
    pub fn start(target: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("finding a free loopback port");
        let address = format!("127.0.0.1:{port}");
        let dir = std::env::temp_dir().join(format!("chokepoint-prometheus-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("creating the Prometheus folder");
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("writing the Prometheus configuration");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus (Debian package prometheus)");
        Self { child, address, dir }
    }

    /// Runs an instant query and returns the result vector's samples as
    /// (labels, value) pairs.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let Ok(body) = http_get(&self.address, &path) else { return Vec::new() };
        let Ok(response) = serde_json::from_str::<serde_json::Value>(&body) else { return Vec::new() };
        response["data"]["result"]
            .as_array()
            .map(|samples| {
                samples
                    .iter()
                    .filter_map(|sample| {
                        let value = sample["value"][1].as_str()?.parse().ok()?;
                        Some((sample["metric"].clone(), value))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls `promql` until it returns a sample that `accept` takes, or
    /// panics after `timeout` with the last result.
    pub fn wait_for(&self, promql: &str, timeout: Duration, accept: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        let mut last = Vec::new();
        while start.elapsed() < timeout {
            last = self.query(promql);
            if let Some((_, value)) = last.iter().find(|(_, value)| accept(*value)) {
                return *value;
            }
            thread::sleep(Duration::from_millis(500));
        }
        panic!("query {promql} gave no acceptable sample within {timeout:?}; last result: {last:?}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn http_get(address: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    Ok(body.to_owned())
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
