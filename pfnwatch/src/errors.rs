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
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            if tail.is_empty() {
                format!("BPF_PROG_LOAD: {io_error}")
            } else {
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("BPF_PROG_LOAD: {io_error}; verifier: {}", tail.join(" | "))
            }
        }
        other => other.to_string(),
    }
}

/// What usually causes an errno when loading or attaching fentry/fexit.
pub fn hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::EPERM) => {
            "the kernel refused tracing programs: pfnwatch needs CAP_BPF and CAP_PERFMON \
             (or CAP_SYS_ADMIN); kernel lockdown or a sandboxed kernel can refuse \
             fentry/fexit even to root"
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
        Some(libc::E2BIG) => "the kernel rejected the program's size or arguments",
        _ => "unexpected; run with RUST_LOG=debug for details",
    }
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
        assert!(hint(errno(&err)).contains("CAP_BPF"));
        assert_eq!(errno(&ProgramError::NotLoaded), None);
    }

    #[test]
    fn every_common_errno_has_a_specific_hint() {
        let generic = hint(None);
        for e in [
            libc::EPERM,
            libc::EACCES,
            libc::ENOTSUP,
            524,
            libc::ENOENT,
            libc::EBUSY,
            libc::EINVAL,
        ] {
            assert_ne!(hint(Some(e)), generic, "errno {e}");
        }
    }
}
