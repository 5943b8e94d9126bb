//! `pfnwatch.mode=demo`: what a new user sees. pfnwatch check, then
//! `pfnwatch trace` printing to the console while every scenario runs —
//! ordinary pfn mappings first, then the bad-driver module breaking each
//! rule — then trace's summary when it stops.

use super::Reporter;
use super::watch::lines_of;
use crate::scenario::Scenario;
use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

/// Loading under TCG takes a few seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub fn run(rep: &mut Reporter) -> Result<()> {
    let (_, kernel) = super::kernel()?;
    println!("\n$ pfnwatch check");
    let status = Command::new("/bin/pfnwatch").arg("check").status()?;
    rep.check(
        "demo/check",
        status.success(),
        &format!("pfnwatch check exited {status}"),
    );

    println!("\n$ insmod pfnwatch_badmod.ko   # a test driver that breaks the rules");
    super::module::load(rep, kernel);

    // Each scenario maps its device and uses it at once: the lookups stay
    // attached throughout rather than on demand (README, Cost).
    println!("\n$ pfnwatch trace --lookups always &   # rule hits and every pfn mapping created");
    let mut trace = Command::new("/bin/pfnwatch")
        .args(["trace", "--lookups", "always"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting pfnwatch trace")?;
    let lines = lines_of(trace.stdout.take().context("pfnwatch trace stdout")?);
    // Forward trace's lines to the console; the first one says it attached.
    let (ready_tx, ready) = channel();
    let forward = std::thread::spawn(move || {
        for line in lines {
            println!("{line}");
            let _ = ready_tx.send(());
        }
    });
    if ready.recv_timeout(READY_TIMEOUT).is_err() {
        let _ = trace.kill();
        bail!("pfnwatch trace printed nothing within {READY_TIMEOUT:?}");
    }
    for s in Scenario::for_kernel(kernel) {
        println!("\n# {}: {}", s.name(), s.spec().about);
        let out = Command::new("/bin/pfnwatch-scenario")
            .arg(s.name())
            .output()?;
        rep.check(
            &format!("demo/{}", s.name()),
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).trim(),
        );
        // Let trace print before the next heading.
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("\n$ kill -INT <trace>   # trace prints a summary when it stops");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(trace.id() as libc::pid_t, libc::SIGINT) };
    let status = trace.wait()?;
    let _ = forward.join();
    rep.check(
        "demo/trace",
        status.success(),
        &format!("pfnwatch trace exited {status}"),
    );
    Ok(())
}
