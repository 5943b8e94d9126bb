//! What `pfnwatch run` runs with: defaults, then the configuration file,
//! then the command line's flags. On SIGHUP the file is read again and the
//! same flags applied on top; [`Settings::reload`] says what takes effect
//! live and what needs a restart.

use super::config::{self, ConfigError, ConfigFile};
use crate::cli::RunArgs;
use crate::kernel::lookups::{self, LookupMode};
use crate::rules::{RuleConfig, Severity};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// `/metrics` on loopback: not in the Prometheus wiki's default port
/// allocations (README, "Metrics" says why this one).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 19463));

impl RunArgs {
    /// Reads the configuration file and applies the flags on top.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let (path, optional) = self.config_path();
        let file = ConfigFile::load(path, optional)?.unwrap_or_default();
        Ok(Settings::resolve(&file, self))
    }
}

/// The daemon's effective configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub listen_address: SocketAddr,
    /// TLS and basic auth for `/metrics`; read again on every reload.
    pub web_config_file: Option<PathBuf>,
    pub interval: Duration,
    pub alerts_file: Option<PathBuf>,
    pub dedup_window: Duration,
    pub log_severity: Severity,
    pub btf: Option<PathBuf>,
    pub ringbuf_kib: u32,
    pub lookups: LookupMode,
    pub lookups_grace: Duration,
    pub rules: RuleConfig,
}

impl Settings {
    /// Defaults, overridden by the file, overridden by the flags. Rules
    /// add up: a rule is off when the file or a flag turns it off, and a
    /// flag's severity wins over the file's.
    pub fn resolve(file: &ConfigFile, flags: &RunArgs) -> Settings {
        let secs = |flag: Option<u64>, file: Option<config::Seconds>, default: u64| {
            Duration::from_secs(flag.or(file.map(|s| s.0)).unwrap_or(default))
        };
        let from_file = RuleConfig::default().with(
            file.rules.disable.iter().copied(),
            file.rules.severity.iter().map(|(r, s)| (*r, *s)),
        );
        let rules = flags.rules.apply(from_file);
        Settings {
            listen_address: flags
                .listen_address
                .or(file.web.listen_address.map(|a| a.0))
                .unwrap_or(DEFAULT_LISTEN),
            web_config_file: flags.web_config_file.clone().or(file
                .web
                .config_file
                .as_ref()
                .map(|p| p.0.clone())),
            interval: secs(flags.interval, file.interval, 60),
            alerts_file: flags
                .alerts_file
                .clone()
                .or(file.alerts_file.as_ref().map(|p| p.0.clone())),
            dedup_window: secs(flags.dedup_window, file.dedup_window, 10),
            log_severity: flags
                .log_severity
                .or(file.log_severity)
                .unwrap_or(Severity::Info),
            btf: flags
                .btf
                .clone()
                .or(file.kernel.btf.as_ref().map(|p| p.0.clone())),
            ringbuf_kib: flags
                .ringbuf_kib
                .or(file.kernel.ringbuf_kib.map(|k| k.0))
                .unwrap_or(256),
            lookups: flags.lookups.or(file.kernel.lookups).unwrap_or_default(),
            lookups_grace: secs(
                flags.lookups_grace,
                file.kernel.lookups_grace,
                lookups::DEFAULT_GRACE_SECS,
            ),
            rules,
        }
    }

    /// What a reload to `new` makes of the running settings: the settings
    /// to run with from now on, and what in `new` waits for a restart.
    /// `loaded` is the rule configuration the kernel programs were loaded
    /// with: it decided which calls send records, so a rule that was off
    /// then stays off (its records never reach user space) until a restart.
    pub fn reload(&self, new: &Settings, loaded: &RuleConfig) -> (Settings, Vec<String>) {
        let mut next = new.clone();
        let mut restart = Vec::new();
        if new.btf != self.btf {
            restart.push(format!(
                "kernel.btf {} -> {}",
                show_path(&self.btf),
                show_path(&new.btf)
            ));
            next.btf = self.btf.clone();
        }
        if new.ringbuf_kib != self.ringbuf_kib {
            restart.push(format!(
                "kernel.ringbuf_kib {} -> {}",
                self.ringbuf_kib, new.ringbuf_kib
            ));
            next.ringbuf_kib = self.ringbuf_kib;
        }
        if (new.lookups, new.lookups_grace) != (self.lookups, self.lookups_grace) {
            restart.push(format!(
                "kernel.lookups {} (grace {}s) -> {} (grace {}s)",
                self.lookups,
                self.lookups_grace.as_secs(),
                new.lookups,
                new.lookups_grace.as_secs()
            ));
            next.lookups = self.lookups;
            next.lookups_grace = self.lookups_grace;
        }
        for id in loaded.disabled.difference(&new.rules.disabled) {
            restart.push(format!(
                "rule {id} on (it was off when the programs were loaded, so the kernel sends no records for it)"
            ));
            next.rules.disabled.insert(*id);
        }
        (next, restart)
    }

