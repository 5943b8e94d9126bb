//! Command-line interface.

use crate::commands::run::config;
use crate::kernel::facts;
use crate::kernel::lookups::{self, LookupMode};
use crate::kernel::session::{SessionOptions, check_ringbuf_kib};
use crate::pipeline::filter::{DeviceMatch, Filter};
use crate::rules::{
    Context, RuleConfig, RuleId, RuleSet, Selection, Severity, parse_rule_severity,
};
use crate::views::line::Format;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use pfnwatch_common::{Hook, abi};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "pfnwatch",
    version,
    about = "Watch how the kernel maps raw page frames (VM_PFNMAP, VM_MIXEDMAP) and COW inside them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this kernel supports; exit 0 when every hook it has attaches.
    Check {
        #[command(flatten)]
        kernel: KernelArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run the daemon: count every call, alert on rule hits, serve /metrics,
    /// log per-hook counts.
    ///
    /// Reads /etc/pfnwatch/pfnwatch.toml (or --config); flags win over it.
    /// SIGHUP reloads it; SIGTERM and SIGINT stop cleanly.
    Run(RunArgs),
    /// Print records live, one line each; SIGUSR1 prints the counters,
    /// Ctrl-C a summary.
    ///
    /// By default the records are the calls that may break a rule and
    /// every pfn mapping created; --all adds every classified call. Only
    /// the programs the --hook filter needs are attached, and the other
    /// filters narrow what the kernel sends where it can.
    Trace(LiveArgs),
    /// Trace, and save the records in FILE for `pfnwatch replay` anywhere.
    ///
    /// The capture holds what replay needs from this host: the kernel
    /// release, pte_special, the clock, and per record the symbolised call
    /// path (always captured), cgroup and driver (docs/capture-format.md).
    Record {
        /// The capture file to write (replaced if it exists).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        live: LiveArgs,
    },
    /// Show a capture as trace showed it live: same rules, filters, alerts
    /// and output, on any machine, without a kernel.
    Replay {
        /// The capture file `pfnwatch record` wrote (or a gzip of it).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Show the kernel call path of every record.
        #[arg(long)]
        stack: bool,
        #[command(flatten)]
        rules: RuleArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Stop after N records.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        alerts: AlertArgs,
    },
    /// Write a capture of made-up records, timing the record side (for
    /// `cargo xtask bench`; not for users, so hidden).
    #[command(hide = true)]
    SynthCapture {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Time the capture writer alone, without rules and filters.
        #[arg(long)]
        writer_only: bool,
    },
    /// Print a shell completion script, e.g. `pfnwatch completions bash >
    /// /etc/bash_completion.d/pfnwatch`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (pfnwatch.1, or a subcommand's), or write them all.
    Man {
        /// A subcommand whose page to print, e.g. trace.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
        /// Write pfnwatch.1 and every subcommand's page into DIR.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

/// What `trace` and `record` share: the live view's options.
#[derive(Debug, Args)]
pub struct LiveArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Record every classified call, not only rule hits (busy hosts: a lot).
    #[arg(long)]
    pub all: bool,
    /// Show the kernel call path on every line (record always saves it).
    #[arg(long)]
    pub stack: bool,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub stop: StopArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub alerts: AlertArgs,
}

#[derive(Debug, Args)]
pub struct KernelArgs {
    /// Kernel BTF to use instead of /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "PATH")]
    pub btf: Option<PathBuf>,
    /// Ring buffer size in KiB (a power of two, at least 4) [default: 256;
    /// 8192 with --all or --hook, which send a record per call].
    #[arg(long, value_parser = parse_ringbuf_kib)]
    pub ringbuf_kib: Option<u32>,
    /// When the page-table lookups (vm_normal_page, folio_walk_start) are
    /// attached: while a device mapping exists, or always (every lookup in
    /// every pfn mapping, the vDSO's included).
    #[arg(long, value_enum, default_value_t = LookupMode::OnDemand)]
    pub lookups: LookupMode,
    /// Seconds the lookups stay attached once no device mapping is left.
    #[arg(long, default_value_t = lookups::DEFAULT_GRACE_SECS, value_parser = clap::value_parser!(u64).range(1..=config::MAX_SECONDS))]
    pub lookups_grace: u64,
}

/// `trace` and `record`'s ring buffer when every call of the hooks is
/// wanted: a fork or munmap of a device mapping sends a record per pte, and
/// the burst has to wait in the ring while the reader formats (README,
/// Cost). Rule hits alone are rare: the daemon's size does.
pub const ALL_RINGBUF_KIB: u32 = 8192;

impl KernelArgs {
    pub fn ringbuf_bytes(&self, selection: Selection) -> u32 {
        let default = match selection {
            Selection::All => ALL_RINGBUF_KIB,
            Selection::Rules => abi::RINGBUF_BYTES / 1024,
        };
        self.ringbuf_kib.unwrap_or(default) * 1024
    }

    pub fn session(
        self,
        selection: Selection,
        rules: RuleSet,
        capture_stack: bool,
    ) -> SessionOptions {
        SessionOptions {
            ringbuf_bytes: self.ringbuf_bytes(selection),
            btf: self.btf,
            selection,
            rules,
            capture_stack,
            hooks: None,
            narrow: None,
            only_pids: Vec::new(),
            lookups: self.lookups,
            lookups_grace: Duration::from_secs(self.lookups_grace),
            addresses: None,
        }
    }
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Turn a rule off (id or name, e.g. R4 or mixedmap_in_use); repeatable.
    #[arg(long = "disable-rule", value_name = "RULE", value_parser = RuleId::parse)]
    pub disable: Vec<RuleId>,
    /// Change a rule's severity, e.g. R1=warning; repeatable.
    #[arg(long = "rule-severity", value_name = "RULE=SEVERITY", value_parser = parse_rule_severity)]
    pub severity: Vec<(RuleId, Severity)>,
}

impl RuleArgs {
    /// The operator's changes to the rule table, on top of `base`.
    pub fn apply(&self, base: RuleConfig) -> RuleConfig {
        base.with(self.disable.iter().copied(), self.severity.iter().copied())
    }

    /// The rule table as configured, for this kernel.
    pub fn rule_set(&self) -> RuleSet {
        let special = facts::pte_special(&facts::release());
        RuleSet::new(
            self.apply(RuleConfig::default()),
            Context {
                arch_pte_special: special.present,
            },
        )
    }
}

/// What trace, record and replay show. Different filters must all match;
/// a filter given several times matches any of its values.
#[derive(Debug, Args)]
#[command(next_help_heading = "Filters")]
pub struct FilterArgs {
    /// Only this process (or thread) id; repeatable (live, up to 8 are
    /// filtered in the kernel).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Only tasks named exactly NAME (the kernel keeps 15 bytes); repeatable.
    #[arg(long, value_name = "NAME")]
    pub comm: Vec<String>,
    /// Only these hooks, every call of theirs (not only rule hits); only
    /// their programs are attached. Repeatable or comma-separated.
    #[arg(long, value_name = "HOOK", value_delimiter = ',', value_parser = hook_parser())]
    pub hook: Vec<Hook>,
    /// Only records matching this rule (id or name, e.g. R8); repeatable.
    #[arg(long, value_name = "RULE", value_parser = RuleId::parse)]
    pub rule: Vec<RuleId>,
    /// Only records matching a rule at least this severe.
    #[arg(long = "severity", value_enum, value_name = "SEVERITY")]
    pub min_severity: Option<Severity>,
    /// Only mappings of this device: major:minor (1:1) or a file (/dev/mem,
    /// resource0, 0000:00:02.0/resource0); repeatable.
    #[arg(long, value_name = "DEVICE", value_parser = DeviceMatch::parse)]
    pub device: Vec<DeviceMatch>,
    /// Only calls on COW mappings (MAP_PRIVATE and writable).
    #[arg(long)]
    pub cow_only: bool,
}

impl FilterArgs {
    pub fn filter(&self, config: &RuleConfig) -> anyhow::Result<Filter> {
        if let Some(off) = self.rule.iter().find(|id| config.disabled.contains(*id)) {
            anyhow::bail!("--rule {off} asks for a rule that --disable-rule turns off");
        }
        Ok(Filter {
            pids: self.pid.iter().copied().collect(),
            comms: self.comm.iter().cloned().collect(),
            hooks: (!self.hook.is_empty()).then(|| self.hook.iter().copied().collect()),
            rules: self.rule.iter().copied().collect(),
            min_severity: self.min_severity,
            devices: self.device.clone(),
            cow_only: self.cow_only,
        })
    }
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Stop after this long, e.g. 30s or 5m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after N records.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// One JSON object per line (schema: docs/trace-json.md); the same as
    /// --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Colour severities: auto (when stdout is a terminal), always, never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl OutputArgs {
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }

    pub fn color(&self) -> anstream::ColorChoice {
        match self.color {
            ColorWhen::Auto => anstream::ColorChoice::Auto,
            ColorWhen::Always => anstream::ColorChoice::Always,
            ColorWhen::Never => anstream::ColorChoice::Never,
        }
    }
}

