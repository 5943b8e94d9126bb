//! `pfnwatch run` as a fleet runs it: configured by a file, scraped over
//! HTTP, reloaded by SIGHUP, stopped by SIGTERM.
//!
//! The guest brings up `lo`, starts the daemon, and scrapes `/metrics`
//! before and after every scenario. What each scrape must have grown by
//! comes from expect.rs (the kernels' code), aggregated to the metric's
//! labels by this file's own reading of the class bits, never from
//! pfnwatch's output. The last scrape goes to the host (FILE metrics.prom),
//! where `promtool check metrics` checks its format.

use super::Reporter;
use super::daemon::{Daemon, Labels, Scrape, scrape};
use super::trigger::run as trigger;
use crate::expect::{self, KernelVersion};
use crate::judge::Tally;
use crate::report::Report;
use crate::scenario::Scenario;
use anyhow::{Context, Result};
use pfnwatch::rules::{self, RuleConfig, RuleId, RuleSet, Selection};
use pfnwatch::sinks::metrics;
use pfnwatch_common::class::{
    ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
};
use pfnwatch_common::{Class, Family, Hook};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const CONFIG: &str = "/tmp/pfnwatch-metrics.toml";
const ALERTS: &str = "/tmp/pfnwatch-metrics-alerts.jsonl";
const PORT: u16 = 19463;
/// Where the reload moves the listener.
const RELOAD_PORT: u16 = 19464;
const LOG_WAIT: Duration = Duration::from_secs(30);

pub fn run(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    loopback_up().context("bringing up lo")?;
    let echo = loopback_echo();
    rep.check(
        "metrics/loopback",
        echo.is_ok(),
        &match echo {
            Ok(addr) => format!("lo is up: a byte went through {addr} and back"),
            Err(e) => format!("127.0.0.1 unreachable: {e:#}"),
        },
    );
    // Run counts and times of the programs: the kernel keeps them only
    // while this is on.
    let stats = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").is_ok();
    write_config(&format!(
        "interval = 1\nalerts_file = \"{ALERTS}\"\n\n[web]\nlisten_address = \"127.0.0.1:{PORT}\"\n"
    ))?;
    let mut daemon = Daemon::start(&["--config", CONFIG])?;
    let outcome = scrape_scenarios(rep, kernel, &mut daemon, stats)
        .and_then(|last| reload(rep, kernel, &mut daemon, &last));
    if let Err(e) = &outcome {
        rep.fail("metrics/run", &format!("{e:#}"));
        rep.info(&daemon.log().join("\n"));
    }
    stop(rep, kernel, daemon)
}

/// Scrapes before, between and after the scenarios; returns the last scrape.
fn scrape_scenarios(
    rep: &mut Reporter,
    kernel: KernelVersion,
    daemon: &mut Daemon,
    stats: bool,
) -> Result<Scrape> {
    let first = scrape(PORT)?;
    startup(rep, kernel, &first, stats);
    let noise = vdso_noise(kernel);
    let mut before = first.clone();
    let mut want_all = Tally::new();
    for scenario in Scenario::for_kernel(kernel) {
        let name = scenario.name();
        let report = trigger(scenario)?;
        let after = scrape(PORT)?;
        let want = scenario.expected(kernel);
        per_scenario(
            rep,
            kernel,
            name,
            &report,
            &want,
            &before.delta(&after),
            &noise,
        );
        for (key, n) in want {
            *want_all.entry(key).or_default() += n;
        }
        before = after;
        let _ = daemon.drain_log();
    }
    // After them all: the last scrape against the first, every scenario's
    // calls at once, and the programs' run counts.
    let all = first.delta(&before);
    let got = hook_calls(&all, &noise);
    let want = labelled(&want_all, &noise);
    rep.check(
        "metrics/all-scenarios",
        got == want,
        &format!("hook calls over every scenario: {}", compare(&want, &got)),
    );
    if stats {
        program_runs(rep, &all, &want_all);
    }
    // The host runs `promtool check metrics` on it.
    rep.send_file("metrics.prom", before.text.as_bytes());
    Ok(before)
}

