//! `pfnwatch-deploy-checks`: the in-guest half of `cargo xtask deploy-test`.
//! A systemd unit runs it in a Debian root booted with systemd as PID 1; it
//! deploys pfnwatch as an operator would — the package, the service, its
//! journal, Debian's Prometheus, podman with the DaemonSet's security
//! context — and reports each step as a check line on the console
//! (pfnwatch-testbed-protocol's `deploy::CHECKS`, in that order). The unit
//! powers the guest off when it exits.

mod host;
mod journal;
mod package;
mod podman;
mod prometheus;
mod service;

use super::{Reporter, module, reliability};
use anyhow::{Context, Result};
use pfnwatch_testbed_protocol::deploy::PAYLOAD;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn main() -> ExitCode {
    let mut rep = Reporter::default();
    // Whatever was on the console's last line ends here.
    println!();
    if let Err(e) = checks(&mut rep) {
        rep.fail("deploy/run", &format!("{e:#}"));
    }
    rep.verdict();
    ExitCode::SUCCESS
}

fn checks(rep: &mut Reporter) -> Result<()> {
    boot(rep);
    let (_, kernel) = super::kernel()?;
    // The kernel's BPF objects before pfnwatch: what `stop` compares with.
    let before = reliability::objects()?;
    package::install(rep)?;
    service::active(rep)?;
    service::hardening(rep);
    service::security(rep);
    service::metrics(rep);
    // Prometheus starts while the module loads; it needs a scrape of the
    // counters at 0 before the bad driver runs.
    prometheus::start()?;
    module::load(rep, kernel);
    prometheus::target(rep);
    let hit = journal::bad_driver(rep)?;
    prometheus::rule_hit(rep, hit);
    service::reload(rep)?;
    prometheus::hook_not_attached(rep)?;
    prometheus::stop();
    service::stop(rep, &before)?;
    package::purge(rep)?;
    podman::run(rep)
}

/// `boot`: the system is up with no failed unit.
fn boot(rep: &mut Reporter) {
    let state = host::output("systemctl", &["is-system-running", "--wait"])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("{e:#}"));
    let failed = host::run(
        "systemctl",
        &["list-units", "--failed", "--plain", "--no-legend"],
    )
    .unwrap_or_default();
    let time = host::run("systemd-analyze", &["time"]).unwrap_or_default();
    rep.info(&format!(
        "kernel {}; {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        host::run("systemctl", &["--version"])
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
    ));
    rep.check(
        "boot",
        state == "running" && failed.trim().is_empty(),
        &format!(
            "{state}; {}{}",
            time.lines().next().unwrap_or("").trim(),
            if failed.trim().is_empty() {
                String::new()
            } else {
                format!("; failed units: {}", host::tail(&failed, 10))
            }
        ),
    );
}

/// A file of the payload xtask put into the root.
fn payload(name: &str) -> PathBuf {
    Path::new(PAYLOAD).join(name)
}

/// The package cargo-deb made, in the payload.
fn deb() -> Result<PathBuf> {
    std::fs::read_dir(PAYLOAD)
        .with_context(|| format!("listing {PAYLOAD}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("no .deb in {PAYLOAD}"))
}
