//! `pfnwatch.mode=test`: check, then every scenario under one
//! `pfnwatch trace --all`, each judged against the kernel's expectations.

use super::Reporter;
use super::trigger::run as trigger;
use super::watch::{self, Watch};
use crate::expect::{self, Alerted, KernelVersion};
use crate::judge;
use crate::report::Report;
use crate::scenario::Scenario;
use anyhow::{Context, Result};
use pfnwatch::kernel::loader::{ProgramReport, ProgramState};
use pfnwatch::pipeline::alert::Alert;
use pfnwatch::rules::{RuleId, Severity};
use pfnwatch::views::line::Line;
use pfnwatch_common::{Class, Hook, class};
use pfnwatch_testbed_protocol::mode;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Under TCG a load takes seconds; leave room.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(rep: &mut Reporter) -> Result<()> {
    let (release, kernel) = super::kernel()?;
    rep.info(&format!("kernel {release} (expectations for {kernel})"));
    if expect::NO_TRAMPOLINES.contains(&kernel) {
        return no_trampolines(rep, kernel);
    }
    // badmod: the bad-driver test module, before pfnwatch starts watching.
    super::module::load(rep, kernel);
    // The correct drivers' devices: Debian's modules, before pfnwatch too.
    super::correct::bring_up(rep, kernel);

    check(rep, kernel)?;

    let (mut watch, ready) = Watch::start(
        &["trace", "--all", "--stack", "--format", "json"],
        READY_TIMEOUT,
    )?;
    if let Line::Ready { programs, .. } = &ready {
        hooks(rep, kernel, "trace", programs);
    }
    watch.snapshot(SNAPSHOT_TIMEOUT)?;
    for scenario in Scenario::for_kernel(kernel) {
        let report = match trigger(scenario) {
            Ok(r) => r,
            Err(e) => {
                rep.fail(&format!("{}/run", scenario.name()), &format!("{e:#}"));
                watch.snapshot(SNAPSHOT_TIMEOUT)?;
                continue;
            }
        };
        let window = watch.snapshot(SNAPSHOT_TIMEOUT)?;
        if window.records.iter().any(|r| r.tgid == watch.pid()) {
            rep.fail("self", "pfnwatch reported its own process");
        }
        if let Some(status) = &report.move_pages_status {
            rep.info(&format!(
                "{}: move_pages status {status:?}",
                scenario.name()
            ));
        }
        for f in judge::judge(kernel, &report, &window) {
            rep.check(&f.check, f.ok, &f.detail);
        }
        if let Some(others) = strangers(&report, &window) {
            rep.info(&format!(
                "{}: other records in the window: {others}",
                scenario.name()
            ));
        }
    }
    peer(rep, kernel, &mut watch)?;
    let status = watch.stop(Duration::from_secs(20))?;
    rep.check(
        "trace/stop",
        status.success(),
        &format!("pfnwatch trace exited: {status}"),
    );
    super::trace_checks::run(rep, kernel)?;
    super::metrics_checks::run(rep, kernel)?;
    daemon(rep, kernel)?;
    let soak_secs = super::cmdline_param(mode::SOAK_SECS)
        .and_then(|s| s.parse().ok())
        .unwrap_or(mode::SOAK_SECS_DEFAULT);
    super::reliability::run(rep, kernel, soak_secs)
}