/// What a scrape must show before any scenario: the build, and each hook
/// attached exactly when this kernel has it.
fn startup(rep: &mut Reporter, kernel: KernelVersion, s: &Scrape, stats: bool) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let build = s.get(
        metrics::BUILD_INFO.name,
        &[("kernel_release", release.trim())],
    );
    rep.check(
        "metrics/build-info",
        build == Some(1.0)
            && s.text
                .contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        &format!(
            "pfnwatch_build_info for kernel {} version {}: {build:?}",
            release.trim(),
            env!("CARGO_PKG_VERSION")
        ),
    );
    let mut wrong = Vec::new();
    for hook in Hook::ALL {
        let present = f64::from(u8::from(expect::hook_present(kernel, hook)));
        let labels = [("hook", hook.function())];
        let got = (
            s.get(metrics::HOOK_AVAILABLE.name, &labels),
            s.get(metrics::HOOK_ATTACHED.name, &labels),
        );
        if got != (Some(present), Some(present)) {
            wrong.push(format!(
                "{hook}: available/attached {got:?}, want {present}"
            ));
        }
    }
    rep.check(
        "metrics/hooks-attached",
        wrong.is_empty(),
        &if wrong.is_empty() {
            format!("every hook 1/1 where {kernel} has it, 0/0 elsewhere")
        } else {
            wrong.join("; ")
        },
    );
    let enabled = s.get(metrics::STATS_ENABLED.name, &[]);
    rep.check(
        "metrics/bpf-stats",
        enabled == Some(f64::from(u8::from(stats))),
        &format!(
            "pfnwatch_bpf_stats_enabled {enabled:?} with kernel.bpf_stats_enabled set: {stats}"
        ),
    );
}

/// One scenario's growth in every family it touches.
fn per_scenario(
    rep: &mut Reporter,
    kernel: KernelVersion,
    name: &str,
    report: &Report,
    want: &Tally,
    delta: &Scrape,
    noise: &BTreeSet<Labels>,
) {
    let got = hook_calls(delta, noise);
    let want_calls = labelled(want, noise);
    rep.check(
        &format!("metrics/{name}/hook-calls"),
        got == want_calls,
        &compare(&want_calls, &got),
    );

    // Remaps by outcome; the pfn mappings the inventory saw made and gone.
    let mut want_remaps: BTreeMap<Labels, f64> = BTreeMap::new();
    let of_family = |family: Family| -> f64 {
        want.iter()
            .filter(|((hook, _), _)| hook.family() == family)
            .map(|(_, n)| *n as f64)
            .sum()
    };
    let created = of_family(Family::VmaCreated);
    let removed = of_family(Family::VmaGone);
    for ((hook, class), n) in want {
        // 7.x: a remap passes remap_pfn_range_prepare and is counted at
        // remap_pfn_range_complete; a prepare counts only where it refuses.
        let counted = match hook {
            Hook::RemapPfnRange | Hook::RemapPfnRangeComplete => true,
            Hook::RemapPfnRangePrepare => class.has(ERROR),
            _ => false,
        };
        if counted {
            let labels = vec![
                ("cow".to_owned(), yes(*class, COW).to_owned()),
                ("hook".to_owned(), hook.function().to_owned()),
                ("outcome".to_owned(), outcome(*class).to_owned()),
            ];
            *want_remaps.entry(labels).or_default() += *n as f64;
        }
    }
    let got_remaps: BTreeMap<Labels, f64> = delta
        .family(metrics::REMAP_CALLS.name)
        .into_iter()
        .filter(|(_, n)| *n != 0.0)
        .collect();
    rep.check(
        &format!("metrics/{name}/remaps"),
        got_remaps == want_remaps,
        &compare(&want_remaps, &got_remaps),
    );
    let mappings = delta.family(metrics::MAPPINGS.name);
    // (Plus zero: an empty sum of floats is -0.)
    let total: f64 = mappings.values().sum::<f64>() + 0.0;
    // Where pfnwatch can name the driver, every mapping names it.
    let driver = report.scenario.expect().driver;
    let by_driver = driver
        .map(|d| {
            delta
                .get(metrics::MAPPINGS.name, &[("driver", d)])
                .unwrap_or(0.0)
        })
        .unwrap_or(created);
    let by_driver_ok = by_driver == created;
    let gone: f64 = delta
        .family(metrics::MAPPINGS_REMOVED.name)
        .values()
        .sum::<f64>()
        + 0.0;
    rep.check(
        &format!("metrics/{name}/mappings"),
        total == created && by_driver_ok && gone == removed,
        &format!(
            "{total} pfn mappings created (want {created}, by driver {driver:?}), {gone} gone \
             (want {removed}); created by driver and device: {mappings:?}"
        ),
    );

    // Rule hits, and the records the kernel sent for them (no drops).
    let rules_want: BTreeMap<String, f64> = report
        .scenario
        .rules(kernel)
        .iter()
        .map(|(id, n)| (id.to_string(), *n as f64))
        .collect();
    let rules_got: BTreeMap<String, f64> = delta
        .family(metrics::ALERTS.name)
        .into_iter()
        .filter(|(_, n)| *n != 0.0)
        .map(|(labels, n)| (label(&labels, "rule").to_owned(), n))
        .collect();
    rep.check(
        &format!("metrics/{name}/alerts"),
        rules_got == rules_want,
        &format!("rule hits {rules_got:?}, want {rules_want:?}"),
    );
    let records = delta.get(metrics::RECORDS.name, &[]);
    let dropped = delta.get(metrics::DROPPED.name, &[]);
    let want_records = recorded(want);
    rep.check(
        &format!("metrics/{name}/records"),
        records == Some(want_records) && dropped == Some(0.0),
        &format!(
            "ring buffer records +{records:?} (want {want_records}: the calls a rule or the mapping inventory selects), dropped +{dropped:?}; scenario pid {}",
            report.tgid
        ),
    );
}

