//! What a daemon on a production host must survive, in the VM: signals
//! leave no BPF object behind and a restart picks up; a program the kernel
//! refuses leaves the others working and the gap visible; a flood loses
//! detail records, counted, but never a call count or a critical alert; a
//! soak stays flat.

use super::Reporter;
use super::daemon::{Daemon, Scrape, scrape};
use super::metrics_checks::{hook_calls, labelled, recorded, vdso_noise};
use super::readings;
use super::trigger::run as trigger;
use crate::expect::KernelVersion;
use crate::judge::Tally;
use crate::report::Report;
use crate::scenario::Scenario;
use anyhow::{Context, Result, ensure};
use aya::programs::FExit;
use aya::{Btf, Ebpf, EbpfLoader};
use pfnwatch::pipeline::alert::Alert;
use pfnwatch::rules::{RuleId, Severity};
use pfnwatch::sinks::metrics;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Ports of their own, apart from the metrics checks' 19463 and 19464.
const SIGNAL_PORT: u16 = 19470;
const REFUSED_PORT: u16 = 19471;
const FLOOD_PORT: u16 = 19472;
const SOAK_PORT: u16 = 19473;
const STOP: Duration = Duration::from_secs(30);
/// The kernel frees a closed program's trampoline through RCU and a
/// workqueue: give it time.
pub(super) const FREED: Duration = Duration::from_secs(15);

pub fn run(rep: &mut Reporter, kernel: KernelVersion, soak_secs: u64) -> Result<()> {
    signals(rep, kernel)?;
    attach_failure(rep, kernel)?;
    flood(rep, kernel)?;
    soak(rep, soak_secs)
}

/// The BPF objects the kernel holds, by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Objects {
    pub(super) progs: BTreeSet<u32>,
    pub(super) links: BTreeSet<u32>,
    pub(super) maps: BTreeSet<u32>,
}

pub(super) fn objects() -> Result<Objects> {
    let links = aya::programs::loaded_links()
        .map(|l| l.map(|l| l.id()).context("listing the kernel's BPF links"))
        .collect::<Result<_>>()?;
    let maps = aya::maps::loaded_maps()
        .map(|m| m.map(|m| m.id()).context("listing the kernel's BPF maps"))
        .collect::<Result<_>>()?;
    Ok(Objects {
        progs: readings::loaded_ids()?,
        links,
        maps,
    })
}

