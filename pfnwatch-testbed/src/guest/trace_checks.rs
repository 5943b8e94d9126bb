//! `pfnwatch trace --json`, its filters and `pfnwatch record`, in the VM.
//!
//! What the records must say comes from the scenarios' parameters
//! (scenario.rs), the kernels' code (expect.rs) and the kernel rules, never
//! from pfnwatch's own output. The capture and the live output then go to
//! the host as FILE lines, where xtask replays the capture with the host's
//! pfnwatch and compares.

use super::Reporter;
use super::trigger::run as trigger;
use super::watch::Watch;
use crate::expect::{self, KernelVersion};
use crate::judge::{self, Tally};
use crate::report::{Mapping, Report};
use crate::scenario::Scenario;
use crate::scenario::{DEVMEM_OFFSET, PAGES, WRITTEN};
use anyhow::{Context, Result};
use pfnwatch::kernel::counters::Counts;
use pfnwatch::kernel::decode::Record;
use pfnwatch::kernel::loader::ProgramState;
use pfnwatch::rules::{RuleId, Severity};
use pfnwatch::views::line::{Line, RecordView, Source};
use pfnwatch::views::summary::Summary;
use pfnwatch_common::{Class, Family, Hook, class};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const READY: Duration = Duration::from_secs(90);
const STOP: Duration = Duration::from_secs(60);
/// The kernel keeps 15 bytes of "pfnwatch-scenario".
const COMM: &str = "pfnwatch-scenar";
/// /dev/mem is character device 1:1, driver "mem" in /proc/devices.
const DEVMEM_DEV: &str = "1:1";
const PAGE: u64 = 4096;
/// remap_pfn_range_notrack sets VM_IO | VM_PFNMAP | VM_DONTEXPAND |
/// VM_DONTDUMP (7.x: remap_pfn_range_prepare, the same on the desc); the
/// scenario maps PROT_READ|PROT_WRITE, MAP_PRIVATE: VM_READ, VM_WRITE,
/// VM_MAYWRITE and no VM_SHARED. In bit order, as trace names them.
const COW_DEVMEM_FLAGS: [&str; 7] = [
    "VM_READ",
    "VM_WRITE",
    "VM_MAYWRITE",
    "VM_PFNMAP",
    "VM_IO",
    "VM_DONTEXPAND",
    "VM_DONTDUMP",
];

pub fn run(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    field_by_field(rep, kernel)?;
    hook_and_count(rep, kernel)?;
    rule_and_duration(rep, kernel)?;
    pid_in_kernel(rep, kernel)?;
    record(rep, kernel)
}