/// The records the kernel sends for `want` under the default rules: its
/// record mask is pfnwatch's policy (rules.rs), applied to the kernel's calls.
pub(super) fn recorded(want: &Tally) -> f64 {
    let rules = RuleSet::new(
        RuleConfig::default(),
        rules::Context {
            arch_pte_special: true,
        },
    );
    let mask = rules::record_mask(Selection::Rules, &rules);
    want.iter()
        .filter(|((hook, class), _)| mask.contains(*hook, *class))
        .map(|(_, n)| *n)
        .sum::<u64>() as f64
}

/// With kernel.bpf_stats_enabled, each program ran at least once per call
/// the kernel counted for its hook (it runs on every call, pfn mapping or
/// not); remap_pfn_range is called only by the scenarios, so its fexit ran
/// exactly as often as they called it.
fn program_runs(rep: &mut Reporter, all: &Scrape, want: &Tally) {
    let calls = |hook: Hook| -> f64 {
        want.iter()
            .filter(|((h, _), _)| *h == hook)
            .map(|(_, n)| *n)
            .sum::<u64>() as f64
    };
    let runs = |program: &str| all.get(metrics::PROGRAM_RUNS.name, &[("program", program)]);
    let seconds = all.get(
        metrics::PROGRAM_RUN_TIME.name,
        &[("program", "vm_normal_page_exit")],
    );
    let lookups = runs("vm_normal_page_exit");
    let remaps = runs("remap_pfn_range_exit");
    let ok = lookups.is_some_and(|n| n >= calls(Hook::VmNormalPage))
        && remaps == Some(calls(Hook::RemapPfnRange))
        && seconds.is_some_and(|s| s > 0.0);
    rep.check(
        "metrics/program-runs",
        ok,
        &format!(
            "vm_normal_page_exit ran +{lookups:?} (at least {} pfn-mapping calls) in {seconds:?} s; remap_pfn_range_exit +{remaps:?} (want {})",
            calls(Hook::VmNormalPage),
            calls(Hook::RemapPfnRange)
        ),
    );
}