/// Waits until the kernel holds exactly `before` again.
fn freed(before: &Objects) -> Result<Objects> {
    let deadline = Instant::now() + FREED;
    loop {
        let now = objects()?;
        if now == *before || Instant::now() > deadline {
            return Ok(now);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn listen(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// SIGTERM and SIGINT stop cleanly, SIGKILL abruptly; after each the
/// kernel holds no program, link or map of pfnwatch's. After the SIGKILL a
/// new daemon counts and alerts as if nothing had happened.
fn signals(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    let addr = listen(SIGNAL_PORT);
    for (name, sig) in [
        ("sigterm", libc::SIGTERM),
        ("sigint", libc::SIGINT),
        ("sigkill", libc::SIGKILL),
    ] {
        let before = objects()?;
        let daemon = Daemon::start(&["--web.listen-address", &addr])?;
        if sig == libc::SIGTERM {
            privileges(rep, &daemon)?;
        }
        let during = objects()?;
        let held = (
            during.progs.difference(&before.progs).count(),
            during.links.difference(&before.links).count(),
            during.maps.difference(&before.maps).count(),
        );
        let (status, log) = daemon.stop(sig, STOP)?;
        let after = freed(&before)?;
        let exited = if sig == libc::SIGKILL {
            status.signal() == Some(libc::SIGKILL)
        } else {
            status.success() && log.iter().any(|l| l.contains("pfnwatch stopped"))
        };
        let left = (
            after.progs.difference(&before.progs).count(),
            after.links.difference(&before.links).count(),
            after.maps.difference(&before.maps).count(),
        );
        rep.check(
            name,
            exited && held.0 > 0 && held.1 > 0 && left == (0, 0, 0),
            &format!(
                "pfnwatch run held {} programs, {} links, {} maps; {status} after the signal; \
                 left behind {} programs, {} links, {} maps",
                held.0, held.1, held.2, left.0, left.1, left.2
            ),
        );
    }

    // A restart after the SIGKILL: counts and alerts from a clean start.
    let before = objects()?;
    let daemon = Daemon::start(&["--web.listen-address", &addr])?;
    let outcome = counted_as_expected(kernel, SIGNAL_PORT, Scenario::DevmemPrivate);
    let (status, _) = daemon.stop(libc::SIGTERM, STOP)?;
    // The next checks count trampoline slots: let the kernel free these.
    freed(&before)?;
    let (ok, detail) = outcome?;
    rep.check(
        "restart",
        ok && status.success(),
        &format!("after the SIGKILL, a new pfnwatch run: {detail}; stopped {status}"),
    );
    Ok(())
}

/// CAP_SYSLOG, for reading /proc/kallsyms.
const CAP_SYSLOG: u32 = 34;

/// Once attached, the daemon (started as root here) keeps CAP_SYSLOG alone
/// and cannot gain more: no_new_privs. It still symbolises call paths.
fn privileges(rep: &mut Reporter, daemon: &Daemon) -> Result<()> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()))
        .context("reading pfnwatch run's status")?;
    let field = |name: &str| status_field(&status, name);
    let set = |name: &str| u64::from_str_radix(&field(name), 16).ok();
    let syslog_only = Some(1u64 << CAP_SYSLOG);
    let logged = daemon
        .log()
        .iter()
        .any(|l| l.contains("capabilities narrowed") && l.contains("CAP_SYSLOG"));
    // Capabilities are per thread: every other thread (the ring buffer
    // reader) holds no more than the main one.
    let threads = other_threads(daemon.pid())?;
    let threads_ok = threads.iter().any(|t| t.name == "pfnwatch-rings")
        && threads.iter().all(|t| {
            t.eff & !(1u64 << CAP_SYSLOG) == 0
                && t.prm & !(1u64 << CAP_SYSLOG) == 0
                && t.no_new_privs
        });
    let ok = set("CapEff:") == syslog_only
        && set("CapPrm:") == syslog_only
        && set("CapInh:") == Some(0)
        && set("CapAmb:") == Some(0)
        && field("NoNewPrivs:") == "1"
        && logged
        && threads_ok;
    rep.check(
        "privileges",
        ok,
        &format!(
            "pfnwatch run as root, attached: CapEff {} CapPrm {} CapInh {} CapAmb {} NoNewPrivs {} (want CAP_SYSLOG alone, no_new_privs); logged: {logged}; other threads {threads:?} (want at least the reader, none holding more)",
            field("CapEff:"),
            field("CapPrm:"),
            field("CapInh:"),
            field("CapAmb:"),
            field("NoNewPrivs:")
        ),
    );
    Ok(())
}

/// A field of a /proc status file ("CapEff:"), trimmed; empty if absent.
fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_default()
        .to_owned()
}

/// A thread's name and privileges.
#[derive(Debug)]
struct ThreadCaps {
    name: String,
    eff: u64,
    prm: u64,
    no_new_privs: bool,
}

/// Every thread of `pid` but the main one.
fn other_threads(pid: u32) -> Result<Vec<ThreadCaps>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).context("listing its threads")? {
        let entry = entry?;
        if entry.file_name().to_str() == Some(&pid.to_string()) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status"))?;
        let field = |name: &str| status_field(&status, name);
        let set = |name: &str| u64::from_str_radix(&field(name), 16).unwrap_or(u64::MAX);
        out.push(ThreadCaps {
            name: field("Name:"),
            eff: set("CapEff:"),
            prm: set("CapPrm:"),
            no_new_privs: field("NoNewPrivs:") == "1",
        });
    }
    Ok(out)
}

/// Runs `scenario` between two scrapes of the daemon on `port`: whether
/// its calls were counted exactly, and what was counted.
fn counted_as_expected(
    kernel: KernelVersion,
    port: u16,
    scenario: Scenario,
) -> Result<(bool, String)> {
    let before = scrape(port)?;
    let report = trigger(scenario)?;
    let after = scrape(port)?;
    let noise = vdso_noise(kernel);
    let got = hook_calls(&before.delta(&after), &noise);
    let want = labelled(&scenario.expected(kernel), &noise);
    Ok((
        got == want,
        format!(
            "{scenario} (tgid {}): {} label sets counted as expected: {}",
            report.tgid,
            want.len(),
            got == want
        ),
    ))
}