/// `trace --json --all --stack --comm --device 1:1` around devmem-private
/// and pcibar-shared, stopped by SIGINT: exactly devmem-private's records,
/// every field as the kernel's code makes it; the BAR's cut by --device.
fn field_by_field(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    let (watch, _) = Watch::start(
        &[
            "trace", "--json", "--all", "--stack", "--comm", COMM, "--device", DEVMEM_DEV,
        ],
        READY,
    )?;
    let private = trigger(Scenario::DevmemPrivate)?;
    let bar = trigger(Scenario::PcibarShared)?;
    let (status, lines) = watch.collect(Some(libc::SIGINT), STOP)?;
    let out = Output::of(&lines);
    let map = &private.mappings[0];

    let mut wrong = Vec::new();
    for (r, rules, view) in &out.records {
        if !private.pids().any(|p| p == r.tgid) || (r.vm_start, r.vm_end) != (map.start, map.end) {
            wrong.push(format!(
                "not devmem-private's: {}[{}] {} vma {:#x}",
                r.comm, r.tgid, r.hook, r.vm_start
            ));
            continue;
        }
        wrong.extend(
            record_problems(kernel, &private, map, r, rules, view)
                .into_iter()
                .map(|p| format!("{} {} at {:#x}: {p}", r.hook, r.class, r.addr)),
        );
    }
    // Each vma the inventory saw created (the parent's; the child's, in the
    // parent while it forks) goes away under the same id.
    let ids = |family: Family| -> Vec<u64> {
        let mut ids: Vec<u64> = out
            .records
            .iter()
            .filter(|(r, _, _)| r.hook.family() == family)
            .map(|(r, _, _)| r.vma_id)
            .collect();
        ids.sort_unstable();
        ids
    };
    let (created, gone) = (ids(Family::VmaCreated), ids(Family::VmaGone));
    if created != gone || created.windows(2).any(|w| w[0] == w[1]) {
        wrong.push(format!("vma ids created {created:?}, gone {gone:?}"));
    }
    let got = judge::tally(out.records.iter().map(|(r, _, _)| *r));
    let want = Scenario::DevmemPrivate.expected(kernel);
    if got != want {
        wrong.push(format!(
            "records {}, expected {}",
            judge::describe(&got),
            judge::describe(&want)
        ));
    }
    rep.check(
        "trace/fields",
        wrong.is_empty() && !out.records.is_empty(),
        &format!(
            "{} records of devmem-private checked field by field{}",
            out.records.len(),
            problems(&wrong)
        ),
    );

    // The BAR and the trigger's other vmas (its vDSO) reach user space
    // (--all) and are cut there: --device has no kernel side.
    let bar_calls: u64 = Scenario::PcibarShared.expected(kernel).values().sum();
    let bar_shown = out
        .records
        .iter()
        .filter(|(r, _, _)| r.tgid == bar.tgid)
        .count();
    let filtered = out.summary.as_ref().map_or(0, |s| s.filtered);
    rep.check(
        "trace/device-filter",
        bar_shown == 0 && filtered >= bar_calls,
        &format!(
            "pcibar-shared: {bar_shown} records shown, {filtered} filtered out in all \
             (its {bar_calls} calls at least)"
        ),
    );

    let r1 = Scenario::DevmemPrivate.rules(kernel);
    let alerts: Vec<_> = out
        .alerts
        .iter()
        .map(|a| (a.rule, a.tgid, a.device.as_deref(), a.driver.as_deref()))
        .collect();
    let want_alerts: Vec<_> = r1
        .iter()
        .map(|(id, _)| (*id, private.tgid, Some(DEVMEM_DEV), Some("mem")))
        .collect();
    rep.check(
        "trace/alerts",
        alerts == want_alerts,
        &format!("alert lines {alerts:?}, expected {want_alerts:?}"),
    );

    let summary_ok = out.summary.as_ref().is_some_and(|s| {
        s.records == out.records.len() as u64
            && hooks_classes(s) == want
            && s.rules == r1.iter().copied().collect::<BTreeMap<RuleId, u64>>()
            && s.lost == 0
            && s.alerts.len() == r1.len()
    });
    rep.check(
        "trace/sigint",
        status.success() && out.ends_with_counts_and_summary() && summary_ok,
        &format!(
            "SIGINT: exit {status}, last lines {}, summary {}",
            out.tail(),
            out.summary_json()
        ),
    );
    Ok(())
}

