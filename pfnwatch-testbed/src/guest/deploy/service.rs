//! The service as the package installs it: running under its hardening,
//! serving /metrics, reloading its configuration file, and stopping clean.

use super::super::daemon::{Scrape, scrape};
use super::super::reliability::{self, FREED, Objects};
use super::super::trigger;
use super::{Reporter, host, journal};
use crate::scenario::Scenario;
use anyhow::{Context, Result};
use pfnwatch::sinks::metrics;
use std::collections::BTreeSet;
use std::time::Duration;

pub const PORT: u16 = 19463;
/// Under TCG, loading and attaching takes seconds; the package's postinst
/// starts the service as apt returns.
const START: Duration = Duration::from_secs(120);
const CONFIG: &str = "/etc/pfnwatch/pfnwatch.toml";
/// CAP_BPF (39), CAP_PERFMON (38), CAP_SYSLOG (34): the unit's bounding set.
const BOUNDING: u64 = 1 << 39 | 1 << 38 | 1 << 34;
/// What pfnwatch keeps once attached.
const KEPT: u64 = 1 << 34;

fn metrics_up() -> Option<Scrape> {
    scrape(PORT).ok()
}

/// `service-active`: /metrics answers and systemd calls the unit active.
pub fn active(rep: &mut Reporter) -> Result<()> {
    let up = host::wait_for(START, metrics_up);
    let state = host::systemctl(&["is-active", "pfnwatch"]);
    match up {
        Some((_, took)) => rep.check(
            "service-active",
            state == "active",
            &format!(
                "{state}; /metrics answered {:.1} s after apt returned",
                took.as_secs_f64()
            ),
        ),
        None => rep.fail(
            "service-active",
            &format!(
                "{state}, no /metrics in {} s: {}",
                START.as_secs(),
                host::tail(
                    &host::run(
                        "journalctl",
                        &["-u", "pfnwatch", "-b", "--no-pager", "-n", "8"]
                    )
                    .unwrap_or_default(),
                    8
                )
            ),
        ),
    }
    Ok(())
}

fn main_pid() -> Option<u32> {
    host::systemctl(&["show", "-p", "MainPID", "--value", "pfnwatch"])
        .parse()
        .ok()
        .filter(|pid| *pid != 0)
}

/// The hex capability set `field` of /proc/PID/status.
fn caps(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map_or("", str::trim)
}

/// `service-hardening`: the running service is not root, its bounding set
/// is the unit's three capabilities, it kept CAP_SYSLOG alone after
/// attaching, with no_new_privs and a seccomp filter.
pub fn hardening(rep: &mut Reporter) {
    let status = host::wait_for(Duration::from_secs(20), || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", main_pid()?)).ok()?;
        (caps(&status, "CapEff") == Some(KEPT)).then_some(status)
    })
    .map(|(s, _)| s)
    .or_else(|| std::fs::read_to_string(format!("/proc/{}/status", main_pid()?)).ok())
    .unwrap_or_default();
    let uid = status_field(&status, "Uid");
    let ok = !uid.is_empty()
        && !uid.starts_with("0\t")
        && caps(&status, "CapBnd") == Some(BOUNDING)
        && caps(&status, "CapEff") == Some(KEPT)
        && caps(&status, "CapPrm") == Some(KEPT)
        && status_field(&status, "NoNewPrivs") == "1"
        && status_field(&status, "Seccomp") == "2";
    rep.check(
        "service-hardening",
        ok,
        &format!(
            "Uid {uid}; CapBnd {:#x} CapPrm {:#x} CapEff {:#x} (want bounding BPF|PERFMON|SYSLOG \
             {BOUNDING:#x}, kept SYSLOG {KEPT:#x}); NoNewPrivs {}; Seccomp {}",
            caps(&status, "CapBnd").unwrap_or(0),
            caps(&status, "CapPrm").unwrap_or(0),
            caps(&status, "CapEff").unwrap_or(0),
            status_field(&status, "NoNewPrivs"),
            status_field(&status, "Seccomp"),
        ),
    );
}