/// The most fentry/fexit programs one function can carry on x86-64
/// (BPF_MAX_TRAMP_LINKS in include/linux/bpf.h, 6.1, 6.12 and 7.2).
const TRAMP_LINKS: usize = 38;
/// A function every supported kernel has, whose loss pfnwatch survives
/// (no coverage gap: it is not a lookup or a remap).
pub(super) const OCCUPIED: &str = "vmf_insert_mixed";

/// Fills `function`'s trampoline with empty fexit programs, so the kernel
/// refuses the next one (E2BIG), as when other tracers hold it. Stops at
/// the kernel's first E2BIG: the slots another program holds count too.
pub(super) fn occupy(function: &str) -> Result<Vec<Ebpf>> {
    let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
    let name = pfnwatch_ebpf::BENCH_EMPTY_PROGRAM;
    let mut held = Vec::new();
    for i in 0..TRAMP_LINKS {
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(pfnwatch_ebpf::BENCH_OBJECT)
            .context("loading the bench object")?;
        let program: &mut FExit = ebpf
            .program_mut(name)
            .with_context(|| format!("the bench object has no {name}"))?
            .try_into()?;
        program
            .load(function, &btf)
            .with_context(|| format!("loading empty program {i} on {function}"))?;
        match program.attach() {
            Ok(_) => held.push(ebpf),
            Err(e) if pfnwatch::kernel::refusals::errno(&e) == Some(libc::E2BIG) => break,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("attaching empty program {i} to {function}"));
            }
        }
    }
    ensure!(!held.is_empty(), "{function}'s trampoline was full already");
    Ok(held)
}

