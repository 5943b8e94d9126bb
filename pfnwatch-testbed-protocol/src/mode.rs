//! What the guest does this boot: the host puts `pfnwatch.mode=<mode>` on
//! the kernel command line, the guest's init reads it from /proc/cmdline
//! (dotted parameters reach neither init's argv nor its environment).

use std::fmt;

/// The command line parameter naming the mode.
pub const PARAM: &str = "pfnwatch.mode";
/// Rounds of `cargo xtask bench` (bench mode only).
pub const BENCH_RUNS: &str = "pfnwatch.bench_runs";
/// Seconds of the soak check (test mode; `vm-test --soak-secs`).
pub const SOAK_SECS: &str = "pfnwatch.soak_secs";
/// The soak's length when the host does not say.
pub const SOAK_SECS_DEFAULT: u64 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `cargo xtask vm-test`: every check, then a verdict.
    Test,
    /// `cargo xtask demo`: pfnwatch and the scenarios on the console.
    Demo,
    /// `cargo xtask bench`: cost readings as bench lines.
    Bench,
    /// `cargo xtask vm-shell`: a shell on the console.
    Shell,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Test, Mode::Demo, Mode::Bench, Mode::Shell];

    pub const fn name(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Demo => "demo",
            Mode::Bench => "bench",
            Mode::Shell => "shell",
        }
    }

    pub fn parse(text: &str) -> Result<Mode, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == text)
            .ok_or_else(|| format!("unknown {PARAM}={text:?} (test, demo, bench or shell)"))
    }

    /// `pfnwatch.mode=<mode>`, for the kernel command line.
    pub fn param(self) -> String {
        format!("{PARAM}={}", self.name())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value of `key=value` on a kernel command line.
pub fn cmdline_param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_the_command_line() {
        for mode in Mode::ALL {
            let cmdline = format!("console=ttyS0 quiet {} {BENCH_RUNS}=3", mode.param());
            let value = cmdline_param(&cmdline, PARAM).unwrap();
            assert_eq!(Mode::parse(value), Ok(mode));
            assert_eq!(cmdline_param(&cmdline, BENCH_RUNS), Some("3"));
        }
        assert!(Mode::parse("tset").unwrap_err().contains("\"tset\""));
        assert_eq!(cmdline_param("pfnwatch.modex=1", PARAM), None);
    }
}
