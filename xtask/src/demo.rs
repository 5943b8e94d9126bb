//! `cargo xtask demo`: from a fresh Debian machine to pfnwatch running on the
//! newest Debian kernel, with the guest console on the terminal.

use pfnwatch_testbed_protocol::mode::Mode;
use std::{path::PathBuf, time::Duration};

use anyhow::{Result, bail};

use crate::{
    badmod, guest, kernels, kmods,
    paths::Paths,
    preflight,
    protocol::GuestRun,
    qemu::{self, Boot, Next},
};

#[derive(Debug, Clone)]
pub struct Options {
    pub timeout: Duration,
    pub guest_dir: Option<PathBuf>,
}

pub fn run(options: &Options) -> Result<()> {
    preflight::install_missing()?;
    let paths = Paths::discover()?;
    let spec = kernels::newest();
    let kernel = kernels::fetch(spec, &paths)?;
    // The bad driver is the point of the demo: what pfnwatch says when a
    // driver breaks the rules. Building it costs a root of the kernel's
    // suite (about 90 s the first time, cached after).
    println!(
        "building the bad-driver test module for {}...",
        kernel.version
    );
    let module = badmod::build(&paths, &kernel)?;
    // The correct drivers' Debian modules: without them those scenarios
    // fail in the demo, and the rest still runs.
    let kernel_modules = match kmods::fetch(&kernel, &paths) {
        Ok(found) => vec![found],
        Err(err) => {
            println!("warning: no Debian modules in this guest: {err:#}");
            Vec::new()
        }
    };
    let initrd = guest::prepare(
        &paths,
        options.guest_dir.as_deref(),
        &[module],
        &kernel_modules,
    )?;
    let boot = Boot {
        arch: paths.arch,
        kernel: kernel.vmlinuz,
        initrd,
        mode: Mode::Demo,
        params: Vec::new(),
        timeout: options.timeout,
        log: paths.console_log(spec.label, Mode::Demo),
    };
    println!(
        "booting {} under qemu (TCG, so give it a moment)...",
        kernel.version
    );
    let mut guest = GuestRun::default();
    let result = qemu::run(&boot, |line| {
        // The console is the demo: show all of it, not only protocol lines.
        println!("{line}");
        if guest.observe(line).finished {
            Next::Finishing
        } else {
            Next::Continue
        }
    })?;
    let checks = guest.finish(&result.end);
    let failures: Vec<String> = checks
        .iter()
        .filter_map(|check| {
            let reason = check.failure.as_ref()?;
            Some(format!("{}: {reason}", check.name))
        })
        .collect();
    println!(
        "demo: {} in {:.1} s; console saved to {}",
        result.end,
        result.elapsed.as_secs_f64(),
        boot.log.display()
    );
    if !failures.is_empty() {
        // The console was already on screen; qemu's own stderr was not.
        if !result.qemu_stderr.trim().is_empty() {
            println!("qemu stderr:\n{}", result.qemu_stderr.trim_end());
        }
        bail!("the demo failed: {}", failures.join("; "));
    }
    Ok(())
}
