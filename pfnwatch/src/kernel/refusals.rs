//! Turning the kernel's refusals into something an operator can act on.

use aya::programs::ProgramError;

/// The errno behind a program load or attach failure, if there is one.
pub fn errno(err: &ProgramError) -> Option<i32> {
    match err {
        ProgramError::LoadError { io_error, .. } => io_error.raw_os_error(),
        ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
        _ => None,
    }
}

/// One line: the error without the full verifier log, plus its last lines
/// when the verifier said something.
pub fn describe(err: &ProgramError) -> String {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let reason = verifier_reason(&verifier_log.to_string());
            if reason.is_empty() {
                format!("BPF_PROG_LOAD: {io_error}")
            } else {
                format!("BPF_PROG_LOAD: {io_error}; verifier: {reason}")
            }
        }
        other => other.to_string(),
    }
}

/// The last lines of a verifier log that say why, without the statistics
/// it ends with.
fn verifier_reason(log: &str) -> String {
    let stats = |l: &&str| {
        l.starts_with("verification time")
            || l.starts_with("processed ")
            || l.starts_with("stack depth")
            || l.trim().is_empty()
    };
    let mut tail: Vec<&str> = log.lines().rev().filter(|l| !stats(l)).take(3).collect();
    tail.reverse();
    tail.join(" | ")
}

/// What usually causes an errno when loading or attaching fentry/fexit.
/// `can_trace`: whether this process holds the capabilities tracing needs.
pub fn hint(errno: Option<i32>, can_trace: bool) -> &'static str {
    match errno {
        Some(libc::EPERM) if can_trace => {
            "pfnwatch holds CAP_BPF and CAP_PERFMON, so the kernel itself refuses \
             fentry/fexit: lockdown, an LSM policy, or a sandboxed kernel that blocks BPF \
             trampolines; run pfnwatch on the host kernel, not in the sandbox"
        }
        Some(libc::EPERM) => {
            "pfnwatch needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run it as root \
             or grant them (the systemd unit in deploy/ does)"
        }
        Some(libc::EACCES) => {
            "the verifier rejected the program: a kernel difference pfnwatch does not \
             handle yet; please report it with `pfnwatch check --format json`"
        }
        Some(libc::ENOTSUP) | Some(524) => {
            "this kernel has no BPF trampolines (fentry/fexit) for this architecture or \
             configuration"
        }
        Some(libc::ENOENT) | Some(libc::ESRCH) => {
            "the function is in BTF but cannot be traced (inlined or notrace)"
        }
        Some(libc::EBUSY) => "another tracer or a livepatch holds this function",
        Some(libc::EINVAL) => "the kernel rejected the program or its attach target",
        // At attach, E2BIG is bpf_trampoline_link_prog's: the function
        // already has BPF_MAX_TRAMP_LINKS (38 on x86-64) programs on it.
        Some(libc::E2BIG) => {
            "the function already carries as many fentry/fexit programs as the kernel allows \
             (38 on x86-64): other tracers hold them (`bpftool link` lists them)"
        }
        _ => "unexpected; run with RUST_LOG=debug for details",
    }
}

/// The symbolic name of an errno, for messages ("EPERM").
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::E2BIG => "E2BIG",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENOTSUP => "EOPNOTSUPP",
        524 => "ENOTSUPP",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::sys::SyscallError;

    #[test]
    fn errno_comes_from_the_syscall() {
        let err = ProgramError::SyscallError(SyscallError {
            call: "bpf_link_create",
            io_error: std::io::Error::from_raw_os_error(libc::EPERM),
        });
        assert_eq!(errno(&err), Some(libc::EPERM));
        assert!(hint(errno(&err), false).contains("run it as root"));
        assert!(hint(errno(&err), true).contains("the kernel itself refuses"));
        assert_eq!(errno(&ProgramError::NotLoaded), None);
    }

    #[test]
    fn the_verifier_reason_is_not_its_statistics() {
        let log = "0: R1=ctx() R10=fp0\n\
                   ; vma = BPF_CORE_READ(vmf, vma);\n\
                   12: (79) r2 = *(u64 *)(r1 +0)\n\
                   R1 invalid mem access 'scalar'\n\
                   processed 11 insns (limit 1000000) max_states_per_insn 0\n\
                   stack depth 16\n\
                   verification time 120 usec\n";
        assert_eq!(
            verifier_reason(log),
            "; vma = BPF_CORE_READ(vmf, vma); | 12: (79) r2 = *(u64 *)(r1 +0) | \
             R1 invalid mem access 'scalar'"
        );
        assert_eq!(verifier_reason(""), "");
    }

    #[test]
    fn every_common_errno_has_a_specific_hint() {
        let generic = hint(None, true);
        for e in [
            libc::EPERM,
            libc::EACCES,
            libc::ENOTSUP,
            524,
            libc::ENOENT,
            libc::EBUSY,
            libc::EINVAL,
        ] {
            assert_ne!(hint(Some(e), true), generic, "errno {e}");
        }
    }
}