/// `pfnwatch run`: only rule hits become alerts. In devmem-private that is
/// R1, the remap creating a COW PFNMAP; the device and COW-copy lookups are
/// counted, not alerted. The alert goes to the log and the alerts file with
/// the call path into the remap; the interval log shows the counts.
///
/// It runs as shipped, with the lookups on demand: first the on-demand
/// checks (standby, attach, detach, attach again for a device mapped after
/// the detach), then, with that mapping held, every scenario firing
/// exactly its rules.
fn daemon(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    let alerts_file = "/tmp/alerts.jsonl";
    let mut run = Command::new("/bin/pfnwatch")
        .args(["run", "--interval", "1", "--alerts-file", alerts_file])
        .args(["--lookups-grace", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .context("starting pfnwatch run")?;
    let stderr = run.stderr.take().context("pfnwatch run stderr")?;
    let rx = watch::lines_of(stderr);
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    while !log.iter().any(|l: &String| l.contains("pfnwatch running")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = run.kill();
                anyhow::bail!("pfnwatch run did not start: {}", log.join(" | "));
            }
        }
    }
    let device_mapped = match super::lookups::on_demand(rep, 19463, run.id()) {
        Ok(map) => map,
        Err(e) => {
            rep.fail("lookups/run", &format!("{e:#}"));
            None
        }
    };
    let report = trigger(Scenario::DevmemPrivate)?;
    let mut bad_drivers = Vec::new();
    for scenario in Scenario::for_kernel(kernel).filter(|s| s.uses_module()) {
        bad_drivers.push(trigger(scenario)?);
    }
    let mut correct_drivers = Vec::new();
    for scenario in Scenario::for_kernel(kernel).filter(|s| s.correct_driver()) {
        match trigger(scenario) {
            Ok(report) => correct_drivers.push(report),
            Err(e) => rep.fail(&format!("run/{scenario}"), &format!("{e:#}")),
        }
    }
    // Two interval ticks at least.
    std::thread::sleep(Duration::from_millis(2500));
    drop(device_mapped);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.id() as libc::pid_t, libc::SIGTERM) };
    let status = run.wait()?;
    log.extend(rx.iter());
    // For the cost issue: where the start's time went, and the attach
    // delay's parts (wake-up, attach).
    let timings = [
        "kernel BTF read",
        "programs loaded",
        "page-table lookups attached",
    ];
    for line in log.iter().filter(|l| timings.iter().any(|t| l.contains(t))) {
        rep.info(&format!("timing: {line}"));
    }
    let alerts: Vec<Alert> = std::fs::read_to_string(alerts_file)
        .unwrap_or_default()
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("reading the alerts file")?;
    for bad in &bad_drivers {
        module_alerts(rep, kernel, bad, &alerts);
    }
    for good in &correct_drivers {
        super::correct::run_alerts(rep, kernel, good, &alerts);
    }
    let others: usize = bad_drivers
        .iter()
        .chain(&correct_drivers)
        .map(|b| {
            alerts
                .iter()
                .filter(|a| b.pids().any(|p| p == a.tgid))
                .count()
        })
        .sum();
    let ours: Vec<&Alert> = alerts.iter().filter(|a| a.tgid == report.tgid).collect();
    let caller = Scenario::DevmemPrivate
        .remap_caller(kernel)
        .unwrap_or_default();
    let r1 = ours.len() == 1
        && ours[0].rule == RuleId::R1
        && ours[0].severity == Severity::Info
        && ours[0].device.as_deref() == Some("1:1")
        && ours[0].driver.as_deref() == Some("mem")
        && ours[0].stack.iter().any(|f| f.starts_with(caller));
    let logged = log
        .iter()
        .any(|l| l.contains("rule=R1") && l.contains(&format!("[{}]", report.tgid)));
    let counted = log
        .iter()
        .any(|l| l.contains(" calls ") && l.contains("hook=vm_normal_page"));
    let ok = status.success() && r1 && alerts.len() == ours.len() + others && logged && counted;
    let first = ours
        .first()
        .map(|a| format!("{} (stack {})", a.summary(), a.stack.join(" <- ")))
        .unwrap_or_default();
    rep.check(
        "run/alerts",
        ok,
        &format!(
            "pfnwatch run ({status}): {} alert(s) for the scenario, {} in all (want one R1 \
             with a call path through {caller}); logged: {logged}; interval counts: {counted}; {first}",
            ours.len(),
            alerts.len()
        ),
    );
    if !ok {
        rep.info(&log.join("\n"));
    }
    Ok(())
}