/// SIGHUP with a new file: the listener moves, rules and log severity
/// change live, the ring buffer size waits for a restart, and no counter
/// starts over. Then a broken file: refused, the old configuration stays.
fn reload(
    rep: &mut Reporter,
    kernel: KernelVersion,
    daemon: &mut Daemon,
    last: &Scrape,
) -> Result<()> {
    write_config(&format!(
        "interval = 1\nalerts_file = \"{ALERTS}\"\nlog_severity = \"critical\"\n\n[web]\nlisten_address = \"127.0.0.1:{RELOAD_PORT}\"\n\n[kernel]\nringbuf_kib = 64\n\n[rules]\ndisable = [\"R1\"]\n"
    ))?;
    daemon.signal(libc::SIGHUP)?;
    // "configuration reloaded", then what waits for a restart.
    let log = daemon.wait_log("needs a restart")?;
    let restart_logged = log.iter().any(|l| l.contains("configuration reloaded"))
        && log
            .iter()
            .any(|l| l.contains("needs a restart") && l.contains("kernel.ringbuf_kib 256 -> 64"));
    let moved = scrape(RELOAD_PORT)?;
    let old_closed = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], PORT))).is_err();
    let kept = last
        .samples
        .iter()
        .filter(|((name, _), _)| name == metrics::HOOK_CALLS.name)
        .all(|(key, v)| moved.samples.get(key).is_some_and(|now| now >= v));
    let get = |name: &str, labels: &[(&str, &str)]| moved.get(name, labels);
    let ok = restart_logged
        && old_closed
        && kept
        && get(metrics::RELOADS.name, &[("result", "success")]) == Some(1.0)
        && get(metrics::RESTART_REQUIRED.name, &[]) == Some(1.0)
        && get(metrics::RINGBUF_SIZE.name, &[]) == Some(256.0 * 1024.0);
    rep.check(
        "metrics/reload",
        ok,
        &format!(
            "SIGHUP: now on :{RELOAD_PORT} (old port closed: {old_closed}); counters kept: {kept}; \
             ring buffer size still {:?} and a restart asked for (logged: {restart_logged}, gauge {:?}); reloads {:?}",
            get(metrics::RINGBUF_SIZE.name, &[]),
            get(metrics::RESTART_REQUIRED.name, &[]),
            get(metrics::RELOADS.name, &[("result", "success")]),
        ),
    );

    // R1 is off now: the COW remap is still counted, but no longer a hit.
    let report = trigger(Scenario::DevmemPrivate)?;
    let after = scrape(RELOAD_PORT)?;
    let delta = moved.delta(&after);
    let noise = vdso_noise(kernel);
    let want = labelled(&Scenario::DevmemPrivate.expected(kernel), &noise);
    let counted = hook_calls(&delta, &noise) == want;
    let r1 = delta.get(metrics::ALERTS.name, &[("rule", "R1")]);
    rep.check(
        "metrics/reload-rules",
        counted && r1 == Some(0.0),
        &format!("devmem-private (pid {}) after R1 was turned off: calls counted as before: {counted}; R1 hits +{r1:?}", report.tgid),
    );

    // A file with a typo: refused with its line, the running one kept.
    write_config("interval = 1\nintervall = 2\n")?;
    daemon.signal(libc::SIGHUP)?;
    let log = daemon.wait_log("configuration not reloaded")?;
    let named = log
        .iter()
        .any(|l| l.contains(&format!("{CONFIG}:2: intervall: unknown field")));
    let still = scrape(RELOAD_PORT)?;
    let ok = named
        && still.get(metrics::RELOADS.name, &[("result", "failure")]) == Some(1.0)
        && still.get(metrics::LAST_RELOAD_OK.name, &[]) == Some(0.0);
    rep.check(
        "metrics/reload-refused",
        ok,
        &format!(
            "a file with an unknown key: error names {CONFIG}:2 and the key: {named}; still serving on :{RELOAD_PORT} with reload failures {:?}, last reload successful {:?}",
            still.get(metrics::RELOADS.name, &[("result", "failure")]),
            still.get(metrics::LAST_RELOAD_OK.name, &[])
        ),
    );
    Ok(())
}

