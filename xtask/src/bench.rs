//! `cargo xtask bench`: boots each selected kernel once with
//! `pfnwatch.mode=bench` (pfnwatch-testbed/src/guest/bench_mode.rs), reads
//! its `pfnwatch-bench:` result lines, measures record and replay on the
//! host (bench/replay.rs), and writes BENCHMARKS.md. `--host-only` measures
//! the host part alone and rewrites only its section.
//!
//! It is no test: nothing here passes or fails on a figure. A boot fails
//! only when the guest could not measure (a FAIL line, no verdict, an oops).

mod bpftrace;
mod host;
pub(crate) use pfnwatch_testbed_protocol::bench as lines;
mod render;
pub mod replay;
mod stats;
mod summary;

use pfnwatch_testbed_protocol::mode::{BENCH_RUNS, Mode};
use std::{fs, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{
    guest,
    kernels::{self, KernelSpec},
    paths::Paths,
    preflight,
    protocol::GuestRun,
    qemu::{self, Boot, Next},
};

/// Guest time counts guest instructions: one per virtual ns (shift=0), and
/// none while the vCPU idles (sleep=off jumps to the next timer). A fork
/// then takes as long as the instructions it runs, whatever else the host
/// is doing: plain TCG timings moved by up to 2x with the host's load.
pub const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];

#[derive(Debug, Clone)]
pub struct Options {
    pub kernels: Vec<KernelSpec>,
    /// Rounds in each guest.
    pub runs: u32,
    pub timeout: Duration,
    pub guest_dir: Option<PathBuf>,
    /// Only the host's record and replay figures: no VM.
    pub host_only: bool,
}

/// One kernel's benchmark, or why there is none.
pub struct KernelBench {
    pub label: &'static str,
    /// The Debian package version (e.g. 6.1.176-1).
    pub package: String,
    pub outcome: Result<stats::KernelFigures, String>,
    pub boot_secs: f64,
}

pub fn run(options: &Options) -> Result<bool> {
    if options.host_only {
        return run_host_only(options);
    }
    preflight::install_missing()?;
    let paths = Paths::discover()?;
    // The benchmark plays no bad driver: no modules. bpftrace rides along
    // for its peer column; without it the column says so.
    let peer = match bpftrace::files(&paths) {
        Ok(files) => files,
        Err(err) => {
            println!("bpftrace: none for the peer column: {err:#}");
            Vec::new()
        }
    };
    let initrd = guest::prepare_with(&paths, options.guest_dir.as_deref(), &[], &[], &peer)?;
    let machine = host::Machine::read();
    let mut benches = Vec::new();
    for spec in &options.kernels {
        let bench = bench_kernel(*spec, &paths, &initrd, options);
        match &bench.outcome {
            Ok(_) => println!("[{}] measured in {:.1} s", bench.label, bench.boot_secs),
            Err(reason) => println!("[{}] FAILED: {reason}", bench.label),
        }
        benches.push(bench);
    }
    // The guest's pfnwatch is static and runs on the host as it is.
    let pfnwatch = crate::replay_check::host_pfnwatch(&paths, options.guest_dir.as_deref());
    let host =
        replay::measure(&pfnwatch, &replay::work_dir(&paths.root)).map_err(|e| format!("{e:#}"));
    if let Err(reason) = &host {
        println!("[host] FAILED: {reason}");
    }
    let text = render::markdown(&machine, &benches, options.runs, &host);
    let path = paths.root.join("BENCHMARKS.md");
    fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", summary::summary(&benches));
    println!("wrote {}", path.display());
    Ok(benches.iter().all(|b| b.outcome.is_ok()) && host.is_ok())
}

/// The record and replay figures alone, into their section of the
/// BENCHMARKS.md there is.
fn run_host_only(options: &Options) -> Result<bool> {
    let paths = Paths::discover()?;
    let binaries = match &options.guest_dir {
        Some(dir) => crate::build::prebuilt_guest(dir)?,
        None => crate::build::build_guest(&paths)?,
    };
    let figures = replay::measure(&binaries.pfnwatch, &replay::work_dir(&paths.root))?;
    let mut section = String::new();
    replay::section(&mut section, &figures);
    let path = paths.root.join("BENCHMARKS.md");
    let old = fs::read_to_string(&path).unwrap_or_default();
    fs::write(&path, replay::splice(&old, &section))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote the host section of {}", path.display());
    Ok(true)
}

fn bench_kernel(
    spec: KernelSpec,
    paths: &Paths,
    initrd: &std::path::Path,
    options: &Options,
) -> KernelBench {
    let label = spec.label;
    let mut bench = KernelBench {
        label,
        package: String::new(),
        outcome: Err("not booted".to_owned()),
        boot_secs: 0.0,
    };
    let kernel = match kernels::fetch(spec, paths) {
        Ok(kernel) => kernel,
        Err(err) => {
            bench.outcome = Err(format!("fetching the kernel: {err:#}"));
            return bench;
        }
    };
    bench.package.clone_from(&kernel.version);
    let boot = Boot {
        arch: paths.arch,
        kernel: kernel.vmlinuz.clone(),
        initrd: initrd.to_owned(),
        // Boot's mode ends the kernel command line: the round count rides along.
        mode: Mode::Bench,
        params: vec![format!("{BENCH_RUNS}={}", options.runs)],
        timeout: options.timeout,
        log: paths.console_log(label, Mode::Bench),
    };
    println!(
        "[{label}] booting {} for {} rounds ({} s timeout)",
        kernel.version,
        options.runs,
        options.timeout.as_secs()
    );
    let mut guest = GuestRun::default();
    let mut results = Vec::new();
    let mut bad_lines = Vec::new();
    let booted = qemu::run_with(&boot, &ICOUNT, |line| {
        match lines::parse(line) {
            Some(Ok(result)) => {
                if let Some(progress) = progress(&result) {
                    println!("[{label}] {progress}");
                }
                results.push(result);
            }
            Some(Err(err)) => bad_lines.push(format!("{err:#}")),
            None => {}
        }
        let seen = guest.observe(line);
        if let Some(echo) = seen.echo.filter(|e| !e.starts_with("PASS ")) {
            println!("[{label}] {echo}");
        }
        if seen.finished {
            Next::Finishing
        } else {
            Next::Continue
        }
    });
    bench.outcome = match booted {
        Err(err) => Err(format!("booting: {err:#}")),
        Ok(result) => {
            bench.boot_secs = result.elapsed.as_secs_f64();
            let failures: Vec<String> = guest
                .finish(&result.end)
                .into_iter()
                .filter_map(|c| Some(format!("{}: {}", c.name, c.failure?)))
                .chain(bad_lines)
                .collect();
            check_complete(&results, failures)
                .map(|()| stats::KernelFigures::from_lines(&results))
                .map_err(|e| format!("{e:#} (console: {})", boot.log.display()))
        }
    };
    bench
}

/// A run counts only if the guest measured without a failure.
fn check_complete(results: &[lines::Line], failures: Vec<String>) -> Result<()> {
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    if !results
        .iter()
        .any(|r| matches!(r, lines::Line::Guest { .. }))
    {
        bail!("the guest printed no results");
    }
    Ok(())
}

/// One terminal line per timed configuration, so a long boot shows life.
fn progress(line: &lines::Line) -> Option<String> {
    match line {
        lines::Line::Timing {
            round,
            workload,
            config,
            fork_ns,
        } => {
            let median = stats::median_of(fork_ns)?;
            Some(format!(
                "round {round} {workload} {config}: median fork+exit {:.1} ms",
                median / 1e6
            ))
        }
        _ => None,
    }
}
