//! The kernel's own accounting of each program's runs and run time, kept
//! while `kernel.bpf_stats_enabled` is on (it costs two clock reads per
//! run, so it is off unless an operator turns it on).

use super::loader::Watcher;
use pfnwatch_common::Hook;

/// One kernel program's run count and time.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramRuns {
    pub program: String,
    pub hook: Hook,
    pub runs: u64,
    pub run_seconds: f64,
}

pub const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

pub fn enabled() -> bool {
    std::fs::read_to_string(SYSCTL).is_ok_and(|v| v.trim() == "1")
}

/// Run count and time of every attached program, from its bpf_prog_info.
pub fn runs(watcher: &Watcher) -> Vec<ProgramRuns> {
    watcher
        .attached()
        .filter_map(|p| {
            let hook = p.hook;
            let info = match watcher.ebpf.program(&p.program)?.info() {
                Ok(info) => info,
                Err(e) => {
                    tracing::debug!(program = %p.program, "no program info: {e}");
                    return None;
                }
            };
            Some(ProgramRuns {
                program: p.program.clone(),
                hook,
                runs: info.run_count(),
                run_seconds: info.run_time().as_secs_f64(),
            })
        })
        .collect()
}
