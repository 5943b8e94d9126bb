//! Command-line interface.

use crate::output::Format;
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
    /// Run the daemon: count every call, log rule hits and per-hook counts.
    Run {
        #[command(flatten)]
        kernel: KernelArgs,
        /// Seconds between count reports.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
        interval: u64,
    },
    /// Print records live, one line each; SIGUSR1 prints the counters.
    Trace {
        #[command(flatten)]
        kernel: KernelArgs,
        /// Record every classified call, not only rule hits (busy hosts: a lot).
        #[arg(long)]
        all: bool,
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
    }
}