#[derive(Debug, Args)]
pub struct AlertArgs {
    /// Seconds in which repeats of an alert (same rule, process, device,
    /// call path) collapse into one follow-up with a count.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub dedup_window: u64,
    /// Also write every alert as one JSON object per line to FILE.
    #[arg(long, value_name = "FILE")]
    pub alerts_file: Option<PathBuf>,
}

fn hook_parser() -> impl TypedValueParser<Value = Hook> {
    PossibleValuesParser::new(Hook::ALL.map(Hook::function))
        .try_map(|name| Hook::from_function(&name).ok_or_else(|| format!("unknown hook {name:?}")))
}

pub(crate) fn parse_ringbuf_kib(text: &str) -> Result<u32, String> {
    let kib: u32 = text
        .parse()
        .map_err(|e| format!("{text:?} is not a number of KiB: {e}"))?;
    check_ringbuf_kib(kib)
}

/// The `run` subcommand's flags. Each one that is given wins over the file.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file [default: /etc/pfnwatch/pfnwatch.toml, where a
    /// missing file means all defaults].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration file and flags, print the result, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Serve /metrics here [default: 127.0.0.1:19463].
    #[arg(long = "web.listen-address", value_name = "ADDR:PORT", value_parser = config::parse_listen_address)]
    pub listen_address: Option<SocketAddr>,
    /// TLS and basic auth for /metrics: a web configuration file in the
    /// Prometheus exporter toolkit's format (tls_server_config,
    /// basic_auth_users, http_server_config.headers) [default: none, plain
    /// HTTP].
    #[arg(
        long = "web.config.file",
        visible_alias = "web-config-file",
        value_name = "FILE"
    )]
    pub web_config_file: Option<PathBuf>,
    /// Seconds between count reports in the log [default: 60].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=config::MAX_SECONDS))]
    pub interval: Option<u64>,
    /// Also write every alert as one JSON object per line to FILE.
    #[arg(long, value_name = "FILE")]
    pub alerts_file: Option<PathBuf>,
    /// Seconds in which repeats of an alert (same rule, process, device,
    /// call path) collapse into one follow-up with a count [default: 10].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=config::MAX_SECONDS))]
    pub dedup_window: Option<u64>,
    /// Alerts below this severity are not logged (still counted and
    /// written) [default: info].
    #[arg(long, value_enum)]
    pub log_severity: Option<Severity>,
    /// Kernel BTF to use instead of /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "PATH")]
    pub btf: Option<PathBuf>,
    /// Ring buffer size in KiB, a power of two from 4 [default: 256].
    #[arg(long, value_parser = parse_ringbuf_kib)]
    pub ringbuf_kib: Option<u32>,
    /// When the page-table lookups are attached [default: on-demand].
    #[arg(long, value_enum)]
    pub lookups: Option<LookupMode>,
    /// Seconds the lookups stay attached once no device mapping is left
    /// [default: 30].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=config::MAX_SECONDS))]
    pub lookups_grace: Option<u64>,
    #[command(flatten)]
    pub rules: RuleArgs,
}