/// `unit-security`: `systemd-analyze security` of the installed unit, at
/// 2.0 or better.
pub fn security(rep: &mut Reporter) {
    let out = host::output("systemd-analyze", &["security", "pfnwatch", "--no-pager"]);
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let level = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for pfnwatch.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok());
    rep.check(
        "unit-security",
        level.is_some_and(|l| l <= 2.0),
        &format!("exposure level {level:?} (2.0 or better wanted)"),
    );
}

/// Hooks the kernel has, and those of them attached.
fn hooks(s: &Scrape) -> (BTreeSet<String>, BTreeSet<String>) {
    let of = |name: &str| -> BTreeSet<String> {
        s.family(name)
            .into_iter()
            .filter(|(_, v)| *v == 1.0)
            .filter_map(|(labels, _)| {
                labels
                    .into_iter()
                    .find(|(k, _)| k == "hook")
                    .map(|(_, v)| v)
            })
            .collect()
    };
    (
        of(metrics::HOOK_AVAILABLE.name),
        of(metrics::HOOK_ATTACHED.name),
    )
}

/// Whether every hook the kernel has is attached, and a description.
pub fn all_attached(s: &Scrape) -> (bool, String) {
    let (available, attached) = hooks(s);
    let blind: Vec<&String> = available.difference(&attached).collect();
    (
        !available.is_empty() && blind.is_empty(),
        format!(
            "{} of {} available hooks attached{}",
            attached.len(),
            available.len(),
            if blind.is_empty() {
                String::new()
            } else {
                format!(", blind to {blind:?}")
            }
        ),
    )
}

/// `metrics`: /metrics on 127.0.0.1:19463, every hook attached.
pub fn metrics(rep: &mut Reporter) {
    match scrape(PORT) {
        Ok(s) => {
            let (ok, detail) = all_attached(&s);
            rep.check(
                "metrics",
                ok,
                &format!("{} samples; {detail}", s.samples.len()),
            );
        }
        Err(e) => rep.fail("metrics", &format!("{e:#}")),
    }
}

/// `reload`: R1 made a warning in /etc/pfnwatch/pfnwatch.toml, `systemctl
/// reload pfnwatch`: the reload is counted a success and a COW /dev/mem
/// mapping then raises a warning R1 entry in the journal (info before).
pub fn reload(rep: &mut Reporter) -> Result<()> {
    let text = std::fs::read_to_string(CONFIG).with_context(|| format!("reading {CONFIG}"))?;
    let changed = text.replace(
        "# severity = { R1 = \"warning\" }",
        "severity = { R1 = \"warning\" }",
    );
    anyhow::ensure!(
        changed != text,
        "{CONFIG} has no commented R1 severity line to turn on"
    );
    std::fs::write(CONFIG, changed).with_context(|| format!("writing {CONFIG}"))?;
    let reloads = |s: &Scrape| s.get(metrics::RELOADS.name, &[("result", "success")]);
    let before = scrape(PORT).ok().and_then(|s| reloads(&s)).unwrap_or(0.0);
    if let Err(e) = host::run("systemctl", &["reload", "pfnwatch"]) {
        let journal = host::run(
            "journalctl",
            &["-u", "pfnwatch", "-b", "--no-pager", "-n", "6"],
        )
        .unwrap_or_default();
        rep.fail(
            "reload",
            &format!("{e:#}; journal: {}", host::tail(&journal, 6)),
        );
        return Ok(());
    }
    let reloaded = host::wait_for(Duration::from_secs(30), || {
        scrape(PORT)
            .ok()
            .and_then(|s| reloads(&s))
            .filter(|n| *n > before)
    });
    trigger::run(Scenario::DevmemPrivate)?;
    let entries = journal::wait_entries(&["PFNWATCH_RULE=R1", "PFNWATCH_SEVERITY=warning"], 1);
    let priority_ok = entries
        .first()
        .is_some_and(|e| journal::field(e, "PRIORITY") == "4");
    rep.check(
        "reload",
        reloaded.is_some() && priority_ok,
        &format!(
            "reloads counted {before} -> {:?}; warning R1 entries after devmem-private: {}{}",
            reloaded.map(|(n, _)| n),
            entries.len(),
            entries
                .first()
                .map(|e| format!(" (PRIORITY {})", journal::field(e, "PRIORITY")))
                .unwrap_or_default()
        ),
    );
    Ok(())
}

