//! Command-line interface.

use crate::output::Format;
use crate::rules::{Context, RuleConfig, RuleSet, Selection, Severity};
use crate::session::SessionOptions;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    /// Run the daemon: count every call, alert on rule hits, log per-hook counts.
    Run {
        #[command(flatten)]
        kernel: KernelArgs,
        #[command(flatten)]
        rules: RuleArgs,
        /// Seconds between count reports.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
        interval: u64,
        /// Also write every alert as one JSON object per line to FILE.
        #[arg(long, value_name = "FILE")]
        alerts_file: Option<PathBuf>,
        /// Seconds in which repeats of an alert (same rule, process, device,
        /// call path) collapse into one follow-up with a count.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86400))]
        dedup_window: u64,
        /// Alerts below this severity are not logged (still counted and written).
        #[arg(long, value_enum, default_value_t = Severity::Info)]
        log_severity: Severity,
    },
    /// Print records live, one line each; SIGUSR1 prints the counters.
    Trace {
        #[command(flatten)]
        kernel: KernelArgs,
        /// Record every classified call, not only rule hits (busy hosts: a lot).
        #[arg(long)]
        all: bool,
        /// Add the kernel call path to every record.
        #[arg(long)]
        stack: bool,
        #[command(flatten)]
        rules: RuleArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub struct KernelArgs {
    /// Kernel BTF to use instead of /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "PATH")]
    pub btf: Option<PathBuf>,
    /// Ring buffer size in KiB (a power of two, at least 4).
    #[arg(long, default_value_t = 256, value_parser = parse_ringbuf_kib)]
    pub ringbuf_kib: u32,
}

impl KernelArgs {
    pub fn ringbuf_bytes(&self) -> u32 {
        self.ringbuf_kib * 1024
    }

    pub fn session(
        self,
        selection: Selection,
        rules: RuleSet,
        capture_stack: bool,
    ) -> SessionOptions {
        SessionOptions {
            ringbuf_bytes: self.ringbuf_bytes(),
            btf: self.btf,
            selection,
            rules,
            capture_stack,
        }
    }
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Turn a rule off (id or name, e.g. R4 or mixedmap_in_use); repeatable.
    #[arg(long = "disable-rule", value_name = "RULE", value_parser = parse_rule_id)]
    pub disable: Vec<String>,
    /// Change a rule's severity, e.g. R1=warning; repeatable.
    #[arg(long = "rule-severity", value_name = "RULE=SEVERITY", value_parser = parse_rule_severity)]
    pub severity: Vec<String>,
}

impl RuleArgs {
    /// The rule table as configured, for this kernel.
    pub fn rule_set(&self) -> anyhow::Result<RuleSet> {
        let mut config = RuleConfig::default();
        for id in &self.disable {
            config.disable(id).map_err(anyhow::Error::msg)?;
        }
        for spec in &self.severity {
            config.set_severity(spec).map_err(anyhow::Error::msg)?;
        }
        let special = crate::kernel::pte_special(&crate::kernel::release());
        Ok(RuleSet::new(
            config,
            Context {
                arch_pte_special: special.present,
            },
        ))
    }
}

fn parse_rule_id(text: &str) -> Result<String, String> {
    RuleConfig::default()
        .disable(text)
        .map(|()| text.to_owned())
}

fn parse_rule_severity(text: &str) -> Result<String, String> {
    RuleConfig::default()
        .set_severity(text)
        .map(|()| text.to_owned())
}

fn parse_ringbuf_kib(text: &str) -> Result<u32, String> {
    let kib: u32 = text
        .parse()
        .map_err(|e| format!("{text:?} is not a number of KiB: {e}"))?;
    if kib < 4 || !kib.is_power_of_two() || kib > 1024 * 1024 {
        return Err(format!(
            "{kib} KiB: the ring buffer must be a power of two between 4 KiB and 1 GiB"
        ));
    }
    Ok(kib)
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
