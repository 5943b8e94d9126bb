//! `cargo xtask vm-test`: boot each selected kernel with the test guest and
//! collect its PASS/FAIL lines.

use pfnwatch_testbed_protocol::mode::Mode;
use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Result;

use crate::{
    badmod, guest,
    kernels::{self, Kernel, KernelSpec},
    kmods,
    paths::Paths,
    preflight, promtool,
    protocol::{CheckResult, GuestRun, Summary},
    qemu::{self, Boot, Next},
    replay_check,
};

#[derive(Debug, Clone)]
pub struct Options {
    pub kernels: Vec<KernelSpec>,
    pub keep_going: bool,
    pub timeout: Duration,
    pub guest_dir: Option<PathBuf>,
    /// Checks already run on the host (by `cargo xtask test`), counted in the summary.
    pub prior: Vec<CheckResult>,
    /// Seconds of the guest's soak check.
    pub soak_secs: u64,
}

/// Runs the tests; prints `N passed, M failed` as the very last line and returns
/// whether nothing failed. Host-side failures (missing tools, build, kernel fetch)
/// are counted as failed checks so the summary always closes the output.
pub fn run(options: &Options) -> Result<bool> {
    let paths = Paths::discover()?;
    let mut summary = Summary::default();
    summary.add(&options.prior);

    // Every kernel is fetched and its bad-driver module built before the
    // initramfs, which carries all the modules.
    let prepared = preflight::check()
        .map_err(|err| failed("preflight", format!("{err:#}")))
        .and_then(|()| {
            let (kernels, modules, kernel_modules) = fetch_and_build(&options.kernels, &paths);
            guest::prepare(
                &paths,
                options.guest_dir.as_deref(),
                &modules,
                &kernel_modules,
            )
            .map(|initrd| (initrd, kernels))
            .map_err(|err| failed("build", format!("{err:#}")))
        });
    let prepared = match prepared {
        Ok(prepared) => Some(prepared),
        Err(check) => {
            report("host", &[check], &mut summary);
            None
        }
    };

    if let Some((initrd, kernels)) = prepared {
        for (index, (spec, fetched)) in options.kernels.iter().zip(kernels).enumerate() {
            let pfnwatch = replay_check::host_pfnwatch(&paths, options.guest_dir.as_deref());
            let params = [format!(
                "{}={}",
                pfnwatch_testbed_protocol::mode::SOAK_SECS,
                options.soak_secs
            )];
            let checks = test_kernel(
                *spec,
                fetched,
                &paths,
                &initrd,
                options.timeout,
                &params,
                &pfnwatch,
            );
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

/// One selected kernel before its boot.
struct Fetched {
    /// The kernel, or why it could not be fetched.
    kernel: Result<Kernel>,
    /// Host-side failures that count with its checks (its module did not build).
    host: Vec<CheckResult>,
}

/// Fetches each kernel, builds its module and takes its Debian modules;
/// returns them with the modules that built and the Debian modules found.
fn fetch_and_build(
    specs: &[KernelSpec],
    paths: &Paths,
) -> (Vec<Fetched>, Vec<badmod::Module>, Vec<kmods::KernelModules>) {
    let kernels: Vec<Result<Kernel>> = specs
        .iter()
        .map(|spec| kernels::fetch(*spec, paths))
        .collect();
    let fetched: Vec<Kernel> = kernels.iter().flatten().cloned().collect();
    let mut built = badmod::build_all(paths, &fetched).into_iter();
    let mut modules = Vec::new();
    let mut kernel_modules = Vec::new();
    let kernels = kernels
        .into_iter()
        .map(|kernel| {
            let mut host = match (&kernel, built.next()) {
                (Err(_), _) => Vec::new(),
                (Ok(_), Some(Ok(module))) => {
                    modules.push(module);
                    Vec::new()
                }
                (Ok(_), Some(Err(err))) => vec![failed("badmod", format!("{err:#}"))],
                (Ok(_), None) => vec![failed("badmod", "no build result".to_owned())],
            };
            // Without them the kernel still boots; the guest then fails the
            // checks of the scenarios that need them.
            if let Ok(kernel) = &kernel {
                match kmods::fetch(kernel, paths) {
                    Ok(found) => {
                        host.push(CheckResult {
                            name: "kmods".to_owned(),
                            failure: None,
                        });
                        kernel_modules.push(found);
                    }
                    Err(err) => host.push(failed("kmods", format!("{err:#}"))),
                }
            }
            Fetched { kernel, host }
        })
        .collect();
    (kernels, modules, kernel_modules)
}

/// Boots one kernel; failures found on the host before the boot (its module
/// did not build) count with the guest's checks. The kernel still
/// boots without its module: the guest then fails `module/load` itself.
fn test_kernel(
    spec: KernelSpec,
    Fetched { kernel, host }: Fetched,
    paths: &Paths,
    initrd: &Path,
    timeout: Duration,
    params: &[String],
    pfnwatch: &Path,
) -> Vec<CheckResult> {
    let label = spec.label;
    let kernel = match kernel {
        Ok(kernel) => kernel,
        Err(err) => {
            let checks = vec![failed("kernel", format!("{err:#}"))];
            report(label, &checks, &mut Summary::default());
            return checks;
        }
    };
    report(label, &host, &mut Summary::default());
    let boot = Boot {
        kernel: kernel.vmlinuz.clone(),
        initrd: initrd.to_owned(),
        mode: Mode::Test,
        params: params.to_vec(),
        timeout,
        log: paths.console_log(label, Mode::Test),
    };
    println!(
        "[{label}] booting {} ({} s timeout)",
        kernel.version,
        timeout.as_secs()
    );
    promtool::forget_scrape(label, paths);
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
            return [host, checks].concat();
        }
    };
    let reported = guest.reported();
    let files = guest.take_files();
    let guest_checks = guest.finish(&result.end);
    // The guest's own FAIL lines were printed as they came; these are the host's.
    for check in &guest_checks[reported..] {
        if let Some(reason) = &check.failure {
            println!("[{label}] FAIL {}: {reason}", check.name);
        }
    }
    // The capture recorded in the guest, replayed by the host's pfnwatch.
    let replayed = replay_check::run(label, paths, pfnwatch, files);
    report(label, &replayed, &mut Summary::default());
    // The guest's /metrics scrape, saved with the other files above.
    let scraped = vec![promtool::check_scrape(label, paths)];
    report(label, &scraped, &mut Summary::default());
    let checks = [host, guest_checks, replayed, scraped].concat();
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
