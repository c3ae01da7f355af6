//! The machine a run was taken on, for the report.

use std::{fs, process::Command};

#[derive(Clone, Debug)]
pub struct Machine {
    pub cpus: u32,
    pub kernel: String,
    pub cpu_model: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages.
    pub load_average: String,
    /// UTC date and time, from `date -u`.
    pub date: String,
}

impl Machine {
    /// Reads the machine's description; fields that cannot be read are
    /// `unknown`, since they only label the report.
    pub fn read() -> Self {
        let read = |path: &str| fs::read_to_string(path).map(|text| text.trim().to_owned()).ok();
        let cpus = std::thread::available_parallelism().map_or(1, |count| count.get() as u32);
        let cpu_model = read("/proc/cpuinfo")
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let load_average = read("/proc/loadavg")
            .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "unknown".into());
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        Self {
            cpus,
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            cpu_model,
            load_average,
            date,
        }
    }
}
