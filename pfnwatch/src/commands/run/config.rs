//! The daemon's configuration file (`/etc/pfnwatch/pfnwatch.toml`): its
//! schema, checked while it is read, so a bad key or value is an error that
//! names the key and the line. `deploy/pfnwatch.toml` documents every key.

use crate::kernel::lookups::LookupMode;
use crate::kernel::session::{RINGBUF_RULE, check_ringbuf_kib};
use crate::rules::{RuleId, Severity};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where `pfnwatch run` looks when `--config` is not given. A missing file
/// there means "all defaults"; a missing `--config FILE` is an error.
pub const DEFAULT_PATH: &str = "/etc/pfnwatch/pfnwatch.toml";

/// Longest interval or duplicate window, in seconds (one day).
pub const MAX_SECONDS: u64 = 86_400;

/// Every key is optional: what the file leaves out keeps its default, and
/// a flag given on the command line wins over the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Seconds between per-hook count reports in the log.
    pub interval: Option<Seconds>,
    /// Also write every alert as one JSON object per line here.
    pub alerts_file: Option<NonEmptyPath>,
    /// Seconds in which repeats of an alert collapse into one follow-up.
    pub dedup_window: Option<Seconds>,
    /// Alerts below this severity are not logged (still counted and written).
    pub log_severity: Option<Severity>,
    #[serde(default)]
    pub web: Web,
    #[serde(default)]
    pub kernel: Kernel,
    #[serde(default)]
    pub rules: Rules,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Web {
    /// Where `/metrics` is served.
    pub listen_address: Option<ListenAddress>,
    /// TLS and basic auth for `/metrics`: a file in the Prometheus exporter
    /// toolkit's web configuration format (`sinks/http/web_config.rs`).
    pub config_file: Option<NonEmptyPath>,
}

/// What is fixed when the programs are loaded: a change needs a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    pub btf: Option<NonEmptyPath>,
    pub ringbuf_kib: Option<RingbufKib>,
    /// "on-demand" or "always": when the page-table lookups are attached.
    pub lookups: Option<LookupMode>,
    /// Seconds the lookups stay attached once no device mapping is left.
    pub lookups_grace: Option<Seconds>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Rules turned off, by id or name.
    #[serde(default)]
    pub disable: Vec<RuleId>,
    /// Rule id or name -> severity.
    #[serde(default)]
    pub severity: BTreeMap<RuleId, Severity>,
}

/// A number of seconds, 1 to a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct Seconds(pub u64);

impl TryFrom<i64> for Seconds {
    type Error = String;

    fn try_from(n: i64) -> Result<Self, String> {
        match u64::try_from(n) {
            Ok(s) if (1..=MAX_SECONDS).contains(&s) => Ok(Seconds(s)),
            _ => Err(format!(
                "{n} is out of range: seconds from 1 to {MAX_SECONDS}"
            )),
        }
    }
}

/// The ring buffer's size in KiB: a power of two from 4 KiB to 1 GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct RingbufKib(pub u32);

impl TryFrom<i64> for RingbufKib {
    type Error = String;

    fn try_from(n: i64) -> Result<Self, String> {
        let kib = u32::try_from(n).map_err(|_| format!("{n} KiB: {RINGBUF_RULE}"))?;
        check_ringbuf_kib(kib).map(RingbufKib)
    }
}

/// `address:port`, numeric (a name would need a resolver at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ListenAddress(pub SocketAddr);

impl TryFrom<String> for ListenAddress {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        parse_listen_address(&text).map(ListenAddress)
    }
}

/// Shared with `--web.listen-address`.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not an address:port (numeric, e.g. 127.0.0.1:19463, 0.0.0.0:19463 or [::1]:19463)"
        )
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PathBuf")]
pub struct NonEmptyPath(pub PathBuf);

impl TryFrom<PathBuf> for NonEmptyPath {
    type Error = String;

