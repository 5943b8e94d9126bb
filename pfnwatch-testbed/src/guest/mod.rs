//! PID 1 of the test VM: mounts what pfnwatch needs, runs the mode the
//! kernel command line asks for (`pfnwatch.mode=test|demo|bench|shell`),
//! prints a verdict line the host reads, and powers off.

// `cargo xtask bench`: pfnwatch's cost (bench_mode.rs).
mod bench_mode;
// The correct-driver scenarios' devices and alerts (correct.rs).
mod correct;
// `cargo xtask deploy-test`'s in-guest checks (pfnwatch-deploy-checks).
pub mod deploy;
// pfnwatch run as a child, its log and /metrics (daemon.rs).
mod daemon;
mod demo_mode;
mod lookups;
// pfnwatch run's /metrics, SIGHUP and SIGTERM (metrics_checks.rs).
mod metrics_checks;
// badmod: loads the bad-driver test module (module.rs).
mod module;
// What the kernel and /proc say of a process's BPF objects and memory.
mod readings;
// Signals, a refused program, a flood and a soak (reliability.rs).
mod reliability;
mod report;
mod test_mode;
mod trace_checks;
mod trigger;
mod watch;

pub use report::Reporter;

use pfnwatch_testbed_protocol::mode::{self, Mode};
use std::ffi::CString;

pub fn main() -> ! {
    let mounted = mount_all();
    let mut reporter = Reporter::default();
    if let Err(e) = mounted {
        reporter.fail("boot/mounts", &format!("{e:#}"));
    }
    let mode = cmdline_param(mode::PARAM).map_or(Ok(Mode::Test), |m| Mode::parse(&m));
    let outcome = match &mode {
        Ok(Mode::Test) => test_mode::run(&mut reporter),
        Ok(Mode::Demo) => demo_mode::run(&mut reporter),
        Ok(Mode::Bench) => bench_mode::run(&mut reporter),
        Ok(Mode::Shell) => shell(),
        Err(e) => Err(anyhow::anyhow!(e.clone())),
    };
    if let Err(e) = outcome {
        let mode = mode.as_ref().map_or("boot", |m| m.name());
        reporter.fail(&format!("{mode}/run"), &format!("{e:#}"));
    }
    reporter.verdict();
    power_off()
}

/// This kernel's release (`uname -r`) and the version expect.rs keys on.
fn kernel() -> anyhow::Result<(String, crate::expect::KernelVersion)> {
    use anyhow::Context as _;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading /proc/sys/kernel/osrelease")?
        .trim()
        .to_owned();
    let version = crate::expect::KernelVersion::parse(&release)
        .with_context(|| format!("cannot parse kernel release {release:?}"))?;
    Ok((release, version))
}

fn cmdline_param(key: &str) -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    mode::cmdline_param(&cmdline, key).map(str::to_owned)
}

fn mount_all() -> anyhow::Result<()> {
    let mounts = [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", "/tmp", "tmpfs"),
        ("debugfs", "/sys/kernel/debug", "debugfs"),
        // Where bpftrace (the bench's peer) reads the traceable functions.
        ("tracefs", "/sys/kernel/tracing", "tracefs"),
        // Alerts name the cgroup: give pfnwatch a hierarchy to resolve ids in.
        ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
    ];
    for (source, target, fstype) in mounts {
        let _ = std::fs::create_dir_all(target);
        let c = |s: &str| CString::new(s).map_err(anyhow::Error::from);
        let (src, tgt, fs) = (c(source)?, c(target)?, c(fstype)?);
        // SAFETY: valid NUL-terminated strings, no data argument.
        let rc =
            unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
        let err = std::io::Error::last_os_error();
        // devtmpfs may already be mounted by the kernel.
        if rc != 0 && err.raw_os_error() != Some(libc::EBUSY) {
            anyhow::bail!("mount {fstype} on {target}: {err}");
        }
    }
    Ok(())
}

fn shell() -> anyhow::Result<()> {
    let status = std::process::Command::new("/bin/sh").status()?;
    anyhow::ensure!(status.success(), "shell exited with {status}");
    Ok(())
}

fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers; as PID 1 we may power off.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // reboot() only returns on failure; PID 1 must not exit.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