/// A bad-driver scenario under `pfnwatch run`: exactly its rules, at their
/// severities, as many occurrences as the driver caused (duplicates folded
/// into follow-ups count too); the call path names the module's function
/// where the driver was on the stack, and the alert names its device file
/// and the module everywhere.
fn module_alerts(rep: &mut Reporter, kernel: KernelVersion, report: &Report, alerts: &[Alert]) {
    let device = report
        .mappings
        .first()
        .map(|m| m.label.rsplit('/').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let mine: Vec<&Alert> = alerts
        .iter()
        .filter(|a| report.pids().any(|p| p == a.tgid))
        .collect();
    let mut got = std::collections::BTreeMap::<(RuleId, Severity), u64>::new();
    for a in &mine {
        *got.entry((a.rule, a.severity)).or_default() += a.count;
    }
    let expected = report.scenario.alerts(kernel);
    let want: std::collections::BTreeMap<(RuleId, Severity), u64> = expected
        .iter()
        .map(|a| ((a.rule, a.severity), a.count))
        .collect();
    let mut wrong = Vec::new();
    for &Alerted {
        rule, caller: func, ..
    } in expected
    {
        for a in mine.iter().filter(|a| a.rule == rule) {
            // The misc devices' file_operations are the module's own
            // (.owner = THIS_MODULE): the module names the driver.
            if a.file.as_deref() != Some(device.as_str())
                || a.driver.as_deref() != Some("pfnwatch_badmod")
            {
                wrong.push(format!(
                    "{rule} names file {:?} driver {:?}",
                    a.file, a.driver
                ));
            }
            if func.is_some() && !a.repeat && a.count != 1 {
                wrong.push(format!("{rule}'s first line counts {}", a.count));
            }
            if let Some(func) = func {
                let named = a
                    .stack
                    .iter()
                    .any(|f| f.starts_with(func) && f.ends_with("[pfnwatch_badmod]"));
                if !named {
                    wrong.push(format!("{rule} call path {:?} lacks {func}", a.stack));
                }
            }
        }
    }
    // The driver's own call path is the same at every fault: its repeats
    // fold into one follow-up line (dedup window 10 s).
    for &Alerted {
        rule,
        count: n,
        caller: func,
        ..
    } in expected
    {
        let lines = mine.iter().filter(|a| a.rule == rule).count();
        if func.is_some() && n > 1 && !rule.rule().once_per_vma && lines != 2 {
            wrong.push(format!("{rule}: {n} occurrences in {lines} lines, want 2"));
        }
    }
    let show = |m: &std::collections::BTreeMap<(RuleId, Severity), u64>| {
        m.iter()
            .map(|((r, s), n)| format!("{r} {s} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let top = mine
        .iter()
        .find(|a| !a.repeat)
        .map(|a| a.summary())
        .unwrap_or_default();
    rep.check(
        &format!("run/{}", report.scenario),
        got == want && wrong.is_empty(),
        &format!(
            "alerts {} (expected {}){}; e.g. {top}",
            show(&got),
            show(&want),
            if wrong.is_empty() {
                String::new()
            } else {
                format!("; wrong: {}", wrong.join("; "))
            }
        ),
    );
}

/// Ring buffer size the peer instance uses, in KiB.
const PEER_RINGBUF_KIB: u64 = 16;

/// pfnwatch filters by process, not by name: a second pfnwatch's exit is
/// reported by the first, which never reports itself. The peer's ring
/// buffer is a VM_MIXEDMAP of vmalloc pages (kernel/bpf/ringbuf.c): one
/// consumer page, one producer page and the data pages mapped twice, all
/// inserted at mmap time (vm_insert_page), so its exit zaps 2 + 2 * data
/// pages normal ptes; the inventory sees both vmas made and freed.
/// (Its own copy of the programs is still attached then: exit_mm runs
/// before exit_files.)
fn peer(rep: &mut Reporter, kernel: KernelVersion, watch: &mut Watch) -> Result<()> {
    let kib = PEER_RINGBUF_KIB.to_string();
    let (peer, _) = Watch::start(
        &["trace", "--ringbuf-kib", &kib, "--format", "json"],
        READY_TIMEOUT,
    )?;
    let peer_pid = peer.pid();
    let status = peer.stop(Duration::from_secs(20))?;
    let window = watch.snapshot(SNAPSHOT_TIMEOUT)?;
    let own = window
        .records
        .iter()
        .filter(|r| r.tgid == watch.pid())
        .count();
    let seen = judge::tally(window.records.iter().filter(|r| r.tgid == peer_pid));
    // Like every process that reads the clock, it also has the vDSO's vvar.
    let mut want = Scenario::Vdso.expected(kernel);
    // Its three ring buffers: the shared one, sized by the flag, the
    // urgent records' and the lookups' wake-ups (pfnwatch-common's
    // URGENT_RINGBUF_BYTES and LOOKUP_WAKE_BYTES).
    let ring_pages = |bytes: u64| 2 + 2 * bytes / 4096;
    let urgent = u64::from(pfnwatch_common::abi::URGENT_RINGBUF_BYTES);
    let wake = u64::from(pfnwatch_common::abi::LOOKUP_WAKE_BYTES);
    let pages = ring_pages(PEER_RINGBUF_KIB * 1024) + ring_pages(urgent) + ring_pages(wake);
    let mixed = Class(class::MIXEDMAP);
    for (hook, n) in [
        // remap_vmalloc_range -> vm_insert_page, page by page, at mmap.
        (Hook::VmInsertPage, pages),
        (Hook::VmNormalPage, pages),
        // The inventory: each ring's consumer and producer vma, made and freed.
        (Hook::PerfEventMmap, 6),
        (Hook::VmAreaFree, 6),
    ] {
        *want.entry((hook, mixed)).or_default() += n;
    }
    rep.check(
        "self/peer",
        status.success() && seen == want && own == 0,
        &format!(
            "a second pfnwatch ({status}) exiting: saw {}, expected {}; records of our own process: {own}",
            judge::describe(&seen),
            judge::describe(&want)
        ),
    );
    Ok(())
}

/// `pfnwatch check` must attach every hook this kernel has, report the
/// others missing, and exit 0.
fn check(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    let out = Command::new("/bin/pfnwatch")
        .args(["check", "--format", "json"])
        .output()
        .context("running pfnwatch check")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("pfnwatch check printed {text:?}"))?;
    rep.check(
        "check/btf",
        json["btf"]["found"] == true,
        &format!("BTF {}", json["btf"]["path"]),
    );
    let programs: Vec<ProgramReport> =
        serde_json::from_value(json["programs"].clone()).context("pfnwatch check: programs")?;
    hooks(rep, kernel, "check", &programs);
    rep.check(
        "check/exit",
        out.status.success(),
        &format!("pfnwatch check exited {}", out.status),
    );
    Ok(())
}

/// A kernel without trampolines for its functions: `check` loads the
/// object, reports every present hook refused with ENOTSUPP and why, and
/// exits non-zero; nothing else can run there.
fn no_trampolines(rep: &mut Reporter, kernel: KernelVersion) -> Result<()> {
    const ENOTSUPP: i32 = 524;
    let out = Command::new("/bin/pfnwatch")
        .args(["check", "--format", "json"])
        .output()
        .context("running pfnwatch check")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("pfnwatch check printed {text:?}"))?;
    rep.check(
        "check/object",
        json["load_error"].is_null(),
        &format!("the object loaded: load_error {}", json["load_error"]),
    );
    let programs: Vec<ProgramReport> =
        serde_json::from_value(json["programs"].clone()).context("pfnwatch check: programs")?;
    for p in &programs {
        let present = expect::program_present(kernel, &p.program);
        let ok = match &p.state {
            ProgramState::Refused { errno, hint, .. } => {
                present && *errno == Some(ENOTSUPP) && hint.contains("no BPF trampolines")
            }
            ProgramState::Missing => !present,
            _ => false,
        };
        rep.check(
            &format!("check/{}", p.program),
            ok,
            &format!(
                "on {kernel}: {} {:?} (want {})",
                p.target,
                p.state,
                if present {
                    "refused with ENOTSUPP, saying there are no trampolines"
                } else {
                    "missing"
                }
            ),
        );
    }
    let gaps = json["gaps"].as_array().map_or(0, Vec::len);
    rep.check(
        "check/exit",
        !out.status.success() && gaps > 0,
        &format!(
            "pfnwatch check exited {} with {gaps} gaps (want 1, gaps)",
            out.status
        ),
    );
    Ok(())
}

fn hooks(rep: &mut Reporter, kernel: KernelVersion, who: &str, programs: &[ProgramReport]) {
    for hook in Hook::ALL {
        let mine: Vec<&ProgramReport> = programs.iter().filter(|p| p.hook == hook).collect();
        let want = |p: &ProgramReport| {
            if expect::program_present(kernel, &p.program) {
                ProgramState::Attached
            } else {
                ProgramState::Missing
            }
        };
        let ok = !mine.is_empty() && mine.iter().all(|p| p.state == want(p));
        let states: Vec<String> = mine
            .iter()
            .map(|p| {
                format!(
                    "{} {} {:?} (want {:?})",
                    p.attach.section_prefix(),
                    p.target,
                    p.state,
                    want(p)
                )
            })
            .collect();
        rep.check(
            &format!("{who}/{hook}"),
            ok,
            &format!("on {kernel}: {}", states.join(", ")),
        );
    }
}

/// Records in the window that are not the scenario's own, summarized, so
/// a failure of the counters check can be read off the console.
fn strangers(report: &Report, window: &judge::Window) -> Option<String> {
    let own: Vec<*const _> = judge::own_records(report, &window.records)
        .map(|r| r as *const _)
        .collect();
    let others = window
        .records
        .iter()
        .filter(|r| !own.contains(&(*r as *const _)))
        .map(|r| {
            format!(
                "{}[{}] {} {} vma {:#x}",
                r.comm, r.tgid, r.hook, r.class, r.vm_start
            )
        });
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for o in others {
        *tally.entry(o).or_default() += 1;
    }
    if tally.is_empty() {
        return None;
    }
    let parts: Vec<String> = tally
        .into_iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect();
    Some(parts.join("; "))
}
