//! `pfnwatch.mode=demo`: what a new user sees. pfnwatch check, then
//! `pfnwatch trace --all` printing straight to the console while every
//! scenario runs, then its counters.

use super::Reporter;
use crate::scenario::SCENARIOS;
use anyhow::{Context, Result};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn run(rep: &mut Reporter) -> Result<()> {
    println!("\n$ pfnwatch check");
    let status = Command::new("/bin/pfnwatch").arg("check").status()?;
    rep.check(
        "demo/check",
        status.success(),
        &format!("pfnwatch check exited {status}"),
    );

    println!("\n$ pfnwatch trace --all &");
    let mut trace = Command::new("/bin/pfnwatch")
        .args(["trace", "--all"])
        .stdout(Stdio::inherit())
        .spawn()
        .context("starting pfnwatch trace")?;
    // Loading under TCG takes a few seconds; the ready line says when.
    std::thread::sleep(Duration::from_secs(8));
    for s in SCENARIOS {
        println!("\n# {}: {}", s.name, s.about);
        let out = Command::new("/bin/pfnwatch-trigger").arg(s.name).output()?;
        rep.check(
            &format!("demo/{}", s.name),
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).trim(),
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("\n$ kill -TERM <trace>   # trace prints its counters when it stops");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(trace.id() as libc::pid_t, libc::SIGTERM) };
    let status = trace.wait()?;
    rep.check(
        "demo/trace",
        status.success(),
        &format!("pfnwatch trace exited {status}"),
    );
    Ok(())
}