/// What is wrong with one of devmem-private's records.
fn record_problems(
    kernel: KernelVersion,
    report: &Report,
    map: &Mapping,
    r: &Record,
    rules: &[RuleId],
    v: &RecordView,
) -> Vec<String> {
    let mut p = Vec::new();
    let mut want = |ok: bool, what: String| {
        if !ok {
            p.push(what);
        }
    };
    let pgoff = DEVMEM_OFFSET / PAGE;
    let page = r.addr.wrapping_sub(map.start) / PAGE;
    want(r.comm == COMM, format!("comm {:?}", r.comm));
    want(r.pid == r.tgid, format!("pid {} in tgid {}", r.pid, r.tgid));
    want(
        (report.start_ns..=report.end_ns).contains(&r.ts_ns),
        format!("ts_ns {} outside the scenario", r.ts_ns),
    );
    want(
        time_matches(&v.time, r.ts_ns),
        format!("time {:?} is not ts_ns on the wall clock", v.time),
    );
    want(
        v.vm_flags_names == COW_DEVMEM_FLAGS,
        format!("vm_flags_names {:?}", v.vm_flags_names),
    );
    want(r.vm_pgoff == pgoff, format!("vm_pgoff {:#x}", r.vm_pgoff));
    want(
        page < PAGES as u64,
        format!("addr {:#x} outside the vma", r.addr),
    );
    want(
        v.expected_pfn == pgoff + page,
        format!("expected_pfn {:#x}", v.expected_pfn),
    );
    // Only remap_pfn_range has an fentry to see vm_pgoff before.
    let before = (r.hook == Hook::RemapPfnRange).then_some(pgoff);
    want(
        r.pgoff_before == before,
        format!("pgoff_before {:?}", r.pgoff_before),
    );
    let file_ok = r
        .file
        .as_ref()
        .is_some_and(|f| f.name == "mem" && f.parent == "/" && f.rdev.to_string() == DEVMEM_DEV);
    want(file_ok, format!("file {:?}", r.file));
    want(
        v.device.as_deref() == Some(DEVMEM_DEV) && v.host.driver.as_deref() == Some("mem"),
        format!("device {:?} driver {:?}", v.device, v.host.driver),
    );
    // The call path starts at the hook's caller: pfnwatch's own program
    // and trampoline frames, and the hooked function's, are cut. It is
    // given by symbol; no kernel address (a KASLR secret) leaves pfnwatch.
    want(
        !v.host.stack.is_empty()
            && r.stack.is_empty()
            && r.fault_fn == 0
            && r.file.as_ref().is_none_or(|f| f.mmap_fn == 0)
            && !v.host.stack[0].starts_with("bpf_")
            && !v.host.stack[0].starts_with(&format!("{}+", r.hook.function())),
        format!(
            "{} frames, {} raw addresses, from {:?}",
            v.host.stack.len(),
            r.stack.len(),
            v.host.stack.first()
        ),
    );
    let family = r.hook.family();
    if matches!(family, Family::VmaCreated | Family::VmaGone) {
        // The inventory: the whole vma, once, no pfn and no rule.
        want(
            r.addr == map.start && r.size == PAGES as u64 * PAGE && r.pfn.is_none(),
            format!("vma record of {:#x} bytes, pfn {:?}", r.size, r.pfn),
        );
        want(r.vma_id != 0, "no vma id".to_owned());
        want(
            r.fork == (r.hook == Hook::CopyPageRange),
            format!("fork {} on {}", r.fork, r.hook),
        );
        want(
            rules.is_empty() && v.hits.is_empty(),
            format!("rules {rules:?} on the inventory"),
        );
    } else if family == Family::Follow {
        // PAT's lookup of page 0 (6.1 follow_phys, 6.12 follow_pfnmap_start):
        // the device pte, special, on the rule.
        want(
            page == 0 && r.pfn == Some(pgoff) && r.class.has(class::SPECIAL | class::PFN_MATCH),
            format!(
                "pfn lookup of page {page}: pfn {:?} class {}",
                r.pfn, r.class
            ),
        );
        want(rules.is_empty(), format!("rules {rules:?} on a pfn lookup"));
    } else if r.hook == Hook::RemapPfnRangePrepare {
        // 7.2's check of the remap before the vma exists: the whole vma,
        // accepted; the mapping itself is remap_pfn_range_complete's.
        want(
            r.addr == map.start && r.size == PAGES as u64 * PAGE && r.ret == 0,
            format!("prepare of {:#x} bytes, ret {}", r.size, r.ret),
        );
        want(rules.is_empty(), format!("rules {rules:?} on a prepare"));
    } else if family.maps_pfns() {
        want(
            r.addr == map.start && r.pfn == Some(pgoff) && r.size == PAGES as u64 * PAGE,
            format!("remap of {:#x} bytes at pfn {:?}", r.size, r.pfn),
        );
        want(r.ret == 0, format!("ret {}", r.ret));
        let caller = Scenario::DevmemPrivate
            .remap_caller(kernel)
            .unwrap_or_default();
        want(
            v.host.stack.iter().any(|f| f.starts_with(caller)),
            format!("call path without {caller}: {:?}", v.host.stack),
        );
        let hits: Vec<(&str, &str, Severity)> = v
            .hits
            .iter()
            .map(|h| (h.rule.as_str(), h.name.as_str(), h.severity))
            .collect();
        want(
            rules == [RuleId::R1]
                && v.severity == Some(Severity::Info)
                && hits == [("R1", "cow_pfnmap_mapping", Severity::Info)],
            format!("rules {rules:?} severity {:?} hits {hits:?}", v.severity),
        );
    } else {
        want(
            rules.is_empty() && v.severity.is_none() && v.hits.is_empty(),
            format!("rules {rules:?} on a lookup"),
        );
        if r.class.has(class::ANON) {
            // A COW copy: the page the scenario wrote, off the remap rule.
            want(page == WRITTEN as u64, format!("a copy of page {page}"));
            want(
                r.pfn.is_some_and(|pfn| pfn != pgoff + page) && r.ret == 1,
                format!("copy pfn {:?} ret {}", r.pfn, r.ret),
            );
        } else {
            // A device pte: special, on the rule, no page.
            want(
                r.class.has(class::SPECIAL) && r.pfn == Some(pgoff + page) && r.ret == 0,
                format!("device pte pfn {:?} ret {}", r.pfn, r.ret),
            );
        }
    }
    p
}

