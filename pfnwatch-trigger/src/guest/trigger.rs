//! Running one scenario in its own process, as every guest check does.

use crate::report::Report;
use anyhow::{Context, Result, ensure};
use std::process::Command;

/// Runs `pfnwatch-trigger <name>` and returns the report it prints.
pub fn run(name: &str) -> Result<Report> {
    let out = Command::new("/bin/pfnwatch-trigger")
        .arg(name)
        .output()
        .context("running pfnwatch-trigger")?;
    ensure!(
        out.status.success(),
        "pfnwatch-trigger {name} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).context("pfnwatch-trigger printed no report")
}
