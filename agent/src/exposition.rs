//! Exposition formats. prometheus-client writes OpenMetrics text, which
//! Prometheus requests by its `Accept` header. Other clients (curl,
//! `promtool check metrics`, Prometheus before 2.5) get the classic text
//! format, version 0.0.4.

pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Returns whether the request's `Accept` header lists OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| accept.contains("application/openmetrics-text"))
}

/// Rewrites OpenMetrics text into the classic format: counter families
/// are named with their `_total` suffix in `# HELP` and `# TYPE`, and the
/// `# UNIT` and `# EOF` lines, which the classic format lacks, are dropped.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        match rename_counter_comment(line, &counters) {
            Some(renamed) => text.push_str(&renamed),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

fn rename_counter_comment(line: &str, counters: &std::collections::HashSet<&str>) -> Option<String> {
    for prefix in ["# HELP ", "# TYPE "] {
        if let Some(rest) = line.strip_prefix(prefix) {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                return Some(format!("{prefix}{name}_total {tail}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = "\
# HELP x_seconds Time.
# TYPE x_seconds counter
# UNIT x_seconds seconds
x_seconds_total{a=\"1\"} 2.5
# HELP g A gauge.
# TYPE g gauge
g 1
# EOF
";

    #[test]
    fn counters_get_total_suffix() {
        let text = to_prometheus_text(OPENMETRICS);

        assert!(text.contains("# HELP x_seconds_total Time.\n"), "{text}");
        assert!(text.contains("# TYPE x_seconds_total counter\n"), "{text}");
        assert!(text.contains("# TYPE g gauge\n"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn accept_negotiation() {
        assert!(wants_openmetrics(Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