/// `trace --hook <remap hooks> --count 1`: only those programs load, the
/// others are skipped (or missing where the kernel lacks them), and trace
/// stops by itself after devmem-shared's remap.
fn hook_and_count(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    let remaps: Vec<Hook> = [Hook::RemapPfnRange, Hook::RemapPfnRangeComplete]
        .into_iter()
        .filter(|h| expect::hook_present(kernel, *h))
        .collect();
    let list: Vec<&str> = remaps.iter().map(|h| h.function()).collect();
    let list = list.join(",");
    let (watch, ready) = Watch::start(
        &[
            "trace",
            "--json",
            "--hook",
            &list,
            "--count",
            "1",
            "--duration",
            "120s",
        ],
        READY,
    )?;
    let mut states = Vec::new();
    let mut programs_ok = true;
    if let Line::Ready { programs, .. } = &ready {
        for p in programs {
            let want = match p.hook {
                h if remaps.contains(&h) => ProgramState::Attached,
                _ if expect::program_present(kernel, &p.program) => ProgramState::Skipped,
                _ => ProgramState::Missing,
            };
            programs_ok &= p.state == want;
            states.push(format!("{} {:?}", p.program, p.state));
        }
    }
    rep.check(
        "trace/hook-programs",
        programs_ok && !states.is_empty(),
        &format!("--hook {list}: {}", states.join(", ")),
    );
    let shared = trigger(Scenario::DevmemShared)?;
    let started = Instant::now();
    let (status, lines) = watch.collect(None, STOP)?;
    let out = Output::of(&lines);
    let want: Vec<(Hook, Class)> = Scenario::DevmemShared
        .expected(kernel)
        .into_keys()
        .filter(|(h, _)| remaps.contains(h))
        .collect();
    let got: Vec<(Hook, Class, u32)> = out
        .records
        .iter()
        .map(|(r, _, _)| (r.hook, r.class, r.tgid))
        .collect();
    let ok = status.success()
        && got.len() == 1
        && want.len() == 1
        && (got[0].0, got[0].1) == want[0]
        && got[0].2 == shared.tgid
        && out.summary.as_ref().is_some_and(|s| s.records == 1);
    rep.check(
        "trace/count",
        ok,
        &format!(
            "--count 1: exit {status} {:.1} s after the scenario, by itself; records {got:?}, \
             expected {want:?} of tgid {}",
            started.elapsed().as_secs_f64(),
            shared.tgid
        ),
    );
    Ok(())
}

