//! `cargo xtask deploy-test`: pfnwatch deployed as users deploy it, in a
//! Debian root of each suite booted under qemu with systemd as PID 1 and the
//! suite's own kernel. The guest (pfnwatch-testbed's guest/deploy/) installs
//! the package, checks the service, its journal entries, Debian's
//! Prometheus and podman with the DaemonSet's security context, and reports
//! each step as a check line; this side builds what it needs, boots, and
//! counts.

mod boot_files;
mod daemonset;
mod oci;
mod payload;
mod root;
mod seccomp;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use pfnwatch_testbed_protocol::{deploy::CHECKS, mode::Mode};

use crate::{
    badmod, build, deb,
    kernels::{self, KERNELS, KernelSpec},
    paths::Paths,
    preflight::{self, BUSYBOX},
    protocol::{CheckResult, GuestRun, Summary},
    qemu::{self, Boot, Next},
};

/// Seconds a suite's boot may take: whole runs took 287 s (bookworm) to
/// 392 s (testing) on a loaded 2-core machine; TCG slows down with load.
pub const TIMEOUT_DEFAULT: u64 = 1500;

/// The suites by name, each with the kernel line vm-test boots from it.
pub fn suite(name: &str) -> Option<KernelSpec> {
    KERNELS.into_iter().find(|k| k.suite == name)
}

#[derive(Debug, Clone)]
pub struct Options {
    pub suites: Vec<KernelSpec>,
    pub timeout: Duration,
    /// Build and prepare everything (roots, images) but boot nothing: the
    /// slow, network-bound part, for warming caches outside a VM slot.
    pub prepare_only: bool,
}

/// Runs every selected suite; one check list each, failures counted.
pub fn run(options: &Options) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    let shared = match preflight::check()
        .and_then(|()| Paths::discover())
        .and_then(|paths| {
            let built = build_shared(&paths)?;
            Ok((paths, built))
        }) {
        Ok(shared) => shared,
        Err(err) => {
            let check = failed("deploy/build", format!("{err:#}"));
            report("deploy", std::slice::from_ref(&check));
            return vec![check];
        }
    };
    let (paths, built) = shared;
    for spec in &options.suites {
        checks.extend(run_suite(&paths, &built, *spec, options));
    }
    checks
}

/// Built once for every suite.
struct Built {
    deb: PathBuf,
    image: PathBuf,
    binaries: build::GuestBinaries,
}

fn build_shared(paths: &Paths) -> Result<Built> {
    let deb = deb::build(paths).context("building the package")?;
    let binaries = build::build_guest(paths).context("building the guest binaries")?;
    let work = work_dir(paths);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let image = work.join(pfnwatch_testbed_protocol::deploy::IMAGE);
    let manifest_path = paths.root.join("deploy/kubernetes/pfnwatch-daemonset.yaml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let reference = daemonset::read(&manifest, "/")?.run.image;
    oci::write(&image, &reference, &binaries.pfnwatch, Path::new(BUSYBOX))
        .context("writing the OCI image")?;
    println!("[deploy] image {reference}: {}", image.display());
    Ok(Built {
        deb,
        image,
        binaries,
    })
}

fn work_dir(paths: &Paths) -> PathBuf {
    paths.vmtest.join("deploy")
}

/// One suite: its kernel and module, root, payload, image, boot.
fn run_suite(
    paths: &Paths,
    built: &Built,
    spec: KernelSpec,
    options: &Options,
) -> Vec<CheckResult> {
    let timeout = options.timeout;
    let suite = spec.suite;
    let label = format!("systemd/{suite}");
    let prepared = prepare(paths, built, spec);
    let (boot, prep_time) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            let checks = vec![failed(&format!("{label}/prepare"), format!("{err:#}"))];
            report(&label, &checks);
            return checks;
        }
    };
    if options.prepare_only {
        let checks = vec![CheckResult {
            name: format!("{label}/prepare"),
            failure: None,
        }];
        report(&label, &checks);
        return checks;
    }
    println!(
        "[{label}] prepared in {:.0} s; booting {} ({} s timeout)",
        prep_time.as_secs_f64(),
        boot.kernel.display(),
        timeout.as_secs()
    );
    let boot = Boot { timeout, ..boot };
    let drive = format!(
        "file={},format=raw,if=virtio,cache=unsafe",
        work_dir(paths).join(format!("{suite}.ext4")).display()
    );
    let mut guest = GuestRun::default();
    let result = qemu::run_with(&boot, &["-drive", &drive, "-snapshot"], |line| {
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
            let checks = vec![failed(&format!("{label}/boot"), format!("{err:#}"))];
            report(&label, &checks);
            return checks;
        }
    };
    let reported = guest.reported();
    let mut checks = guest.finish(&result.end);
    for check in &checks[reported..] {
        if let Some(reason) = &check.failure {
            println!("[{label}] FAIL {}: {reason}", check.name);
        }
    }
    let missing = missing_checks(&checks);
    for name in &missing {
        let check = failed(name, "the guest did not report it".to_owned());
        println!("[{label}] FAIL {name}: the guest did not report it");
        checks.push(check);
    }
    for check in &mut checks {
        check.name = format!("{label}/{}", check.name);
    }
    let mut own = Summary::default();
    own.add(&checks);
    println!(
        "[{label}] {own} in {:.1} s ({})",
        result.elapsed.as_secs_f64(),
        result.end
    );
    if own.failed > 0 {
        crate::vmtest::print_console_log(&label, &boot.log);
    }
    checks
}