/// SIGTERM: a clean exit, the programs detached, every alert in the file,
/// the listener gone.
fn stop(rep: &mut Reporter, kernel: KernelVersion, daemon: Daemon) -> Result<()> {
    let (status, log) = match daemon.stop(libc::SIGTERM, LOG_WAIT) {
        Ok((status, log)) => (Some(status), log),
        Err(e) => (None, vec![format!("{e:#}")]),
    };
    let stopped = log
        .iter()
        .any(|l| l.contains("pfnwatch stopped") && l.contains("detached="));
    let closed = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], RELOAD_PORT))).is_err();
    // One R1 per COW scenario while R1 was on: none lost at the end.
    let want: u64 = Scenario::for_kernel(kernel)
        .flat_map(|s| s.rules(kernel))
        .filter(|(id, _)| *id == RuleId::R1)
        .map(|(_, n)| n)
        .sum();
    let written = std::fs::read_to_string(ALERTS)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"rule\":\"R1\""))
        .count() as u64;
    rep.check(
        "metrics/stop",
        status.is_some_and(|s| s.success()) && stopped && closed && written == want,
        &format!(
            "SIGTERM: exit {status:?}, programs detached and logged: {stopped}, listener closed: {closed}, R1 alerts in the file {written} (want {want})"
        ),
    );
    Ok(())
}

/// The vDSO's data page: every process that reads the clock maps it, and
/// exits unmap it, so its label sets grow with whatever runs (the trigger
/// itself, its children). expect.rs's `vdso` rows say which they are here.
pub(super) fn vdso_noise(kernel: KernelVersion) -> BTreeSet<Labels> {
    Scenario::Vdso
        .expected(kernel)
        .keys()
        .map(|(hook, class)| call_labels(*hook, *class))
        .collect()
}

fn yes(class: Class, bit: u16) -> &'static str {
    if class.has(bit) { "true" } else { "false" }
}

/// The remap outcome the README documents: an error, part of the vma, or all of it.
fn outcome(class: Class) -> &'static str {
    if class.has(ERROR) {
        "error"
    } else if class.has(PARTIAL) {
        "partial"
    } else {
        "whole"
    }
}

/// pfnwatch_hook_calls_total's labels for a call of `hook` in `class`, as
/// the README documents them (written here again, not taken from pfnwatch).
fn call_labels(hook: Hook, class: Class) -> Labels {
    let vma = match (class.has(PFNMAP), class.has(MIXEDMAP)) {
        (true, true) => "pfnmap+mixedmap",
        (true, false) => "pfnmap",
        (false, true) => "mixedmap",
        (false, false) => "none",
    };
    let result = if matches!(hook, Hook::PrintBadPte | Hook::PrintBadPageMap) {
        "reported"
    } else if matches!(hook, Hook::PerfEventMmap | Hook::CopyPageRange) {
        "created"
    } else if hook == Hook::VmAreaFree {
        "gone"
    } else if class.has(ERROR) {
        "error"
    } else if matches!(
        hook,
        Hook::RemapPfnRange
            | Hook::RemapPfnRangeComplete
            | Hook::RemapPfnRangePrepare
            | Hook::VmfInsertPfnProt
            | Hook::VmfInsertMixed
            | Hook::VmfInsertPfnPmd
            | Hook::VmfInsertPfnPud
            | Hook::VmInsertPage
            | Hook::VmInsertPages
            | Hook::VmfInsertPageMkwrite
            | Hook::VmfInsertFolioPmd
            | Hook::FollowPfnmapStart
            | Hook::FollowPhys
            | Hook::ApplyToPageRange
    ) {
        "ok"
    } else if class.has(NO_PAGE) {
        "no_page"
    } else if class.has(ANON) {
        "anon_page"
    } else {
        "page"
    };
    // Sorted by label name, as the scrape's are.
    vec![
        ("cow".to_owned(), yes(class, COW).to_owned()),
        ("hook".to_owned(), hook.function().to_owned()),
        ("pfn_match".to_owned(), yes(class, PFN_MATCH).to_owned()),
        ("result".to_owned(), result.to_owned()),
        ("special".to_owned(), yes(class, SPECIAL).to_owned()),
        ("vma".to_owned(), vma.to_owned()),
    ]
}