/// How long trace --duration runs in the next check.
const DURATION: Duration = Duration::from_secs(5);

/// `trace --rule R1 --duration`: only the COW remap; devmem-shared's remap
/// matches no rule and the record mask keeps it in the kernel (counted,
/// never sent); trace stops by itself.
fn rule_and_duration(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    let secs = format!("{}s", DURATION.as_secs());
    let started = Instant::now();
    let (watch, _) = Watch::start(
        &["trace", "--json", "--rule", "R1", "--duration", &secs],
        READY,
    )?;
    let shared = trigger(Scenario::DevmemShared)?;
    let private = trigger(Scenario::DevmemPrivate)?;
    let (status, lines) = watch.collect(None, STOP)?;
    let ran = started.elapsed();
    let out = Output::of(&lines);
    let got: Vec<(RuleId, u32)> = out
        .records
        .iter()
        .flat_map(|(r, rules, _)| rules.iter().map(move |id| (*id, r.tgid)))
        .collect();
    let want: Vec<(RuleId, u32)> = Scenario::DevmemPrivate
        .rules(kernel)
        .iter()
        .flat_map(|(id, n)| std::iter::repeat_n((*id, private.tgid), *n as usize))
        .collect();
    let filtered = out.summary.as_ref().map_or(u64::MAX, |s| s.filtered);
    // The kernel counted devmem-shared's remap (it counts every call).
    let remap = Scenario::DevmemShared
        .expected(kernel)
        .into_keys()
        .find(|(h, _)| h.family().maps_pfns());
    let counted = match (&out.counts, remap) {
        (Some(c), Some((h, cls))) => c.get(h, cls),
        _ => 0,
    };
    rep.check(
        "trace/rule-filter",
        got == want && out.records.len() == want.len() && filtered == 0 && counted >= 1,
        &format!(
            "--rule R1: rules shown {got:?}, expected {want:?}; {filtered} records reached \
             user space only to be filtered (the mask keeps them in the kernel); the kernel \
             counted {counted} of devmem-shared's remap (tgid {})",
            shared.tgid
        ),
    );
    rep.check(
        "trace/duration",
        status.success() && ran >= DURATION && out.summary.is_some(),
        &format!(
            "--duration {secs}: exit {status} by itself after {:.1} s",
            ran.as_secs_f64()
        ),
    );
    Ok(())
}

/// `trace --all --pid 1`: the kernel sends only PID 1's records. This init
/// maps /dev/mem itself while a scenario process has done the same: every
/// call of both is counted, only the init's arrive, and none reaches user
/// space just to be filtered out.
fn pid_in_kernel(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    let (watch, _) = Watch::start(&["trace", "--json", "--all", "--pid", "1"], READY)?;
    let other = trigger(Scenario::DevmemShared)?;
    let own = Some(Scenario::DevmemShared)
        .context("no devmem-shared scenario")?
        .run()?;
    let (status, lines) = watch.collect(Some(libc::SIGINT), STOP)?;
    let out = Output::of(&lines);
    let got = judge::tally(out.records.iter().map(|(r, _, _)| *r));
    let wrong: Vec<String> = out
        .records
        .iter()
        .filter(|(r, _, _)| r.tgid != own.tgid || !own_vma(&own, r))
        .map(|(r, _, _)| format!("{}[{}] {} vma {:#x}", r.comm, r.tgid, r.hook, r.vm_start))
        .collect();
    let want = Scenario::DevmemShared.expected(kernel);
    let filtered = out.summary.map_or(u64::MAX, |s| s.filtered);
    // Both processes' remaps were counted, though one was never sent.
    let remap = want.keys().find(|(h, _)| h.family().maps_pfns()).copied();
    let counted = match (out.counts, remap) {
        (Some(c), Some((h, cls))) => c.get(h, cls),
        _ => 0,
    };
    rep.check(
        "trace/pid-filter",
        status.success() && wrong.is_empty() && got == want && filtered == 0 && counted >= 2,
        &format!(
            "--pid 1: records {} (expected {}), {filtered} filtered in user space, remaps \
             counted {counted} (the init's and tgid {}'s){}",
            judge::describe(&got),
            judge::describe(&want),
            other.tgid,
            problems(&wrong)
        ),
    );
    Ok(())
}