/// Kernel, bad driver, root, payload, disk image, initrd: the boot, and how
/// long it took to get there.
fn prepare(paths: &Paths, built: &Built, spec: KernelSpec) -> Result<(Boot, Duration)> {
    let started = Instant::now();
    let suite = spec.suite;
    let work = work_dir(paths);
    let kernel = kernels::fetch(spec, paths)?;
    let module = badmod::build(paths, &kernel)?;
    let root = root::ensure(&work, &kernel)?;
    let release = kernel.release();
    let deploy_checks = built
        .binaries
        .deploy_checks
        .as_deref()
        .context("no pfnwatch-deploy-checks was built")?;
    let derived = payload::install(
        &root,
        &work.join(format!("{suite}.payload")),
        &payload::Shared {
            repo: &paths.root,
            deb: &built.deb,
            image: &built.image,
            deploy_checks,
            scenario: &built.binaries.scenario,
        },
        &module,
    )?;
    if derived {
        println!(
            "[systemd/{suite}] podman's default seccomp profile refuses bpf(2) to CAP_BPF: \
             the guest checks that, then runs the container under a derived profile"
        );
    }
    let step = Instant::now();
    boot_files::disk_image(&root, &work, suite)?;
    let initrd = boot_files::mini_initrd(&root, &work, suite, release)?;
    println!(
        "[systemd/{suite}] disk image and initrd in {:.1} s",
        step.elapsed().as_secs_f64()
    );
    // The root's own kernel, which its modules match (debootstrap installed
    // exactly the release kernels::fetch resolved).
    let vmlinuz = root.dir.join(format!("boot/vmlinuz-{release}"));
    let boot = Boot {
        arch: crate::arch::Arch::X86_64,
        kernel: vmlinuz,
        initrd,
        mode: Mode::Test,
        params: [
            "root=/dev/vda",
            "rw",
            // The test unit owns the serial console.
            "systemd.mask=serial-getty@ttyS0.service",
            // udev would bind DRM's bochs to 00:02.0, whose BAR the bad
            // driver and /dev/mem scenarios map (a bound driver claims the
            // BAR, and IO_STRICT_DEVMEM then refuses /dev/mem there).
            "modprobe.blacklist=bochs,bochs_drm",
        ]
        .map(str::to_owned)
        .to_vec(),
        timeout: Duration::ZERO,
        log: paths.vmtest.join(format!("deploy-{suite}.console.log")),
    };
    Ok((boot, started.elapsed()))
}

/// The protocol's checks the guest did not report (it stopped early).
fn missing_checks(checks: &[CheckResult]) -> Vec<String> {
    CHECKS
        .iter()
        .filter(|name| !checks.iter().any(|c| c.name == **name))
        .map(|name| (*name).to_owned())
        .collect()
}

fn failed(name: &str, reason: String) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        failure: Some(reason),
    }
}

fn report(label: &str, checks: &[CheckResult]) {
    for check in checks {
        match &check.failure {
            Some(reason) => println!("[{label}] FAIL {}: {reason}", check.name),
            None => println!("[{label}] PASS {}", check.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_the_vm_test_kernels_suites() {
        assert_eq!(suite("trixie").map(|k| k.label), Some("6.12"));
        assert_eq!(suite("bookworm").map(|k| k.label), Some("6.1"));
        assert_eq!(suite("testing").map(|k| k.label), Some("newest"));
        assert!(suite("sid").is_none());
    }

    #[test]
    fn unreported_checks_are_named() {
        let reported = vec![CheckResult {
            name: "boot".to_owned(),
            failure: None,
        }];
        let missing = missing_checks(&reported);
        assert_eq!(missing.len(), CHECKS.len() - 1);
        assert!(!missing.contains(&"boot".to_owned()));
    }
}
