//! Debian's Prometheus scraping the service with deploy/prometheus/'s
//! configuration and the rules the package installs; its alerts read back
//! from its HTTP API. xtask put the configuration in the payload (the
//! shipped one with 5 s intervals, so the test waits seconds, not minutes)
//! and pointed /etc/default/prometheus at it.

use super::super::reliability::{OCCUPIED, occupy};
use super::service::{self, PORT};
use super::{Reporter, host};
use anyhow::Result;
use serde_json::Value;
use std::time::{Duration, Instant};

const API: u16 = 9090;
/// PfnwatchRuleHit fires at the first evaluation after the scrape that
/// shows the hit: one scrape and one evaluation interval (5 s each here),
/// stretched by TCG.
const RULE_HIT: Duration = Duration::from_secs(90);
/// PfnwatchHookNotAttached: its `for:` (1 min) after the first scrape that
/// shows the gap, plus an evaluation.
const HOOK_NOT_ATTACHED: Duration = Duration::from_secs(180);

pub fn start() -> Result<()> {
    host::run("systemctl", &["start", "prometheus"])?;
    Ok(())
}

pub fn stop() {
    let _ = host::run("systemctl", &["stop", "prometheus"]);
}

fn api(path: &str) -> Option<Value> {
    let (code, body) = host::get(API, path).ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// `prometheus/target`: Prometheus is up and has scraped pfnwatch.
pub fn target(rep: &mut Reporter) {
    let up = host::wait_for(Duration::from_secs(180), || {
        let targets = api("/api/v1/targets")?;
        targets["data"]["activeTargets"]
            .as_array()?
            .iter()
            .any(|t| t["labels"]["job"] == "pfnwatch" && t["health"] == "up")
            .then_some(())
    });
    let version = api("/api/v1/status/buildinfo")
        .and_then(|b| b["data"]["version"].as_str().map(str::to_owned))
        .unwrap_or_default();
    match up {
        Some((_, took)) => rep.pass(
            "prometheus/target",
            &format!(
                "Prometheus {version}: job pfnwatch up {:.1} s after the module load",
                took.as_secs_f64()
            ),
        ),
        None => rep.fail(
            "prometheus/target",
            &format!(
                "prometheus {}; targets: {}",
                host::systemctl(&["is-active", "prometheus"]),
                api("/api/v1/targets")
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            ),
        ),
    }
}

/// The firing alerts named `name` whose labels include `labels`.
fn firing(name: &str, labels: &[(&str, &str)]) -> Option<Value> {
    let alerts = api("/api/v1/alerts")?;
    alerts["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| {
            a["state"] == "firing"
                && a["labels"]["alertname"] == name
                && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
        })
        .cloned()
}

fn wait_firing(
    name: &str,
    labels: &[(&str, &str)],
    since: Instant,
    limit: Duration,
) -> (bool, String) {
    let left = limit.saturating_sub(since.elapsed());
    match host::wait_for(left, || firing(name, labels)) {
        Some((alert, _)) => (
            true,
            format!(
                "{name} firing {:.1} s after the cause (bound {} s): {}",
                since.elapsed().as_secs_f64(),
                limit.as_secs(),
                alert["labels"]
            ),
        ),
        None => (
            false,
            format!(
                "{name} not firing {} s after the cause; alerts: {}",
                limit.as_secs(),
                api("/api/v1/alerts")
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            ),
        ),
    }
}

/// `prometheus/PfnwatchRuleHit`: the bad driver's warning and critical hits
/// make it fire.
pub fn rule_hit(rep: &mut Reporter, since: Instant) {
    let (ok, detail) = wait_firing(
        "PfnwatchRuleHit",
        &[("severity", "critical")],
        since,
        RULE_HIT,
    );
    rep.check("prometheus/PfnwatchRuleHit", ok, &detail);
}

/// `prometheus/PfnwatchHookNotAttached`: the service stopped,
/// vmf_insert_mixed's trampoline filled with other programs, the service
/// started: the kernel refuses pfnwatch's program there, and the alert
/// fires for that hook. (Filled while pfnwatch runs, the trampoline would
/// get pfnwatch's own slots back when it restarts.)
pub fn hook_not_attached(rep: &mut Reporter) -> Result<()> {
    let before = service::tracing_now()?;
    host::run("systemctl", &["stop", "pfnwatch"])?;
    service::wait_gone(&before);
    let held = occupy(OCCUPIED)?;
    host::run("systemctl", &["start", "pfnwatch"])?;
    let since = Instant::now();
    let gap = host::wait_for(Duration::from_secs(120), || {
        let s = super::super::daemon::scrape(PORT).ok()?;
        let (all, detail) = service::all_attached(&s);
        (!all).then_some(detail)
    });
    let (ok, detail) = wait_firing(
        "PfnwatchHookNotAttached",
        &[("hook", OCCUPIED)],
        since,
        HOOK_NOT_ATTACHED,
    );
    let occupied = held.len();
    drop(held);
    rep.check(
        "prometheus/PfnwatchHookNotAttached",
        ok && gap.is_some(),
        &format!(
            "{occupied} programs held {OCCUPIED}'s trampoline; after the restart: {}; {detail}",
            gap.map(|(d, _)| d)
                .unwrap_or_else(|| "every hook attached".to_owned())
        ),
    );
    Ok(())
}