const CAPTURE: &str = "/tmp/trace.capture";

/// `pfnwatch record --cow-only` around three scenarios: what it shows live
/// is what the kernel's code makes; the capture replays in the guest to the
/// same lines; and both go to the host, which replays it there.
fn record(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    let (watch, _) = Watch::start(
        &[
            "record",
            CAPTURE,
            "--json",
            "--all",
            "--stack",
            "--comm",
            COMM,
            "--cow-only",
        ],
        READY,
    )?;
    let shared = trigger(Scenario::DevmemShared)?;
    let private = trigger(Scenario::DevmemPrivate)?;
    let stat = trigger(Scenario::MovepagesStat)?;
    let (status, lines) = watch.collect(Some(libc::SIGTERM), STOP)?;
    let out = Output::of(&lines);

    // Every device-memory call of the two COW scenarios, nothing of the
    // shared one (all COW classes, and the mask leaves the others in the kernel).
    let mut want = Scenario::DevmemPrivate.expected(kernel);
    for (key, n) in Scenario::MovepagesStat.expected(kernel) {
        *want.entry(key).or_default() += n;
    }
    let got = judge::tally(out.records.iter().map(|(r, _, _)| *r).filter(|r| {
        [&private, &stat]
            .iter()
            .any(|s| s.pids().any(|p| p == r.tgid) && own_vma(s, r))
    }));
    let strays = out.records.len() as u64 - got.values().sum::<u64>();
    let shared_counted: u64 = Scenario::DevmemShared
        .expected(kernel)
        .iter()
        .map(|((h, c), _)| out.counts.as_ref().map_or(0, |k| k.get(*h, *c)))
        .sum();
    rep.check(
        "record/cow-only",
        status.success() && got == want && strays == 0 && shared_counted > 0,
        &format!(
            "record exit {status}: {} (expected {}); {strays} other records; devmem-shared \
             (tgid {}) counted {shared_counted} times in the kernel, recorded 0",
            judge::describe(&got),
            judge::describe(&want),
            shared.tgid
        ),
    );
    let r1: Vec<u32> = out
        .summary
        .iter()
        .flat_map(|s| s.alerts.iter())
        .filter(|g| g.rule == RuleId::R1 && g.occurrences == 1)
        .map(|g| g.tgid)
        .collect();
    rep.check(
        "record/alerts",
        r1 == [private.tgid, stat.tgid] || r1 == [stat.tgid, private.tgid],
        &format!(
            "R1 alerts for tgids {r1:?}, expected devmem-private {} and movepages-stat {}",
            private.tgid, stat.tgid
        ),
    );

    // Replayed here, the capture must print what record printed live.
    let replayed = Command::new("/bin/pfnwatch")
        .args(["replay", CAPTURE, "--json", "--stack"])
        .output()
        .context("running pfnwatch replay")?;
    let text = String::from_utf8_lossy(&replayed.stdout);
    let again: Vec<Line> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("pfnwatch replay printed {text:?}"))?;
    let same = replayed.status.success() && same_after_ready(&lines, &again);
    rep.check(
        "record/replay",
        same,
        &format!(
            "replay in the guest ({}): {} lines after its ready line, {}",
            replayed.status,
            again.len().saturating_sub(1),
            if same {
                "the same as live".to_owned()
            } else {
                format!(
                    "live had {} (or they differ); stderr {}",
                    lines.len(),
                    String::from_utf8_lossy(&replayed.stderr).trim()
                )
            }
        ),
    );

    let capture = std::fs::read(CAPTURE).with_context(|| format!("reading {CAPTURE}"))?;
    rep.send_file("capture.gz", &gzip(&capture)?);
    rep.send_file("live.jsonl.gz", &gzip(text_of(&lines).as_bytes())?);
    Ok(())
}