    /// One line for the log and `--check-config`.
    pub fn summary(&self) -> String {
        let disabled: Vec<&str> = self.rules.disabled.iter().map(|r| r.as_str()).collect();
        let severity: Vec<String> = self
            .rules
            .severity
            .iter()
            .map(|(id, s)| format!("{id}={s}"))
            .collect();
        format!(
            "listen {} web_config {} interval {}s alerts_file {} dedup_window {}s log_severity {} btf {} ringbuf {} KiB lookups {} (grace {}s) rules off [{}] severity [{}]",
            self.listen_address,
            show_path(&self.web_config_file),
            self.interval.as_secs(),
            show_path(&self.alerts_file),
            self.dedup_window.as_secs(),
            self.log_severity,
            show_path(&self.btf),
            self.ringbuf_kib,
            self.lookups,
            self.lookups_grace.as_secs(),
            disabled.join(" "),
            severity.join(" ")
        )
    }
}

fn show_path(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map_or("(none)".to_owned(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::rules::RuleId;
    use clap::Parser;
    use std::path::Path;

    fn flags(args: &[&str]) -> RunArgs {
        let argv = [&["pfnwatch", "run"], args].concat();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(run) => run,
            other => panic!("{other:?}"),
        }
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn defaults_then_file_then_flags() {
        let none = Settings::resolve(&ConfigFile::default(), &flags(&[]));
        assert_eq!(none.listen_address, DEFAULT_LISTEN);
        assert_eq!(none.interval, Duration::from_secs(60));
        assert_eq!(none.dedup_window, Duration::from_secs(10));
        assert_eq!(none.ringbuf_kib, 256);
        assert_eq!(none.log_severity, Severity::Info);
        assert!(none.alerts_file.is_none() && none.btf.is_none());
        assert!(none.web_config_file.is_none(), "plain HTTP by default");

        let f = file(
            "interval = 30\nlog_severity = \"warning\"\n[web]\nlisten_address = \"0.0.0.0:9999\"\nconfig_file = \"/etc/w.yml\"\n\
             [kernel]\nringbuf_kib = 64\n[rules]\ndisable = [\"R4\"]\nseverity = { R1 = \"warning\" }",
        );
        let from_file = Settings::resolve(&f, &flags(&[]));
        assert_eq!(from_file.interval, Duration::from_secs(30));
        assert_eq!(from_file.listen_address.to_string(), "0.0.0.0:9999");
        assert_eq!(
            from_file.web_config_file.as_deref(),
            Some(Path::new("/etc/w.yml"))
        );
        assert_eq!(from_file.ringbuf_kib, 64);
        assert!(from_file.rules.disabled.contains(&RuleId::R4));
        assert_eq!(from_file.rules.severity[&RuleId::R1], Severity::Warning);

        let both = Settings::resolve(
            &f,
            &flags(&[
                "--interval",
                "5",
                "--web.listen-address",
                "127.0.0.1:1",
                "--web.config.file",
                "/tmp/w.yml",
                "--ringbuf-kib",
                "16",
                "--disable-rule",
                "R2",
                "--rule-severity",
                "R1=critical",
            ]),
        );
        assert_eq!(both.interval, Duration::from_secs(5));
        assert_eq!(both.listen_address.to_string(), "127.0.0.1:1");
        assert_eq!(
            both.web_config_file.as_deref(),
            Some(Path::new("/tmp/w.yml"))
        );
        assert_eq!(both.ringbuf_kib, 16);
        assert_eq!(both.log_severity, Severity::Warning, "from the file");
        let off: Vec<RuleId> = both.rules.disabled.iter().copied().collect();
        assert_eq!(off, [RuleId::R2, RuleId::R4]);
        assert_eq!(both.rules.severity[&RuleId::R1], Severity::Critical);
    }

    #[test]
    fn bad_flags_are_rejected_by_name() {
        for (args, want) in [
            (&["--web.listen-address", "localhost:1"][..], "localhost:1"),
            (&["--ringbuf-kib", "100"], "power of two"),
            (&["--interval", "0"], "--interval"),
            (&["--log-severity", "loud"], "loud"),
        ] {
            let argv = [&["pfnwatch", "run"], args].concat();
            let err = Cli::try_parse_from(argv).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn reload_keeps_what_needs_a_restart_and_says_so() {
        let running = Settings::resolve(&file("[rules]\ndisable = [\"R4\"]"), &flags(&[]));
        let loaded = running.rules.clone();
        let new = Settings::resolve(
            &file(
                "interval = 5\nlog_severity = \"critical\"\n[web]\nlisten_address = \"127.0.0.1:2\"\nconfig_file = \"/etc/w.yml\"\n\
                 [kernel]\nringbuf_kib = 64\nbtf = \"/x\"\n[rules]\ndisable = [\"R1\"]\nseverity = { R2 = \"info\" }",
            ),
            &flags(&[]),
        );
        let (next, restart) = running.reload(&new, &loaded);
        // Live: interval, address, web config, log severity, rule off, severities.
        assert_eq!(next.interval, Duration::from_secs(5));
        assert_eq!(next.listen_address.to_string(), "127.0.0.1:2");
        assert_eq!(
            next.web_config_file.as_deref(),
            Some(Path::new("/etc/w.yml"))
        );
        assert_eq!(next.log_severity, Severity::Critical);
        assert_eq!(next.rules.severity[&RuleId::R2], Severity::Info);
        assert!(next.rules.disabled.contains(&RuleId::R1));
        // Not live: the kernel side, and R4, off when the programs loaded.
        assert_eq!(next.ringbuf_kib, 256);
        assert_eq!(next.btf, None);
        assert!(next.rules.disabled.contains(&RuleId::R4));
        assert_eq!(restart.len(), 3, "{restart:?}");
        assert!(
            restart[0].starts_with("kernel.btf (none) -> /x"),
            "{restart:?}"
        );
        assert!(
            restart[1].starts_with("kernel.ringbuf_kib 256 -> 64"),
            "{restart:?}"
        );
        assert!(restart[2].starts_with("rule R4 on"), "{restart:?}");
        // The same settings again: nothing to restart for.
        assert!(running.reload(&running, &loaded).1.is_empty());
    }

    #[test]
    fn lookups_come_from_the_flag_the_file_or_the_default_and_need_a_restart() {
        let default = Settings::resolve(&file(""), &flags(&[]));
        assert_eq!(default.lookups, LookupMode::OnDemand);
        assert_eq!(
            default.lookups_grace,
            Duration::from_secs(lookups::DEFAULT_GRACE_SECS)
        );
        let from_file = file("[kernel]\nlookups = \"always\"\nlookups_grace = 7");
        let both = Settings::resolve(&from_file, &flags(&["--lookups", "on-demand"]));
        assert_eq!(both.lookups, LookupMode::OnDemand);
        assert_eq!(both.lookups_grace, Duration::from_secs(7));
        let new = Settings::resolve(&from_file, &flags(&[]));
        let (next, restart) = default.reload(&new, &default.rules);
        assert_eq!(next.lookups, LookupMode::OnDemand);
        assert_eq!(restart.len(), 1, "{restart:?}");
        assert!(
            restart[0].starts_with("kernel.lookups on-demand (grace 30s) -> always (grace 7s)"),
            "{restart:?}"
        );
    }

    #[test]
    fn flags_keep_winning_after_a_reload() {
        let args = flags(&["--interval", "7"]);
        let first = Settings::resolve(&file("interval = 30"), &args);
        let second = Settings::resolve(&file("interval = 40\ndedup_window = 3"), &args);
        assert_eq!(first.interval, Duration::from_secs(7));
        assert_eq!(second.interval, Duration::from_secs(7));
        assert_eq!(second.dedup_window, Duration::from_secs(3));
    }
}
