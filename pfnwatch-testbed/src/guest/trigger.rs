//! Running one scenario in its own process, as every guest check does.

use crate::report::Report;
use crate::scenario::Scenario;
use anyhow::{Context, Result, ensure};
use std::process::Command;

/// Runs `pfnwatch-scenario <name>` and returns the report it prints.
pub fn run(scenario: Scenario) -> Result<Report> {
    let name = scenario.name();
    let out = Command::new("/bin/pfnwatch-scenario")
        .arg(name)
        .output()
        .context("running pfnwatch-scenario")?;
    ensure!(
        out.status.success(),
        "pfnwatch-scenario {name} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).context("pfnwatch-scenario printed no report")
}
