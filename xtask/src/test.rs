//! `cargo xtask test`: what CI runs, from a fresh machine: install what is
//! missing, then fmt, clippy, the unit tests, the deploy/ checks and a
//! short fuzz run on the host, then the VM tests on every kernel. One
//! summary line closes it all.

use std::{env, process::Command, time::Duration};

use anyhow::Result;

use crate::{
    arch::Arch,
    cmd::describe,
    deploy, deploy_checks, fuzz,
    kernels::{KERNELS, KernelSpec},
    paths::Paths,
    preflight,
    protocol::CheckResult,
    vmtest,
};

/// The host steps, as cargo invocations.
const STEPS: [(&str, &[&str]); 3] = [
    ("fmt", &["fmt", "--all", "--check"]),
    (
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ),
    ("unit-tests", &["test", "--workspace"]),
];

/// Seconds CI fuzzes each target: enough to replay the committed corpus
/// (its seeds and every input that once crashed) and mutate it a little;
/// the long runs are `cargo xtask fuzz --seconds N`.
pub const FUZZ_SECONDS: u64 = 15;

pub struct Options {
    pub timeout: Duration,
    pub fuzz_seconds: u64,
    /// The systemd guests (deploy-test): trixie's by default.
    pub deploy: deploy::Options,
    /// The arm64 kernels booted after the x86-64 ones.
    pub arm64: Vec<KernelSpec>,
}

pub fn run(options: &Options) -> Result<bool> {
    let Options {
        timeout,
        fuzz_seconds,
        ..
    } = *options;
    preflight::install_missing()?;
    // cargo sets CARGO for the programs it runs: use the same toolchain.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut host = Vec::new();
    for (name, args) in STEPS {
        let mut command = Command::new(&cargo);
        command.args(args);
        println!("[host] + {}", describe(&command));
        let failure = match command.status() {
            Ok(status) if status.success() => None,
            Ok(status) => Some(format!("{} failed ({status})", describe(&command))),
            Err(err) => Some(format!("cannot run {}: {err}", describe(&command))),
        };
        match &failure {
            None => println!("[host] PASS {name}"),
            Some(reason) => println!("[host] FAIL {name}: {reason}"),
        }
        host.push(CheckResult {
            name: name.to_owned(),
            failure,
        });
    }
    // deploy/: the Debian package, the systemd unit, the Prometheus rules.
    let paths = Paths::discover()?;
    host.extend(deploy_checks::run(&paths));
    if fuzz_seconds > 0 {
        host.extend(fuzz::run(
            &paths,
            &fuzz::Options {
                seconds: fuzz_seconds,
                targets: Vec::new(),
            },
        ));
    }
    // The package under systemd, Prometheus and podman, booted per suite.
    host.extend(deploy::run(&options.deploy));
    // The arm64 package (its pfnwatch is the arm64 guests' build).
    if !options.arm64.is_empty() {
        host.extend(deploy_checks::foreign_package(&paths.for_arch(Arch::Arm64)));
    }
    vmtest::run(&vmtest::Options {
        targets: vec![
            vmtest::Target {
                arch: Arch::X86_64,
                kernels: KERNELS.to_vec(),
            },
            vmtest::Target {
                arch: Arch::Arm64,
                kernels: options.arm64.clone(),
            },
        ],
        keep_going: true,
        timeout,
        guest_dir: None,
        prior: host,
        soak_secs: pfnwatch_testbed_protocol::mode::SOAK_SECS_DEFAULT,
    })
}
