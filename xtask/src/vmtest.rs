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
    arch::Arch,
    badmod, guest,
    kernels::{self, Kernel, KernelSpec},
    kmods,
    paths::Paths,
    preflight, promtool,
    protocol::{CheckResult, GuestRun, Summary},
    qemu::{self, Boot, Next},
    replay_check,
};

/// Kernels of one architecture.
#[derive(Debug, Clone)]
pub struct Target {
    pub arch: Arch,
    pub kernels: Vec<KernelSpec>,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Booted in this order, each architecture with its own guest build.
    pub targets: Vec<Target>,
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
    let mut summary = Summary::default();
    summary.add(&options.prior);
    let mut stopped = false;
    for target in options.targets.iter().filter(|t| !t.kernels.is_empty()) {
        if stopped {
            println!(
                "not run: {} on {} (--keep-going runs them)",
                target
                    .kernels
                    .iter()
                    .map(|spec| spec.label)
                    .collect::<Vec<_>>()
                    .join(", "),
                target.arch
            );
            continue;
        }
        let paths = Paths::discover()?.for_arch(target.arch);
        stopped = !run_arch(options, target, &paths, &mut summary);
    }
    println!("{summary}");
    Ok(summary.failed == 0)
}

/// One architecture's kernels; false when a kernel failed and the run
/// should stop there.
fn run_arch(options: &Options, target: &Target, paths: &Paths, summary: &mut Summary) -> bool {
    // Every kernel is fetched and its bad-driver module built before the
    // initramfs, which carries all the modules.
    let prepared = preflight::check()
        .map_err(|err| failed("preflight", format!("{err:#}")))
        .and_then(|()| {
            let (kernels, modules, kernel_modules) = fetch_and_build(&target.kernels, paths);
            guest::prepare(
                paths,
                options.guest_dir.as_deref(),
                &modules,
                &kernel_modules,
            )
            .map(|initrd| (initrd, kernels))
            .map_err(|err| failed("build", format!("{err:#}")))
        });
    // The host replays every guest's capture with its own pfnwatch: an
    // arm64 run builds that too when no x86-64 run did.
    let prepared = prepared.and_then(|prepared| {
        let host = replay_check::host_pfnwatch(paths, options.guest_dir.as_deref());
        if !target.arch.is_host() && !host.is_file() {
            crate::build::build_guest(&paths.for_arch(Arch::X86_64))
                .map_err(|err| failed("build", format!("the host's pfnwatch: {err:#}")))?;
        }
        Ok(prepared)
    });
    let (initrd, kernels) = match prepared {
        Ok(prepared) => prepared,
        Err(check) => {
            report(&shown_label(target.arch, "host"), &[check], summary);
            return options.keep_going;
        }
    };
    for (index, (spec, fetched)) in target.kernels.iter().zip(kernels).enumerate() {
        let pfnwatch = replay_check::host_pfnwatch(paths, options.guest_dir.as_deref());
        let params = [format!(
            "{}={}",
            pfnwatch_testbed_protocol::mode::SOAK_SECS,
            options.soak_secs
        )];
        let checks = test_kernel(
            *spec,
            fetched,
            paths,
            &initrd,
            options.timeout,
            &params,
            &pfnwatch,
        );
        let kernel_failed = checks.iter().any(|check| check.failure.is_some());
        summary.add(&checks);
        let rest = &target.kernels[index + 1..];
        if kernel_failed && !options.keep_going {
            if !rest.is_empty() {
                let skipped: Vec<&str> = rest.iter().map(|spec| spec.label).collect();
                println!(
                    "stopping after the first failing kernel; not run: {} (--keep-going runs them)",
                    skipped.join(", ")
                );
            }
            return false;
        }
    }
    true
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
    // A kernel that attaches nothing runs no scenario: no module for it.
    let fetched: Vec<Kernel> = kernels
        .iter()
        .flatten()
        .filter(|kernel| attaches(paths.arch, kernel.spec.label))
        .cloned()
        .collect();
    let mut built = badmod::build_all(paths, &fetched).into_iter();
    let mut modules = Vec::new();
    let mut kernel_modules = Vec::new();
    let kernels = kernels
        .into_iter()
        .map(|kernel| {
            let needs_module = kernel
                .as_ref()
                .is_ok_and(|kernel| attaches(paths.arch, kernel.spec.label));
            let mut host = match (&kernel, needs_module.then(|| built.next()).flatten()) {
                (Err(_), _) => Vec::new(),
                (Ok(_), None) if !needs_module => Vec::new(),
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
    // Files go by the kernel's label in the architecture's own directory;
    // output names the architecture too where it is not the host's.
    let label = spec.label;
    let shown = shown_label(paths.arch, label);
    let kernel = match kernel {
        Ok(kernel) => kernel,
        Err(err) => {
            let checks = vec![failed("kernel", format!("{err:#}"))];
            report(&shown, &checks, &mut Summary::default());
            return checks;
        }
    };
    report(&shown, &host, &mut Summary::default());
    let boot = Boot {
        arch: paths.arch,
        kernel: kernel.vmlinuz.clone(),
        initrd: initrd.to_owned(),
        mode: Mode::Test,
        params: params.to_vec(),
        timeout,
        log: paths.console_log(label, Mode::Test),
    };
    println!(
        "[{shown}] booting {} ({} s timeout)",
        kernel.version,
        timeout.as_secs()
    );
    promtool::forget_scrape(label, paths);
    let mut guest = GuestRun::default();
    let result = qemu::run(&boot, |line| {
        let seen = guest.observe(line);
        if let Some(echo) = seen.echo {
            println!("[{shown}] {echo}");
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
            report(&shown, &checks, &mut Summary::default());
            return [host, checks].concat();
        }
    };
    let reported = guest.reported();
    let files = guest.take_files();
    let guest_checks = guest.finish(&result.end);
    // The guest's own FAIL lines were printed as they came; these are the host's.
    for check in &guest_checks[reported..] {
        if let Some(reason) = &check.failure {
            println!("[{shown}] FAIL {}: {reason}", check.name);
        }
    }
    // The capture recorded in the guest, replayed by the host's pfnwatch,
    // and the guest's /metrics scrape, saved with the other files above:
    // a kernel that attaches nothing has neither.
    let (replayed, scraped) = if attaches(paths.arch, label) {
        let replayed = replay_check::run(label, paths, pfnwatch, files);
        report(&shown, &replayed, &mut Summary::default());
        let scraped = vec![promtool::check_scrape(label, paths)];
        report(&shown, &scraped, &mut Summary::default());
        (replayed, scraped)
    } else {
        (Vec::new(), Vec::new())
    };
    let checks = [host, guest_checks, replayed, scraped].concat();
    let mut own = Summary::default();
    own.add(&checks);
    println!(
        "[{shown}] {own} in {:.1} s ({})",
        result.elapsed.as_secs_f64(),
        result.end
    );
    if own.failed > 0 {
        print_console_log(&shown, &boot.log);
    }
    checks
}

/// Whether fentry/fexit attach to kernel functions there: not on arm64
/// 6.1, whose guest only checks that pfnwatch says so (the testbed's
/// expect::NO_TRAMPOLINES).
fn attaches(arch: Arch, label: &str) -> bool {
    !(arch == Arch::Arm64 && label == "6.1")
}

/// `newest` on the host's architecture, `arm64 newest` on another.
fn shown_label(arch: Arch, label: &str) -> String {
    if arch.is_host() {
        label.to_owned()
    } else {
        format!("{arch} {label}")
    }
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