/// The tracing programs and links loaded since `before`, and the maps
/// those programs use: pfnwatch's. systemd's own BPF (the cgroup programs
/// and maps of units with IPAddressDeny= or DevicePolicy=, started and
/// stopped at any time) is left out.
fn tracing_since(before: &Objects) -> Result<Objects> {
    let mut progs = BTreeSet::new();
    let mut maps = BTreeSet::new();
    for p in aya::programs::loaded_programs() {
        let p = p.context("listing the kernel's BPF programs")?;
        if before.progs.contains(&p.id())
            || format!("{:?}", p.program_type()) != "BPF_PROG_TYPE_TRACING"
        {
            continue;
        }
        progs.insert(p.id());
        maps.extend(p.map_ids().ok().flatten().unwrap_or_default());
    }
    let mut links = BTreeSet::new();
    for l in aya::programs::loaded_links() {
        let l = l.context("listing the kernel's BPF links")?;
        if !before.links.contains(&l.id())
            && matches!(l.link_type(), Ok(aya::programs::links::LinkType::Tracing))
        {
            links.insert(l.id());
        }
    }
    Ok(Objects { progs, links, maps })
}

/// The tracing programs, links and maps loaded now: pfnwatch's, while it
/// runs.
pub fn tracing_now() -> Result<Objects> {
    tracing_since(&Objects {
        progs: BTreeSet::new(),
        links: BTreeSet::new(),
        maps: BTreeSet::new(),
    })
}

/// Waits up to [`FREED`] until none of `ran` is left; what is left.
pub fn wait_gone(ran: &Objects) -> Objects {
    let still = |now: &Objects| Objects {
        progs: now.progs.intersection(&ran.progs).copied().collect(),
        links: now.links.intersection(&ran.links).copied().collect(),
        maps: now.maps.intersection(&ran.maps).copied().collect(),
    };
    host::wait_for(FREED, || {
        let left = still(&reliability::objects().ok()?);
        (left.progs.is_empty() && left.links.is_empty() && left.maps.is_empty()).then_some(left)
    })
    .map(|(left, _)| left)
    .unwrap_or_else(|| {
        reliability::objects()
            .map(|now| still(&now))
            .unwrap_or_else(|_| ran.clone())
    })
}

/// `stop`: `systemctl stop pfnwatch` leaves none of the programs, links and
/// maps it had loaded.
pub fn stop(rep: &mut Reporter, before: &Objects) -> Result<()> {
    let ran = tracing_since(before)?;
    host::run("systemctl", &["stop", "pfnwatch"])?;
    let state = host::systemctl(&["is-active", "pfnwatch"]);
    // The kernel frees a closed program's trampoline through RCU.
    let left = wait_gone(&ran);
    let gone = left.progs.is_empty() && left.links.is_empty() && left.maps.is_empty();
    rep.check(
        "stop",
        gone && state != "active" && !ran.progs.is_empty(),
        &format!(
            "{state}; while running: {} tracing programs, {} links, {} maps; \
             left after stop: programs {:?}, links {:?}, maps {:?}",
            ran.progs.len(),
            ran.links.len(),
            ran.maps.len(),
            left.progs,
            left.links,
            left.maps,
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_capability_sets() {
        let status = "Name:\tpfnwatch\nUid:\t61234\t61234\t61234\t61234\nCapEff:\t0000000400000000\n\
                      CapBnd:\t000000c400000000\nNoNewPrivs:\t1\n";
        assert_eq!(caps(status, "CapEff"), Some(KEPT));
        assert_eq!(caps(status, "CapBnd"), Some(BOUNDING));
        assert_eq!(caps(status, "CapAmb"), None);
        assert_eq!(status_field(status, "NoNewPrivs"), "1");
        assert!(status_field(status, "Uid").starts_with("61234"));
    }
}