/// One program refused by the kernel: `check` says which and why and exits
/// non-zero; `run` starts, logs it, exports the gap, and counts the rest.
fn attach_failure(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    let held = occupy(OCCUPIED)?;
    let occupied = held.len();
    let program = format!("{OCCUPIED}_exit");

    let out = Command::new("/bin/pfnwatch")
        .args(["check", "--format", "json"])
        .output()
        .context("running pfnwatch check")?;
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("pfnwatch check --format json")?;
    let refused: Vec<(String, Option<i64>, String)> = json["programs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|p| p["state"] == "refused")
        .map(|p| {
            (
                p["program"].as_str().unwrap_or_default().to_owned(),
                p["errno"].as_i64(),
                p["hint"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let check_ok = !out.status.success()
        && refused.len() == 1
        && refused[0].0 == program
        && refused[0].1 == Some(i64::from(libc::E2BIG))
        && refused[0].2.contains("38");

    let addr = listen(REFUSED_PORT);
    let daemon = Daemon::start(&["--web.listen-address", &addr])?;
    let logged = daemon
        .log()
        .iter()
        .any(|l| l.contains("not attached") && l.contains(&program));
    let scraped = scrape(REFUSED_PORT);
    let counted = counted_as_expected(kernel, REFUSED_PORT, Scenario::DevmemPrivate);
    let (status, _) = daemon.stop(libc::SIGTERM, STOP)?;
    drop(held);
    let s = scraped?;
    let (counted, detail) = counted?;
    let attached = |hook: &str| s.get(metrics::HOOK_ATTACHED.name, &[("hook", hook)]);
    let gap_ok =
        attached(OCCUPIED) == Some(0.0) && attached("vm_normal_page") == Some(1.0) && logged;
    rep.check(
        "attach-failure",
        check_ok && gap_ok && counted && status.success(),
        &format!(
            "{OCCUPIED} carrying {occupied} other programs (the kernel's limit): check exited {} \
             refusing {refused:?}; \
             run logged it: {logged}, pfnwatch_hook_attached {OCCUPIED} {:?}, vm_normal_page {:?}; \
             {detail}",
            out.status,
            attached(OCCUPIED),
            attached("vm_normal_page"),
        ),
    );
    Ok(())
}

/// Flood iterations of mod-insert-mixed: 6 records each (4 R4 inserts, the
/// vma made and gone), far more than the flood's ring buffer holds.
const FLOOD_RUNS: u64 = 300;
/// The flood's shared ring buffer, small so that it overflows for certain.
const FLOOD_RING_KIB: &str = "16";
/// How long the daemon is stopped as the flood starts: many ring buffers'
/// worth of records come meanwhile.
const FLOOD_STALL: Duration = Duration::from_millis(500);

/// A bad driver faulting in a loop, the daemon stalled as it starts, while
/// another driver breaks critical rules: /metrics keeps answering, every call is counted, every record is either
/// received or counted dropped, and the critical alerts all arrive (their
/// records have a ring buffer of their own).
fn flood(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    let alerts_file = "/tmp/flood-alerts.jsonl";
    let addr = listen(FLOOD_PORT);
    let daemon = Daemon::start(&[
        "--web.listen-address",
        &addr,
        "--ringbuf-kib",
        FLOOD_RING_KIB,
        "--alerts-file",
        alerts_file,
    ])?;
    let started = Instant::now();
    let outcome = flood_with(&daemon);
    let took = started.elapsed();
    let (status, _) = daemon.stop(libc::SIGTERM, STOP)?;
    let (flooder, critical, before, during, after) = outcome?;
    let alerts: Vec<Alert> = std::fs::read_to_string(alerts_file)
        .unwrap_or_default()
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("reading the flood's alerts file")?;

    let mut want = Tally::new();
    for (key, n) in Scenario::ModInsertMixed.expected(kernel) {
        *want.entry(key).or_default() += n * FLOOD_RUNS;
    }
    for (key, n) in Scenario::ModNormalPfnmap.expected(kernel) {
        *want.entry(key).or_default() += n;
    }
    let noise = vdso_noise(kernel);
    let delta = before.delta(&after);
    let counted = hook_calls(&delta, &noise) == labelled(&want, &noise);
    let get = |name: &str| delta.get(name, &[]).unwrap_or(-1.0);
    let (records, dropped, urgent) = (
        get(metrics::RECORDS.name),
        get(metrics::DROPPED.name),
        get(metrics::URGENT_DROPPED.name),
    );
    let sent = recorded(&want);
    // Every critical hit of the critical scenario (its fork's child too)
    // reached the alerts file.
    let mut criticals = BTreeMap::<RuleId, u64>::new();
    for a in alerts
        .iter()
        .filter(|a| critical.pids().any(|p| p == a.tgid) && a.severity == Severity::Critical)
    {
        *criticals.entry(a.rule).or_default() += a.count;
    }
    let want_criticals: BTreeMap<RuleId, u64> = Scenario::ModNormalPfnmap
        .alerts(kernel)
        .iter()
        .filter(|a| a.severity == Severity::Critical)
        .map(|a| (a.rule, a.count))
        .collect();
    let ok = status.success()
        && during.is_some()
        && counted
        && dropped > 0.0
        && records + dropped == sent
        && urgent == 0.0
        && criticals == want_criticals;
    rep.check(
        "flood",
        ok,
        &format!(
            "{FLOOD_RUNS} runs of mod-insert-mixed (tgid {}) in {:.1} s with a {FLOOD_RING_KIB} \
             KiB ring buffer, mod-normal-pfnmap (tgid {}) in the middle: /metrics answered in \
             {during:?}; calls counted exactly: {counted}; records received {records} + dropped \
             {dropped} = {} (sent {sent}); urgent dropped {urgent}; critical alerts {criticals:?} \
             (want {want_criticals:?}); pfnwatch stopped {status}",
            flooder.tgid,
            took.as_secs_f64(),
            critical.tgid,
            records + dropped,
        ),
    );
    Ok(())
}

/// The flood itself, between scrapes: the flooder's and the critical
/// scenario's reports, the scrapes, and how long the scrape during the
/// flood took (None: it failed).
fn flood_with(daemon: &Daemon) -> Result<(Report, Report, Scrape, Option<Duration>, Scrape)> {
    let before = scrape(FLOOD_PORT)?;
    // A consumer that stalls (starved of CPU, stopped) as the flood starts:
    // the rings overflow for certain, whatever the reader's speed and
    // however soon the flood is over, and the kernel counts it.
    daemon.signal(libc::SIGSTOP)?;
    let flooder = Command::new("/bin/pfnwatch-scenario")
        .args([
            "--repeat",
            &FLOOD_RUNS.to_string(),
            Scenario::ModInsertMixed.name(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the flood");
    if flooder.is_ok() {
        std::thread::sleep(FLOOD_STALL);
    }
    daemon.signal(libc::SIGCONT)?;
    let flooder = flooder?;
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let during = scrape(FLOOD_PORT).ok().map(|_| started.elapsed());
    let critical = trigger(Scenario::ModNormalPfnmap)?;
    let out = flooder
        .wait_with_output()
        .context("waiting for the flood")?;
    ensure!(
        out.status.success(),
        "the flood failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let flooded: Report =
        serde_json::from_slice(&out.stdout).context("the flood printed no report")?;
    // The last records and the counters' next read.
    std::thread::sleep(Duration::from_secs(2));
    let after = scrape(FLOOD_PORT)?;
    Ok((flooded, critical, before, during, after))
}

/// What the soak samples of the daemon.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rss_kib: u64,
    fds: usize,
    map_bytes: u64,
}

fn sample(pid: u32) -> Result<Sample> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count();
    let (maps, _) = readings::bpf_objects(pid)?;
    Ok(Sample {
        rss_kib: readings::rss(pid)?.vm_rss_kib,
        fds,
        map_bytes: maps.iter().map(|m| m.memlock).sum(),
    })
}

/// Scenarios the soak cycles through: remaps, lookups, inserts, forks,
/// every kind of alert and of inventory record.
const SOAK_MIX: [Scenario; 6] = [
    Scenario::DevmemPrivate,
    Scenario::PcibarShared,
    Scenario::ModInsertMixed,
    Scenario::ModPgoff,
    Scenario::ModNormalPfnmap,
    Scenario::BpfRingbuf,
];
/// `pfnwatch_pfn_mappings` summed over its label sets.
fn live_mappings(s: &Scrape) -> f64 {
    s.family(metrics::MAPPINGS_LIVE.name).values().sum()
}

/// The mappings that grew most, from smaps read at two moments.
fn grown(from: &Option<BTreeMap<String, u64>>, to: &Option<BTreeMap<String, u64>>) -> String {
    match (from, to) {
        (Some(from), Some(to)) => readings::grown(from, to, 4).join(", "),
        _ => "(smaps unreadable)".into(),
    }
}

/// How long an inventory heal may take: the cooldown between two pairs of
/// walks (`kernel::lookups`), the spacing within one, a check, and room.
const SOAK_HEAL_BOUND: Duration = Duration::from_secs(15);

/// Samples the soak takes (besides the first and the last).
const SOAK_SAMPLES: usize = 12;
/// RSS may grow this much after the warm-up (allocator noise), no more.
const SOAK_RSS_SLACK_KIB: u64 = 1024;
/// Fds open for a moment when a sample is taken (a scrape being served, a
/// file being read): more would be a leak.
const SOAK_FD_SLACK: usize = 2;

/// `soak_secs` of mixed scenarios under `pfnwatch run`: after a warm-up
/// third, the daemon's RSS and fds stay within a slack and its map memory
/// does not change.
fn soak(rep: &mut Reporter, soak_secs: u64) -> Result<()> {
    let addr = listen(SOAK_PORT);
    let daemon = Daemon::start(&["--web.listen-address", &addr])?;
    let pid = daemon.pid();
    let deadline = Instant::now() + Duration::from_secs(soak_secs);
    let every = Duration::from_secs((soak_secs / SOAK_SAMPLES as u64).max(1));
    let mut samples = vec![sample(pid)?];
    let mut live = vec![live_mappings(&scrape(SOAK_PORT)?)];
    // Where memory grows, for the report: the mappings at the start and
    // after the warm-up against the end.
    let start_maps = readings::smaps_rss(pid).ok();
    let mut warm_maps = None;
    let mut next = Instant::now() + every;
    let mut runs = 0u64;
    // (frees unseen, frees the kernel skipped) at the end.
    let mut heals = (f64::NAN, f64::NAN);
    // (records dropped, vmas in the kernel's inventory) at the end.
    let mut kernel_side = (f64::NAN, 0usize);
    let outcome: Result<()> = (|| {
        while Instant::now() < deadline {
            trigger(SOAK_MIX[runs as usize % SOAK_MIX.len()])?;
            runs += 1;
            if Instant::now() >= next {
                live.push(live_mappings(&scrape(SOAK_PORT)?));
                samples.push(sample(pid)?);
                if samples.len() == SOAK_SAMPLES / 3 + 1 {
                    warm_maps = readings::smaps_rss(pid).ok();
                }
                next += every;
            }
        }
        // A free the kernel skipped (a task preempted in its program, as
        // 7.x's PREEMPT_LAZY allows) is healed by two walks, the first up to
        // a cooldown after the previous pair: wait that long for the
        // inventory to settle to what the warm-up left.
        let warm_live = live.get((samples.len() + 1) / 3).copied();
        let settle = Instant::now() + SOAK_HEAL_BOUND;
        loop {
            let s = scrape(SOAK_PORT)?;
            let now = live_mappings(&s);
            if Some(now) == warm_live || Instant::now() >= settle {
                live.push(now);
                heals = (
                    s.get("pfnwatch_inventory_frees_unseen_total", &[])
                        .unwrap_or(f64::NAN),
                    s.get("pfnwatch_program_misses_total", &[("hook", "vm_area_free")])
                        .unwrap_or(0.0),
                );
                kernel_side = (
                    s.get("pfnwatch_ringbuf_records_dropped_total", &[])
                        .unwrap_or(f64::NAN),
                    super::lookups::inventory()
                        .map(|m| m.keys().count())
                        .unwrap_or(usize::MAX),
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        samples.push(sample(pid)?);
        Ok(())
    })();
    let end_maps = readings::smaps_rss(pid).ok();
    let (status, log) = daemon.stop(libc::SIGTERM, STOP)?;
    outcome?;
    let warm = samples.len() / 3;
    let base = samples[warm];
    let later = &samples[warm..];
    let grew = later
        .iter()
        .map(|s| s.rss_kib.saturating_sub(base.rss_kib))
        .max()
        .unwrap_or(0);
    // Every scenario's process is gone at each sample: the inventory is
    // back to what the warm-up left, or it leaks.
    let (live_warm, live_end) = (
        live.get(warm).copied().unwrap_or(f64::NAN),
        live.last().copied().unwrap_or(f64::NAN),
    );
    // A vma the sweep dropped is one whose free the kernel skipped: more
    // would be live vmas a walk failed to find.
    let (unseen, free_misses) = heals;
    let flat = grew <= SOAK_RSS_SLACK_KIB
        && live_end == live_warm
        && unseen <= free_misses
        && later
            .iter()
            .all(|s| s.fds <= base.fds + SOAK_FD_SLACK && s.map_bytes == base.map_bytes);
    let shown: Vec<String> = samples
        .iter()
        .map(|s| format!("{}k/{}fd/{}B", s.rss_kib, s.fds, s.map_bytes))
        .collect();
    rep.check(
        "soak",
        flat && samples.len() >= 4 && status.success(),
        &format!(
            "{soak_secs} s, {runs} scenario runs: RSS grew {grew} KiB after the warm-up (at most \
             {SOAK_RSS_SLACK_KIB}), fds at most {SOAK_FD_SLACK} above it; live pfn mappings \
             {live_warm} after the warm-up, {live_end} at the end (want the same), {:?} in all; \
             frees found unseen {unseen} (at most the {free_misses} the kernel skipped); \
             records dropped {}, vmas in the kernel's inventory {}; \
             samples (RSS/fds/map memory) {}; grew in {} after the warm-up, in {} from the start; \
             errors, symbol rereads and inventory heals logged {:?}",
            live,
            kernel_side.0,
            kernel_side.1,
            shown.join(" "),
            grown(&warm_maps, &end_maps),
            grown(&start_maps, &end_maps),
            log.iter()
                .filter(|l| ["ERROR", "symbols read again", "skipped calls"]
                    .iter()
                    .any(|w| l.contains(w)))
                .take(6)
                .collect::<Vec<_>>(),
        ),
    );
    Ok(())
}
