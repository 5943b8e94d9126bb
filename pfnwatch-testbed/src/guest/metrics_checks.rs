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
use super::trigger::run as trigger;
use super::watch::lines_of;
use crate::expect::{self, KernelVersion};
use crate::judge::Tally;
use crate::report::Report;
use crate::scenario::Scenario;
use anyhow::{Context, Result, bail};
use pfnwatch::rules::{self, RuleConfig, RuleId, RuleSet, Selection};
use pfnwatch::sinks::metrics;
use pfnwatch_common::class::{
    ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
};
use pfnwatch_common::{Class, Family, Hook};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const CONFIG: &str = "/tmp/pfnwatch-metrics.toml";
const ALERTS: &str = "/tmp/pfnwatch-metrics-alerts.jsonl";
const PORT: u16 = 19463;
/// Where the reload moves the listener.
const RELOAD_PORT: u16 = 19464;
const READY: Duration = Duration::from_secs(90);
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
    let mut daemon = Daemon::start()?;
    let outcome = scrape_scenarios(rep, kernel, &mut daemon, stats)
        .and_then(|last| reload(rep, kernel, &mut daemon, &last));
    if let Err(e) = &outcome {
        rep.fail("metrics/run", &format!("{e:#}"));
        rep.info(&daemon.log.join("\n"));
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
fn recorded(want: &Tally) -> f64 {
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
fn stop(rep: &mut Reporter, kernel: KernelVersion, mut daemon: Daemon) -> Result<()> {
    daemon.signal(libc::SIGTERM)?;
    let deadline = Instant::now() + LOG_WAIT;
    let status = loop {
        if let Some(status) = daemon.child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = daemon.child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = daemon.drain_log();
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
fn vdso_noise(kernel: KernelVersion) -> BTreeSet<Labels> {
    Scenario::Vdso
        .expected(kernel)
        .keys()
        .map(|(hook, class)| call_labels(*hook, *class))
        .collect()
}

type Labels = Vec<(String, String)>;

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
fn labelled(want: &Tally, noise: &BTreeSet<Labels>) -> BTreeMap<Labels, f64> {
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
fn hook_calls(delta: &Scrape, noise: &BTreeSet<Labels>) -> BTreeMap<Labels, f64> {
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

/// One `/metrics` body, parsed: (family, sorted labels) -> value.
#[derive(Clone, Debug, Default)]
struct Scrape {
    text: String,
    samples: BTreeMap<(String, Labels), f64>,
}

impl Scrape {
    fn parse(text: String) -> Result<Scrape> {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').context("a sample without a value")?;
            let value: f64 = value
                .parse()
                .with_context(|| format!("value of {line:?}"))?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (
                    name,
                    parse_labels(rest.strip_suffix('}').context("unclosed labels")?)?,
                ),
                None => (series, Vec::new()),
            };
            samples.insert((name.to_owned(), labels), value);
        }
        Ok(Scrape { text, samples })
    }

    /// `later - self` for every series of `later` (a new series counts from 0).
    fn delta(&self, later: &Scrape) -> Scrape {
        let samples = later
            .samples
            .iter()
            .map(|(key, v)| {
                (
                    key.clone(),
                    v - self.samples.get(key).copied().unwrap_or(0.0),
                )
            })
            .collect();
        Scrape {
            text: String::new(),
            samples,
        }
    }

    fn family(&self, name: &str) -> BTreeMap<Labels, f64> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), v)| (labels.clone(), *v))
            .collect()
    }

    /// The sum over the series of `name` that carry all of `labels`
    /// (None when there is no such series).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }
}

/// `a="x",b="y\"z"` -> sorted pairs (the text format's escapes undone).
fn parse_labels(text: &str) -> Result<Labels> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .with_context(|| format!("labels {text:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("labels {text:?} end in an escape"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => bail!("labels {text:?}: an unclosed value"),
            }
        };
        out.push((name.to_owned(), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    out.sort();
    Ok(out)
}

/// GET /metrics with a blocking socket; HTTP/1.0, so the server closes.
fn scrape(port: u16) -> Result<Scrape> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .with_context(|| format!("reading the reply from {addr}"))?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .context("a reply without headers")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET http://{addr}/metrics: {}",
            head.lines().next().unwrap_or("")
        );
    }
    if !head
        .to_ascii_lowercase()
        .contains("content-type: text/plain; version=0.0.4")
    {
        bail!("GET http://{addr}/metrics: not the text format: {head}");
    }
    Scrape::parse(body.to_owned())
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
    use std::io::{Read, Write};
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

/// `pfnwatch run --config CONFIG`, its log read on a thread.
struct Daemon {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Daemon {
    fn start() -> Result<Daemon> {
        let mut child = Command::new("/bin/pfnwatch")
            .args(["run", "--config", CONFIG])
            .stderr(Stdio::piped())
            .spawn()
            .context("starting pfnwatch run")?;
        let stderr = child.stderr.take().context("pfnwatch run's stderr")?;
        let mut daemon = Daemon {
            child,
            lines: lines_of(stderr),
            log: Vec::new(),
        };
        if let Err(e) = daemon.wait_log_for("pfnwatch running", READY) {
            let _ = daemon.child.kill();
            return Err(e);
        }
        Ok(daemon)
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        // SAFETY: signalling our own child.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, sig) } != 0 {
            return Err(std::io::Error::last_os_error()).context("signalling pfnwatch run");
        }
        Ok(())
    }

    /// The log lines so far, up to and including one that contains `text`.
    fn wait_log(&mut self, text: &str) -> Result<Vec<String>> {
        self.wait_log_for(text, LOG_WAIT)
    }

    fn wait_log_for(&mut self, text: &str, limit: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(text);
                    seen.push(line.clone());
                    self.log.push(line);
                    if done {
                        return Ok(seen);
                    }
                }
                Err(_) => bail!("pfnwatch run logged no {text:?}: {}", seen.join(" | ")),
            }
        }
    }

    /// What the log said since the last look, without waiting.
    fn drain_log(&mut self) -> Vec<String> {
        let new: Vec<String> = self.lines.try_iter().collect();
        self.log.extend(new.iter().cloned());
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let s = Scrape::parse(
            "# HELP a_total x\n# TYPE a_total counter\na_total{b=\"1\",a=\"q\\\"x\\\\\"} 3\nc 4.5\n".to_owned(),
        )
        .unwrap();
        assert_eq!(s.get("a_total", &[("a", "q\"x\\")]), Some(3.0));
        assert_eq!(s.get("a_total", &[("b", "1")]), Some(3.0));
        assert_eq!(s.get("c", &[]), Some(4.5));
        assert_eq!(s.get("a_total", &[("b", "2")]), None);
        let later =
            Scrape::parse("a_total{a=\"q\\\"x\\\\\",b=\"1\"} 5\nc 4.5\nd 1\n".to_owned()).unwrap();
        let d = s.delta(&later);
        assert_eq!(d.get("a_total", &[]), Some(2.0));
        assert_eq!(d.get("c", &[]), Some(0.0));
        assert_eq!(d.get("d", &[]), Some(1.0));
        assert!(Scrape::parse("x{a=\"1} 2\n".to_owned()).is_err());
    }

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
        let noise = vdso_noise(KernelVersion(6, 12));
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