/// Expected calls by label set, the vDSO's label sets left out.
pub(super) fn labelled(want: &Tally, noise: &BTreeSet<Labels>) -> BTreeMap<Labels, f64> {
    let mut out = BTreeMap::new();
    for ((hook, class), n) in want {
        let labels = call_labels(*hook, *class);
        if !noise.contains(&labels) {
            *out.entry(labels).or_default() += *n as f64;
        }
    }
    out
}

/// The scrape's hook calls that grew, the vDSO's label sets left out.
pub(super) fn hook_calls(delta: &Scrape, noise: &BTreeSet<Labels>) -> BTreeMap<Labels, f64> {
    delta
        .family(metrics::HOOK_CALLS.name)
        .into_iter()
        .filter(|(labels, n)| *n != 0.0 && !noise.contains(labels))
        .collect()
}

fn compare(want: &BTreeMap<Labels, f64>, got: &BTreeMap<Labels, f64>) -> String {
    let show = |m: &BTreeMap<Labels, f64>| {
        if m.is_empty() {
            return "nothing".to_owned();
        }
        m.iter()
            .map(|(labels, n)| {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{{{}}} +{n}", l.join(","))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if want == got {
        show(got)
    } else {
        format!("want {}; got {}", show(want), show(got))
    }
}

fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// `ip link set lo up`, by ioctl: the kernel then gives lo 127.0.0.1.
pub(super) fn loopback_up() -> Result<()> {
    // SAFETY: a plain socket for the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket");
    }
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: fd is a socket and ifr a valid ifreq naming "lo"; the kernel
    // writes the flags into the union's ifru_flags.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            Err(std::io::Error::last_os_error()).context("SIOCGIFFLAGS lo")
        } else {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) < 0 {
                Err(std::io::Error::last_os_error()).context("SIOCSIFFLAGS lo")
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    result
}

/// A byte through a TCP connection on 127.0.0.1 and back: what a scrape
/// needs of lo.
fn loopback_echo() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut client = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect {addr}"))?;
    let (mut server, _) = listener.accept().context("accept")?;
    client.write_all(b"p")?;
    let mut byte = [0u8];
    server.read_exact(&mut byte)?;
    server.write_all(&byte)?;
    client.read_exact(&mut byte)?;
    anyhow::ensure!(byte == *b"p", "got {byte:?} back");
    Ok(addr)
}

fn write_config(text: &str) -> Result<()> {
    std::fs::write(CONFIG, text).with_context(|| format!("writing {CONFIG}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_documented_meaning_of_the_class_bits() {
        let dev = Class(PFNMAP | SPECIAL | PFN_MATCH | NO_PAGE);
        let l = call_labels(Hook::VmNormalPage, dev);
        assert_eq!(label(&l, "vma"), "pfnmap");
        assert_eq!(label(&l, "result"), "no_page");
        assert_eq!(label(&l, "pfn_match"), "true");
        assert_eq!(
            label(
                &call_labels(Hook::VmNormalPage, Class(PFNMAP | COW | ANON)),
                "result"
            ),
            "anon_page"
        );
        assert_eq!(
            label(
                &call_labels(Hook::RemapPfnRange, Class(PFNMAP | COW)),
                "result"
            ),
            "ok"
        );
        // On 6.x the vDSO's page and /dev/mem's differ only in pfn_match:
        // that label keeps the scenarios' calls apart from the noise.
        let noise = vdso_noise(KernelVersion(6, 12, crate::expect::Arch::X86_64));
        assert!(noise.contains(&call_labels(
            Hook::VmNormalPage,
            Class(PFNMAP | SPECIAL | NO_PAGE)
        )));
        assert!(!noise.contains(&l));
        let mut want = Tally::new();
        want.insert((Hook::VmNormalPage, dev), 4);
        want.insert((Hook::VmNormalPage, Class(PFNMAP | SPECIAL | NO_PAGE)), 1);
        assert_eq!(labelled(&want, &noise).values().sum::<f64>(), 4.0);
    }
}
