//! The kernel's own accounting of each program, from its bpf_prog_info:
//! - runs and run time, kept while `kernel.bpf_stats_enabled` is on (it
//!   costs two clock reads per run, so it is off unless an operator turns
//!   it on);
//! - misses, always kept: calls the trampoline did not run the program
//!   for because it was running on that CPU already
//!   (kernel/bpf/trampoline.c `__bpf_prog_enter_recur`, a per-CPU counter).
//!   A program runs with migration disabled but, on a preemptible kernel
//!   (7.x's PREEMPT_LAZY, preempt=full, RT), not with preemption disabled:
//!   a task preempted inside it makes every other task's call on that CPU
//!   a miss until it runs again. A missed vma free leaves the inventory
//!   believing in a vma that is gone (`kernel::lookups` heals it); a
//!   missed lookup is a lookup not seen.

use super::loader::{ProgramState, Watcher};
use aya::Ebpf;
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};
use pfnwatch_common::Hook;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// One kernel program's counts.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramStats {
    pub program: String,
    pub hook: Hook,
    /// Zero while `kernel.bpf_stats_enabled` is off.
    pub runs: u64,
    pub run_seconds: f64,
    pub misses: u64,
}

pub const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

pub fn enabled() -> bool {
    std::fs::read_to_string(SYSCTL).is_ok_and(|v| v.trim() == "1")
}

/// The counts of every loaded program (attached, or on standby: a lookup
/// detached keeps its counts for the next attach).
pub fn stats(watcher: &Watcher) -> Vec<ProgramStats> {
    watcher
        .programs
        .iter()
        .filter(|p| matches!(p.state, ProgramState::Attached | ProgramState::Standby))
        .filter_map(|p| {
            let fd = watcher.ebpf.program(&p.program)?.fd().ok()?;
            let info = match prog_info(fd.as_fd()) {
                Ok(info) => info,
                Err(e) => {
                    tracing::debug!(program = %p.program, "no program info: {e}");
                    return None;
                }
            };
            Some(ProgramStats {
                program: p.program.clone(),
                hook: p.hook,
                runs: info.run_cnt,
                run_seconds: info.run_time_ns as f64 / 1e9,
                misses: info.recursion_misses,
            })
        })
        .collect()
}

/// The misses of the loaded programs named `programs`, summed (a
/// program whose info cannot be read counts none).
pub fn misses(ebpf: &Ebpf, programs: &[String]) -> u64 {
    programs
        .iter()
        .filter_map(|name| {
            let fd = ebpf.program(name)?.fd().ok()?;
            prog_info(fd.as_fd()).ok()
        })
        .map(|info| info.recursion_misses)
        .sum()
}

/// BPF_OBJ_GET_INFO_BY_FD: aya's `ProgramInfo` has no accessor for
/// `recursion_misses` (5.12). A kernel with a shorter bpf_prog_info fills
/// what it has and leaves the rest zero.
fn prog_info(fd: BorrowedFd<'_>) -> std::io::Result<bpf_prog_info> {
    // SAFETY: both are plain C structs of integers; all-zero is valid.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_prog_info>() as u32;
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    // SAFETY: the kernel writes at most info_len bytes to `info`, which
    // lives until the call returns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            std::ptr::from_mut(&mut attr),
            size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info)
}
