//! `--config FILE`: settings from a file, for deployments where a
//! ConfigMap reads better than a long argument list.
//!
//! The file has one `name = value` per line, where `name` is a long flag
//! of the command without its dashes (`window = 30s`,
//! `runqueue-wait-share = 0.1`). Values may be quoted; `#` starts a
//! comment. Flat files of this form are also valid TOML. Settings given on
//! the command line override the file.

use std::{ffi::OsString, fs, path::Path};

use anyhow::{Context as _, bail};

const FLAG: &str = "--config";

/// Returns the arguments with the settings of `--config FILE` (if given)
/// inserted right after the subcommand, so later command-line flags win.
/// `is_known(subcommand, name)` returns whether a setting name is a long
/// flag of that subcommand.
pub fn expand_args(args: Vec<OsString>, is_known: impl Fn(&str, &str) -> bool) -> anyhow::Result<Vec<OsString>> {
    let Some(position) = args.iter().position(|arg| arg == FLAG || arg.to_string_lossy().starts_with("--config="))
    else {
        return Ok(args);
    };
    let (path, consumed) = match args[position].to_string_lossy().strip_prefix("--config=") {
        Some(path) => (OsString::from(path), 1),
        None => (args.get(position + 1).cloned().with_context(|| format!("{FLAG} needs a file path"))?, 2),
    };
    let settings = read_settings(Path::new(&path))?;
    let subcommand = args.get(1).map(|arg| arg.to_string_lossy().into_owned()).unwrap_or_default();
    for (name, _) in &settings {
        if !is_known(&subcommand, name) {
            bail!(
                "invalid config file {}: unknown setting {name:?} for `agent {subcommand}`; \
                 see `agent {subcommand} --help` for the names",
                Path::new(&path).display()
            );
        }
    }

    let mut expanded: Vec<OsString> = Vec::with_capacity(args.len() + settings.len());
    for (index, arg) in args.into_iter().enumerate() {
        if index >= position && index < position + consumed {
            continue;
        }
        expanded.push(arg);
        // Index 1 is the subcommand (`run`, `classify`).
        if index == 1 {
            expanded.extend(settings.iter().map(|(name, value)| OsString::from(format!("--{name}={value}"))));
        }
    }
    Ok(expanded)
}

fn read_settings(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    parse_settings(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Parses `name = value` lines into pairs.
fn parse_settings(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut settings = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            bail!("line {}: expected `name = value`, found {line:?}", number + 1);
        };
        let name = name.trim();
        let value = value.trim().trim_matches('"');
        if name.is_empty() || name.starts_with('-') || name == "config" {
            bail!("line {}: invalid setting name {name:?}; use a long flag name such as window", number + 1);
        }
        settings.push((name.to_owned(), value.to_owned()));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_values_and_comments() {
        let text = "# thresholds\nwindow = \"30s\"\nrunqueue-wait-share = 0.2  # stricter\n\n";

        let settings = parse_settings(text).unwrap();

        assert_eq!(
            settings,
            vec![("window".to_owned(), "30s".to_owned()), ("runqueue-wait-share".to_owned(), "0.2".to_owned())]
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse_settings("window 30s").is_err());
        assert!(parse_settings("--window = 30s").is_err());
        assert!(parse_settings("config = other.conf").is_err());
    }

    #[test]
    fn settings_go_after_the_subcommand() {
        let file = std::env::temp_dir().join(format!("chokepoint-config-{}.conf", std::process::id()));
        fs::write(&file, "window = 10s\n").unwrap();
        let args: Vec<OsString> = ["agent", "run", "--config", file.to_str().unwrap(), "--window", "20s"]
            .iter()
            .map(OsString::from)
            .collect();

        let expanded = expand_args(args, |subcommand, name| subcommand == "run" && name == "window").unwrap();

        fs::remove_file(&file).unwrap();
        let expanded: Vec<String> = expanded.iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
        assert_eq!(expanded, vec!["agent", "run", "--window=10s", "--window", "20s"]);
    }

    #[test]
    fn unknown_setting_is_rejected() {
        let file = std::env::temp_dir().join(format!("chokepoint-config-bad-{}.conf", std::process::id()));
        fs::write(&file, "windw = 10s\n").unwrap();
        let args: Vec<OsString> =
            ["agent", "run", "--config", file.to_str().unwrap()].iter().map(OsString::from).collect();

        let error = expand_args(args, |_, name| name == "window").unwrap_err();

        fs::remove_file(&file).unwrap();
        assert!(error.to_string().contains("unknown setting \"windw\""), "{error}");
    }
}
