//! `cargo xtask vm-test`: boot each selected kernel with the test guest and
//! collect its PASS/FAIL lines.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Result;

use crate::{
    guest,
    kernels::{self, KernelSpec},
    paths::Paths,
    preflight,
    protocol::{CheckResult, GuestRun, Summary},
    qemu::{self, Boot, Next},
};

#[derive(Debug, Clone)]
pub struct Options {
    pub kernels: Vec<KernelSpec>,
    pub keep_going: bool,
    pub timeout: Duration,
    pub guest_dir: Option<PathBuf>,
    /// Checks already run on the host (by `cargo xtask test`), counted in the summary.
    pub prior: Vec<CheckResult>,
}

/// Runs the tests; prints `N passed, M failed` as the very last line and returns
/// whether nothing failed. Host-side failures (missing tools, build, kernel fetch)
/// are counted as failed checks so the summary always closes the output.
pub fn run(options: &Options) -> Result<bool> {
    let paths = Paths::discover()?;
    let mut summary = Summary::default();
    summary.add(&options.prior);

    let prepared = preflight::check()
        .map_err(|err| failed("preflight", format!("{err:#}")))
        .and_then(|()| {
            guest::prepare(&paths, options.guest_dir.as_deref())
                .map_err(|err| failed("build", format!("{err:#}")))
        });
    let initrd = match prepared {
        Ok(initrd) => Some(initrd),
        Err(check) => {
            report("host", &[check], &mut summary);
            None
        }
    };

    if let Some(initrd) = initrd {
        for (index, spec) in options.kernels.iter().enumerate() {
            let checks = test_kernel(*spec, &paths, &initrd, options.timeout);
            let kernel_failed = checks.iter().any(|check| check.failure.is_some());
            summary.add(&checks);
            let rest = &options.kernels[index + 1..];
            if kernel_failed && !options.keep_going && !rest.is_empty() {
                let skipped: Vec<&str> = rest.iter().map(|spec| spec.label).collect();
                println!(
                    "stopping after the first failing kernel; not run: {} (--keep-going runs them)",
                    skipped.join(", ")
                );
                break;
            }
        }
    }
    println!("{summary}");
    Ok(summary.failed == 0)
}

fn test_kernel(
    spec: KernelSpec,
    paths: &Paths,
    initrd: &Path,
    timeout: Duration,
) -> Vec<CheckResult> {
    let label = spec.label;
    let kernel = match kernels::fetch(spec, paths) {
        Ok(kernel) => kernel,
        Err(err) => {
            let checks = vec![failed("kernel", format!("{err:#}"))];
            report(label, &checks, &mut Summary::default());
            return checks;
        }
    };
    let boot = Boot {
        kernel: kernel.vmlinuz.clone(),
        initrd: initrd.to_owned(),
        mode: "test".to_owned(),
        timeout,
        log: paths.console_log(label, "test"),
    };
    println!(
        "[{label}] booting {} ({} s timeout)",
        kernel.version,
        timeout.as_secs()
    );
    let mut guest = GuestRun::default();
    let result = qemu::run(&boot, |line| {
        let seen = guest.observe(line);
        if let Some(echo) = seen.echo {
            println!("[{label}] {echo}");
        }
        if seen.finished {
            Next::Finishing
        } else {
            Next::Continue
        }
    });
    let result = match result {
        Ok(result) => result,
        Err(err) => {
            let checks = vec![failed("boot", format!("{err:#}"))];
            report(label, &checks, &mut Summary::default());
            return checks;
        }
    };
    let reported = guest.reported();
    let checks = guest.finish(&result.end);
    // The guest's own FAIL lines were printed as they came; these are the host's.
    for check in &checks[reported..] {
        if let Some(reason) = &check.failure {
            println!("[{label}] FAIL {}: {reason}", check.name);
        }
    }
    let mut own = Summary::default();
    own.add(&checks);
    println!(
        "[{label}] {own} in {:.1} s ({})",
        result.elapsed.as_secs_f64(),
        result.end
    );
    if own.failed > 0 {
        print_console_log(label, &boot.log);
    }
    checks
}

fn failed(name: &str, reason: String) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        failure: Some(reason),
    }
}

/// Prints host-side results as `[label] FAIL name: reason` and counts them.
fn report(label: &str, checks: &[CheckResult], summary: &mut Summary) {
    for check in checks {
        match &check.failure {
            Some(reason) => println!("[{label}] FAIL {}: {reason}", check.name),
            None => println!("[{label}] PASS {}", check.name),
        }
    }
    summary.add(checks);
}

pub fn print_console_log(label: &str, log: &Path) {
    println!("----- [{label}] console log ({}) -----", log.display());
    match fs::read_to_string(log) {
        Ok(text) => print!("{text}"),
        Err(err) => println!("(cannot read it: {err})"),
    }
    println!("----- [{label}] end of console log -----");
}