/// Records on one of the scenario's mappings.
fn own_vma(report: &Report, r: &Record) -> bool {
    report
        .mappings
        .iter()
        .any(|m| (m.start, m.end) == (r.vm_start, r.vm_end))
}

/// Replay's lines equal the live ones but for the ready line (which says
/// where they come from).
fn same_after_ready(live: &[Line], replayed: &[Line]) -> bool {
    let rest = |lines: &[Line]| -> Vec<Line> {
        lines
            .iter()
            .filter(|l| !matches!(l, Line::Ready { .. }))
            .cloned()
            .collect()
    };
    matches!(
        replayed.first(),
        Some(Line::Ready {
            source: Source::Replay,
            ..
        })
    ) && rest(live) == rest(replayed)
}

fn text_of(lines: &[Line]) -> String {
    lines
        .iter()
        .filter_map(|l| serde_json::to_string(l).ok())
        .map(|l| l + "\n")
        .collect()
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).context("compressing")?;
    enc.finish().context("compressing")
}

/// Whether an RFC 3339 time is `ts_ns` (CLOCK_MONOTONIC) on this guest's
/// wall clock, within 10 ms (the two clocks are read one after the other).
fn time_matches(time: &str, ts_ns: u64) -> bool {
    let Ok(wall) = humantime::parse_rfc3339(time) else {
        return false;
    };
    let wall = wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128;
    let offset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128
        - i128::from(crate::sys::monotonic_ns());
    (wall - (i128::from(ts_ns) + offset)).abs() < 10_000_000
}

fn hooks_classes(s: &Summary) -> Tally {
    s.classes
        .iter()
        .flat_map(|(h, cs)| cs.iter().map(move |(c, n)| ((*h, *c), *n)))
        .collect()
}

fn problems(wrong: &[String]) -> String {
    if wrong.is_empty() {
        String::new()
    } else {
        let shown: Vec<&str> = wrong.iter().take(8).map(String::as_str).collect();
        format!("; wrong: {}", shown.join("; "))
    }
}

/// A trace's output, by kind of line.
struct Output<'a> {
    lines: &'a [Line],
    records: Vec<(&'a Record, &'a [RuleId], &'a RecordView)>,
    alerts: Vec<&'a pfnwatch::pipeline::alert::Alert>,
    counts: Option<&'a Counts>,
    summary: Option<&'a Summary>,
}

impl<'a> Output<'a> {
    fn of(lines: &'a [Line]) -> Output<'a> {
        let mut out = Output {
            lines,
            records: Vec::new(),
            alerts: Vec::new(),
            counts: None,
            summary: None,
        };
        for line in lines {
            match line {
                Line::Record {
                    record,
                    rules,
                    view,
                } => out.records.push((record, rules, view)),
                Line::Alert { alert } => out.alerts.push(alert),
                Line::Counts { counts } => out.counts = Some(counts),
                Line::Summary { summary } => out.summary = Some(summary),
                Line::Ready { .. } | Line::Lost { .. } => {}
            }
        }
        out
    }

    /// Stopped cleanly: the counters, then the summary, last.
    fn ends_with_counts_and_summary(&self) -> bool {
        matches!(self.lines, [.., Line::Counts { .. }, Line::Summary { .. }])
    }

    fn tail(&self) -> String {
        let kinds: Vec<&str> = self
            .lines
            .iter()
            .rev()
            .take(2)
            .rev()
            .map(|l| match l {
                Line::Ready { .. } => "ready",
                Line::Record { .. } => "record",
                Line::Alert { .. } => "alert",
                Line::Lost { .. } => "lost",
                Line::Counts { .. } => "counts",
                Line::Summary { .. } => "summary",
            })
            .collect();
        kinds.join(", ")
    }

    fn summary_json(&self) -> String {
        self.summary
            .and_then(|s| serde_json::to_string(s).ok())
            .unwrap_or_else(|| "missing".to_owned())
    }
}