impl RunArgs {
    /// The file to read, and whether it may be missing (only the default may).
    pub fn config_path(&self) -> (&Path, bool) {
        match &self.config {
            Some(path) => (path, false),
            None => (Path::new(config::DEFAULT_PATH), true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringbuf_size_is_validated() {
        assert_eq!(parse_ringbuf_kib("256"), Ok(256));
        assert!(
            parse_ringbuf_kib("100")
                .unwrap_err()
                .contains("power of two")
        );
        assert!(parse_ringbuf_kib("2").is_err());
        assert!(parse_ringbuf_kib("x").unwrap_err().contains("\"x\""));
    }

    fn trace_args(args: &[&str]) -> Result<Command, clap::Error> {
        let mut all = vec!["pfnwatch", "trace"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.command)
    }

    #[test]
    fn trace_filters_parse_into_a_filter() {
        let Ok(Command::Trace(LiveArgs {
            filter,
            stop,
            output,
            rules,
            ..
        })) = trace_args(&[
            "--pid",
            "7",
            "--pid",
            "8",
            "--comm",
            "qemu",
            "--hook",
            "remap_pfn_range,vm_normal_page",
            "--rule",
            "pgoff_rule_broken",
            "--severity",
            "warning",
            "--device",
            "/dev/mem",
            "--cow-only",
            "--duration",
            "1m30s",
            "--count",
            "5",
            "--json",
        ])
        else {
            panic!("did not parse");
        };
        let f = filter.filter(&rules.apply(RuleConfig::default())).unwrap();
        assert_eq!(f.pids, [7, 8].into());
        assert_eq!(f.comms, ["qemu".to_owned()].into());
        assert_eq!(
            f.hooks,
            Some([Hook::RemapPfnRange, Hook::VmNormalPage].into())
        );
        assert_eq!(f.rules, [RuleId::R8].into());
        assert_eq!(f.min_severity, Some(Severity::Warning));
        assert_eq!(f.devices, [DeviceMatch::parse("/dev/mem").unwrap()]);
        assert!(f.cow_only);
        assert_eq!(stop.duration, Some(Duration::from_secs(90)));
        assert_eq!(stop.count, Some(5));
        assert_eq!(output.format(), Format::Json);
    }

    #[test]
    fn bad_filters_are_rejected_by_name() {
        let err = trace_args(&["--hook", "do_wp_page"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("do_wp_page") && err.contains("vm_normal_page"),
            "{err}"
        );
        let err = trace_args(&["--rule", "R10"]).unwrap_err().to_string();
        assert!(err.contains("unknown rule \"R10\""), "{err}");
        let err = trace_args(&["--device", "/"]).unwrap_err().to_string();
        assert!(err.contains("major:minor"), "{err}");
        let err = trace_args(&["--duration", "soon"]).unwrap_err().to_string();
        assert!(err.contains("--duration"), "{err}");
        let err = trace_args(&["--count", "0"]).unwrap_err().to_string();
        assert!(err.contains("--count"), "{err}");
        let err = trace_args(&["--json", "--format", "text"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--format"), "{err}");
        let Ok(Command::Trace(LiveArgs { filter, rules, .. })) =
            trace_args(&["--rule", "R4", "--disable-rule", "R4"])
        else {
            panic!("did not parse");
        };
        let err = filter
            .filter(&rules.apply(RuleConfig::default()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--rule R4"), "{err}");
    }

    #[test]
    fn record_replay_completions_and_man_parse() {
        let cli = Cli::try_parse_from(["pfnwatch", "record", "/tmp/c", "--all", "--cow-only"]);
        assert!(matches!(
            cli.map(|c| c.command),
            Ok(Command::Record {
                live: LiveArgs { all: true, .. },
                ..
            })
        ));
        assert!(
            Cli::try_parse_from(["pfnwatch", "record"]).is_err(),
            "FILE is required"
        );
        let cli = Cli::try_parse_from([
            "pfnwatch", "replay", "c", "--format", "json", "--count", "2",
        ]);
        let Ok(Command::Replay { output, count, .. }) = cli.map(|c| c.command) else {
            panic!("replay did not parse");
        };
        assert_eq!((output.format(), count), (Format::Json, Some(2)));
        assert!(Cli::try_parse_from(["pfnwatch", "replay", "c", "--duration", "1s"]).is_err());
        assert!(Cli::try_parse_from(["pfnwatch", "completions", "zsh"]).is_ok());
        assert!(Cli::try_parse_from(["pfnwatch", "completions", "cmd"]).is_err());
        assert!(Cli::try_parse_from(["pfnwatch", "man", "trace"]).is_ok());
        assert!(Cli::try_parse_from(["pfnwatch", "man", "trace", "--dir", "d"]).is_err());
    }

    #[test]
    fn bad_arguments_are_rejected_by_name() {
        let err = Cli::try_parse_from(["pfnwatch", "run", "--interval", "0"]).unwrap_err();
        assert!(err.to_string().contains("--interval"), "{err}");
        let err = Cli::try_parse_from(["pfnwatch", "trace", "--format", "xml"]).unwrap_err();
        assert!(err.to_string().contains("xml"), "{err}");
        assert!(Cli::try_parse_from(["pfnwatch", "trace", "--all", "--format", "json"]).is_ok());
        let err = Cli::try_parse_from(["pfnwatch", "run", "--disable-rule", "R42"]).unwrap_err();
        assert!(err.to_string().contains("unknown rule \"R42\""), "{err}");
        let err =
            Cli::try_parse_from(["pfnwatch", "run", "--rule-severity", "R1=meh"]).unwrap_err();
        assert!(err.to_string().contains("\"meh\""), "{err}");
        assert!(
            Cli::try_parse_from(["pfnwatch", "run", "--disable-rule", "mixedmap_in_use"]).is_ok()
        );
    }
}