    fn try_from(path: PathBuf) -> Result<Self, String> {
        if path.as_os_str().is_empty() {
            return Err("an empty path (leave the key out instead)".to_owned());
        }
        Ok(NonEmptyPath(path))
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `file:line: key: what is wrong`.
    #[error("{path}:{line}: {key}{message}")]
    Invalid {
        path: String,
        /// 1-based; 0 when the parser could not say.
        line: usize,
        /// The dotted key, with ": " after it; empty at the top level.
        key: String,
        message: String,
    },
}

impl ConfigFile {
    /// Reads `path`. `Ok(None)` when `path` does not exist and `optional`.
    pub fn load(path: &Path, optional: bool) -> Result<Option<ConfigFile>, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => ConfigFile::parse(&text, path).map(Some),
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Parses the text of `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        let invalid = |key: String, err: &toml::de::Error| ConfigError::Invalid {
            path: path.display().to_string(),
            line: err.span().map_or(0, |span| line_of(text, span.start)),
            key: if key.is_empty() || key == "." {
                String::new()
            } else {
                format!("{key}: ")
            },
            message: err.message().trim().to_owned(),
        };
        let de = toml::de::Deserializer::parse(text).map_err(|e| invalid(String::new(), &e))?;
        serde_path_to_error::deserialize(de).map_err(|e| invalid(e.path().to_string(), e.inner()))
    }
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at)
        .map_or(0, |before| before.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(text, Path::new("pfnwatch.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_shipped_default_parses_and_matches_the_defaults() {
        let text = include_str!("../../../../deploy/pfnwatch.toml");
        let file = parse(text).unwrap();
        // Every key there is commented out: the file documents the defaults.
        assert_eq!(file, ConfigFile::default());
        // And uncommented, each documented value parses.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(setting) if setting.contains(" = ") => setting,
                Some(_) => "",
                None => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file = parse(&uncommented).unwrap();
        assert_eq!(
            file.web.listen_address.map(|a| a.0.to_string()).as_deref(),
            Some("127.0.0.1:19463")
        );
        assert_eq!(file.interval, Some(Seconds(60)));
        assert_eq!(file.kernel.ringbuf_kib, Some(RingbufKib(256)));
        assert_eq!(file.kernel.lookups, Some(LookupMode::OnDemand));
        assert_eq!(file.kernel.lookups_grace, Some(Seconds(30)));
    }

    #[test]
    fn lookups_read_by_name_and_refuse_others() {
        let file = parse("[kernel]\nlookups = \"always\"\nlookups_grace = 5").unwrap();
        assert_eq!(file.kernel.lookups, Some(LookupMode::Always));
        assert_eq!(file.kernel.lookups_grace, Some(Seconds(5)));
        let err = parse("[kernel]\nlookups = \"sometimes\"").unwrap_err();
        assert!(
            err.contains("pfnwatch.toml:2") && err.contains("sometimes"),
            "{err}"
        );
        assert!(parse("[kernel]\nlookups_grace = 0").is_err());
    }

    #[test]
    fn reads_every_key() {
        let file = parse(
            r#"
interval = 30
alerts_file = "/var/lib/pfnwatch/alerts.jsonl"
dedup_window = 5
log_severity = "warning"

[web]
listen_address = "[::1]:19463"
config_file = "/etc/pfnwatch/web-config.yml"

[kernel]
btf = "/boot/vmlinux.btf"
ringbuf_kib = 1024

[rules]
disable = ["R4", "pgoff_rule_broken"]
severity = { R1 = "critical", fault_insert_into_cow = "info" }
"#,
        )
        .unwrap();
        assert_eq!(file.interval, Some(Seconds(30)));
        assert_eq!(file.log_severity, Some(Severity::Warning));
        assert_eq!(
            file.web.listen_address.unwrap().0,
            "[::1]:19463".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            file.web.config_file.unwrap().0,
            Path::new("/etc/pfnwatch/web-config.yml")
        );
        assert_eq!(file.kernel.ringbuf_kib, Some(RingbufKib(1024)));
        assert_eq!(file.rules.disable, [RuleId::R4, RuleId::R8]);
        assert_eq!(file.rules.severity[&RuleId::R1], Severity::Critical);
        assert_eq!(file.rules.severity[&RuleId::R2], Severity::Info);
        assert_eq!(parse("").unwrap(), ConfigFile::default());
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let err = parse("interval = 5\nintervall = 6\n").unwrap_err();
        assert!(err.starts_with("pfnwatch.toml:2: intervall: "), "{err}");
        assert!(err.contains("unknown field `intervall`"), "{err}");
        let err = parse("[web]\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.starts_with("pfnwatch.toml:2: web.listen: "), "{err}");
        assert!(err.contains("`listen`"), "{err}");
        let err = parse("[metrics]\n").unwrap_err();
        assert!(err.starts_with("pfnwatch.toml:1: metrics: "), "{err}");
        assert!(err.contains("unknown field `metrics`"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let cases = [
            (
                "\n\ninterval = 0",
                "pfnwatch.toml:3: interval: 0 is out of range",
            ),
            (
                "dedup_window = 100000",
                "pfnwatch.toml:1: dedup_window: 100000 is out of range",
            ),
            (
                "interval = \"60s\"",
                "pfnwatch.toml:1: interval: invalid type: string",
            ),
            (
                "log_severity = \"loud\"",
                "pfnwatch.toml:1: log_severity: unknown variant `loud`",
            ),
            (
                "[web]\nlisten_address = \"localhost:80\"",
                "pfnwatch.toml:2: web.listen_address: \"localhost:80\" is not an address:port",
            ),
            (
                "[kernel]\nringbuf_kib = 100",
                "pfnwatch.toml:2: kernel.ringbuf_kib: 100 KiB: the ring buffer must be a power of two",
            ),
            (
                "[kernel]\nringbuf_kib = -4",
                "pfnwatch.toml:2: kernel.ringbuf_kib: -4 KiB",
            ),
            (
                "[web]\nconfig_file = \"\"",
                "pfnwatch.toml:2: web.config_file: an empty path",
            ),
            (
                "[kernel]\nbtf = \"\"",
                "pfnwatch.toml:2: kernel.btf: an empty path",
            ),
            (
                "[rules]\ndisable = [\"R1\", \"R42\"]",
                "pfnwatch.toml:2: rules.disable[1]: unknown rule \"R42\"",
            ),
            (
                "[rules]\nseverity = { R1 = \"meh\" }",
                "pfnwatch.toml:2: rules.severity.R1: unknown variant `meh`",
            ),
            (
                "[rules]\n\nseverity = { R99 = \"info\" }",
                "pfnwatch.toml:3: rules.severity.R99: unknown rule \"R99\"",
            ),
            ("interval = 5\ninterval = 6", "pfnwatch.toml:2: "),
            ("interval = ", "pfnwatch.toml:1: "),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with(want), "{text:?}:\n got {err}\nwant {want}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error_unless_optional() {
        let path = Path::new("/nonexistent/pfnwatch.toml");
        assert!(ConfigFile::load(path, true).unwrap().is_none());
        let err = anyhow::Error::from(ConfigFile::load(path, false).unwrap_err());
        let err = format!("{err:#}");
        assert_eq!(
            err,
            "reading /nonexistent/pfnwatch.toml: No such file or directory (os error 2)"
        );
    }
}
