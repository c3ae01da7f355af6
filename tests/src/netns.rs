//! Network namespaces made by a test, with files for `ip netns exec` to
//! bind over `/etc` (a resolv.conf of the test's own), removed on drop.
//!
//! Everything a test runs inside talks over the namespace's own loopback,
//! so no packet leaves it and the host's resolver is never used.

use std::{
    fs,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct NetNs {
    pub name: String,
    /// `/etc/netns/NAME`: `ip netns exec` bind-mounts each file here over
    /// the file of the same name in `/etc`, in a private mount namespace.
    etc_dir: PathBuf,
    /// A directory for ready files and client results.
    pub scratch: PathBuf,
}

impl NetNs {
    /// Makes `chokepoint-<pid>-<n>` with its loopback up.
    #[expect(clippy::new_without_default, reason = "creating a namespace is a side effect, not a default value")]
    pub fn new() -> Self {
        let name = format!("chokepoint-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]));
        let netns =
            Self { etc_dir: PathBuf::from("/etc/netns").join(&name), scratch: std::env::temp_dir().join(&name), name };
        run(Command::new("ip").args(["-n", &netns.name, "link", "set", "lo", "up"]));
        fs::create_dir_all(&netns.scratch).expect("creating the scratch directory");
        netns
    }

    /// Gives processes started with [`NetNs::command`] this resolv.conf,
    /// and an nsswitch.conf that resolves host names from files and DNS
    /// only (no systemd-resolved, no nscd).
    pub fn set_resolv_conf(&self, contents: &str) {
        fs::create_dir_all(&self.etc_dir).expect("creating /etc/netns/NAME");
        fs::write(self.etc_dir.join("resolv.conf"), contents).expect("writing resolv.conf");
        fs::write(self.etc_dir.join("nsswitch.conf"), "hosts: files dns\n").expect("writing nsswitch.conf");
    }

    /// Builds a command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    pub fn scratch_file(&self, name: &str) -> PathBuf {
        self.scratch.join(name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = fs::remove_dir_all(&self.etc_dir);
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|error| panic!("running {command:?}: {error}"));
    assert!(status.success(), "{command:?} failed: {status}");
}

/// Waits until `path` exists and is not empty, and returns its contents.
pub fn wait_for_file(path: &PathBuf, timeout: Duration) -> String {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(text) = fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{} did not appear within {timeout:?}", path.display());
}

/// Waits for a client's result file to end with `done`, and returns its
/// lines before that one.
pub fn wait_for_results(path: &PathBuf, timeout: Duration) -> Vec<String> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(text) = fs::read_to_string(path)
            && text.lines().last() == Some("done")
        {
            return text.lines().filter(|line| *line != "done").map(str::to_owned).collect();
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{} was not complete within {timeout:?}", path.display());
}

/// One result line of `net-client`: target, outcome and elapsed seconds.
pub struct Timed {
    pub target: String,
    pub outcome: String,
    pub seconds: f64,
}

/// Counts the results whose outcome is `outcome`.
pub fn count_outcome(results: &[Timed], outcome: &str) -> usize {
    results.iter().filter(|result| result.outcome == outcome).count()
}

pub fn parse_results(lines: &[String]) -> Vec<Timed> {
    lines
        .iter()
        .map(|line| {
            let mut fields = line.split(' ');
            let target = fields.next().unwrap_or_default().to_owned();
            let outcome = fields.next().unwrap_or_default().to_owned();
            let nanoseconds: f64 =
                fields.next().and_then(|text| text.parse().ok()).unwrap_or_else(|| panic!("bad result line {line:?}"));
            Timed { target, outcome, seconds: nanoseconds / 1e9 }
        })
        .collect()
}
