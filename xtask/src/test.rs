//! `cargo xtask test`: what CI runs, from a fresh machine: install what is
//! missing, then fmt, clippy, the unit tests and the deploy/ checks on the
//! host, then the VM tests on every kernel. One summary line closes it all.

use std::{env, process::Command, time::Duration};

use anyhow::Result;

use crate::{
    cmd::describe, deploy_checks, kernels::KERNELS, paths::Paths, preflight, protocol::CheckResult,
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

pub fn run(timeout: Duration) -> Result<bool> {
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
    host.extend(deploy_checks::run(&Paths::discover()?));
    vmtest::run(&vmtest::Options {
        kernels: KERNELS.to_vec(),
        keep_going: true,
        timeout,
        guest_dir: None,
        prior: host,
        soak_secs: pfnwatch_testbed_protocol::mode::SOAK_SECS_DEFAULT,
    })
}
