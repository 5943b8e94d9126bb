//! `pfnwatch.mode=bench`: what pfnwatch costs, for `cargo xtask bench`.
//!
//! Two workloads make the kernel call vm_normal_page once per pte, twice
//! per fork+exit (workload.rs): ordinary memory, where pfnwatch's filter
//! returns after one load, and a VM_PFNMAP, where every call is classified.
//! Each round times them with nothing attached, with an empty fexit program
//! on vm_normal_page, with `pfnwatch run`, (the PFNMAP) with `pfnwatch
//! trace --all`, which sends a record per call, with the naive peer,
//! which sends every call of both workloads, and with Debian's bpftrace
//! counting them in a map (where xtask could put it in the initramfs). Rounds repeat the whole
//! sequence, every other one backwards, so drift in the emulator shows as
//! spread, not as a ratio.
//!
//! The timed forks run with kernel.bpf_stats_enabled off (it adds two clock
//! reads to every program run); a short pass with it on follows, for each
//! program's run count and time. Memory is read from pfnwatch's /proc files
//! and its BPF objects' fdinfo. Every result is one `pfnwatch-bench: <json>`
//! line; xtask/src/bench.rs turns them into BENCHMARKS.md.

mod attach;
mod worker;
mod workload;

use super::Reporter;
use super::readings::{self, Prog};
use anyhow::{Context, Result};
use attach::{Attached, Config};
use pfnwatch_testbed_protocol::bench::{self, Line};
use std::io::Write;
use std::time::Instant;
use worker::Worker;
use workload::Kind;

/// Rounds when the command line does not say (`pfnwatch.bench_runs=N`;
/// `cargo xtask bench` always does).
const DEFAULT_RUNS: u32 = 5;
/// Timed fork+exit cycles per workload, configuration and round, after one
/// untimed cycle (the first after an attach pays for cold caches).
const FORKS: u32 = 5;
/// Cycles with kernel.bpf_stats_enabled on, for the programs' own figures.
const STATS_FORKS: u32 = 2;
/// Idle before the first round (virtual time: under -icount sleep=off the
/// host does not wait for it).
const SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// One result line, as the host reads it.
fn emit(line: &Line) {
    let mut out = std::io::stdout().lock();
    // The console is all we have; nothing to do if it fails.
    let _ = writeln!(out, "{}", bench::print(line));
    let _ = out.flush();
}

pub fn run(rep: &mut Reporter) -> Result<()> {
    // First, while PID 1 is small and has one thread (worker.rs says why).
    let mut worker = Worker::spawn()?;
    let runs = super::cmdline_param(pfnwatch_testbed_protocol::mode::BENCH_RUNS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_RUNS);
    let release = pfnwatch::kernel::facts::release();
    let version = std::fs::read_to_string("/proc/version").context("reading /proc/version")?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    emit(&Line::Guest {
        release: release.clone(),
        version: version.trim().to_owned(),
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        mem_total_kib: mem_total_kib(&meminfo).unwrap_or(0),
        runs,
        forks: FORKS,
        stats_forks: STATS_FORKS,
    });
    // pfnwatch run serves /metrics on 127.0.0.1: lo must be up.
    super::metrics_checks::loopback_up()?;
    let btf = pfnwatch::kernel::facts::load_btf(None)?.btf;
    for kind in Kind::ALL {
        let pages = match kind {
            Kind::Anon => worker.anon_pages,
            Kind::Bar => workload::bar_pages()?,
        };
        emit(&Line::Workload {
            workload: kind.name().to_owned(),
            about: kind.about().to_owned(),
            pages: pages as u64,
        });
    }
    readings::set_stats(false)?;
    settle(&mut worker)?;
    let mut failed = 0;
    for round in 0..runs {
        // Odd rounds go backwards, so drift within a round (work the guest
        // kernel does in the background, memory it has left behind) weighs
        // on every configuration alike.
        let mut order = Config::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        for config in order.into_iter().filter(|c| c.available()) {
            if let Err(e) = phase(rep, round, config, &mut worker, &btf) {
                failed += 1;
                rep.fail(
                    &format!("bench/{}/round{round}", config.name()),
                    &format!("{e:#}"),
                );
                // Never leave the stats on for the next timed forks.
                readings::set_stats(false)?;
            }
        }
    }
    worker.stop()?;
    let phases = runs as usize * Config::ALL.iter().filter(|c| c.available()).count();
    rep.check(
        "bench/done",
        runs > 0 && failed == 0,
        &format!(
            "{runs} rounds: {} of {phases} phases measured",
            phases - failed
        ),
    );
    Ok(())
}

/// Right after boot the kernel still has work of its own in the
/// background, which made round 0's first forks take up to twice the
/// instructions of later ones: idle, then fork each workload untimed.
fn settle(worker: &mut Worker) -> Result<()> {
    std::thread::sleep(SETTLE);
    for kind in Kind::ALL {
        worker.prepare(kind)?;
        worker.forks(FORKS)?;
        worker.finish(kind)?;
    }
    Ok(())
}

/// One configuration in one round: attach, time each workload, the stats
/// pass, pfnwatch's memory, detach.
fn phase(
    rep: &mut Reporter,
    round: u32,
    config: Config,
    worker: &mut Worker,
    btf: &aya::Btf,
) -> Result<()> {
    let started = Instant::now();
    let attached = Attached::start(config, btf)?;
    let attach_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let pid = attached.pid();
    let cpu_before = pid.map(readings::cpu_ms).transpose()?;
    let ready = pid.map(readings::rss).transpose()?.unwrap_or_default();
    let progs = attached.progs();
    // trace --all only differs from run where records are sent: the PFNMAP;
    // run-mapped from run where no device is mapped: ordinary memory.
    let kinds: &[Kind] = match config {
        Config::Trace => &[Kind::Bar],
        Config::RunMapped => &[Kind::Anon],
        _ => &Kind::ALL,
    };
    for kind in kinds {
        measure(rep, round, config, *kind, worker, &progs)?;
    }
    // The attach delay's parts (wake-up, attach), to tell slow rounds apart.
    for line in attached.logged("page-table lookups attached") {
        rep.info(&format!("round {round} {}: {line}", config.name()));
    }
    let Some(pid) = pid else {
        if let Some(peer) = attached.stop()? {
            emit(&Line::Peer {
                round,
                config: config.name().to_owned(),
                records: peer.records,
                lost: peer.lost.unwrap_or(0),
            });
        }
        return Ok(());
    };
    let cpu_ms = readings::cpu_ms(pid)?.saturating_sub(cpu_before.unwrap_or(0));
    let rss = readings::rss(pid)?;
    if round == 0 {
        memory(config, pid, &progs)?;
    }
    let output = attached.stop()?;
    emit(&Line::Process {
        round,
        config: config.name().to_owned(),
        attach_ms,
        cpu_ms,
        ready_rss_kib: ready.vm_rss_kib,
        ready_hwm_kib: ready.vm_hwm_kib,
        vm_rss_kib: rss.vm_rss_kib,
        vm_hwm_kib: rss.vm_hwm_kib,
        records: output.as_ref().map(|o| o.records),
        lost: output.and_then(|o| o.lost),
    });
    Ok(())
}

fn measure(
    rep: &mut Reporter,
    round: u32,
    config: Config,
    kind: Kind,
    worker: &mut Worker,
    progs: &[Prog],
) -> Result<()> {
    let pages = worker.prepare(kind)?;
    if config == Config::Run && kind == Kind::Bar {
        // The BAR just mapped is the device mapping run waits for.
        let delay = attach::lookups_attached()?;
        emit(&Line::Lookups {
            round,
            attach_delay_ns: u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX),
        });
    }
    worker.forks(1)?;
    let fork_ns = worker.forks(FORKS)?;
    emit(&Line::Timing {
        round,
        workload: kind.name().to_owned(),
        config: config.name().to_owned(),
        fork_ns,
    });
    readings::set_stats(true)?;
    let before = readings::runs(progs)?;
    worker.forks(STATS_FORKS)?;
    let after = readings::runs(progs)?;
    readings::set_stats(false)?;
    // Unmapping the BAR zaps its ptes: after the stats, so they are not counted.
    worker.finish(kind)?;
    for p in progs {
        let runs = after
            .get(&p.id)
            .copied()
            .unwrap_or_default()
            .since(before.get(&p.id).copied().unwrap_or_default());
        if p.function == "vm_normal_page" {
            let check = format!("bench/{}/{}/round{round}/runs", config.name(), kind.name());
            if config == Config::Run && kind == Kind::Anon {
                // No device mapped: the lookups are on standby.
                rep.check(
                    &check,
                    runs.count == 0,
                    &format!(
                        "{} ran {} times in {STATS_FORKS} forks with no device mapped (want 0)",
                        p.name, runs.count
                    ),
                );
            } else {
                // Each fork copies every pte and the exit zaps it again.
                let least = 2 * pages as u64 * u64::from(STATS_FORKS);
                rep.check(
                    &check,
                    runs.count >= least,
                    &format!(
                        "{} ran {} times in {STATS_FORKS} forks of {pages} ptes",
                        p.name, runs.count
                    ),
                );
            }
        }
        if runs.count > 0 {
            emit(&Line::Program {
                round,
                workload: kind.name().to_owned(),
                config: config.name().to_owned(),
                program: p.name.clone(),
                function: p.function.clone(),
                forks: STATS_FORKS,
                runs: runs.count,
                run_time_ns: runs.time_ns,
            });
        }
    }
    Ok(())
}

/// The BPF maps and programs `pid` holds, as the kernel charges them.
fn memory(config: Config, pid: u32, progs: &[Prog]) -> Result<()> {
    let (maps, code) = readings::bpf_objects(pid)?;
    for m in &maps {
        emit(&Line::Map {
            config: config.name().to_owned(),
            name: m.name.clone(),
            map_type: m.map_type.clone(),
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
            memlock: m.memlock,
        });
    }
    for c in &code {
        let name = progs
            .iter()
            .find(|p| p.id == c.id)
            .map_or("?", |p| p.name.as_str());
        emit(&Line::Code {
            config: config.name().to_owned(),
            program: name.to_owned(),
            jited_bytes: c.jited_bytes,
            memlock: c.memlock,
        });
    }
    Ok(())
}

fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names this guest writes are the ones the host's fixture (a real
    /// run) holds: workloads, configurations, the yardstick program.
    #[test]
    fn names_match_the_hosts_fixture() {
        let lines = bench::fixture_lines();
        assert_eq!(
            lines.len(),
            bench::FIXTURE.lines().count(),
            "every line parses"
        );
        let mut workloads = Vec::new();
        let mut configs = Vec::new();
        let mut programs = Vec::new();
        for line in &lines {
            match line {
                Line::Timing {
                    workload, config, ..
                } => {
                    workloads.push(workload.as_str());
                    configs.push(config.as_str());
                }
                Line::Program { program, .. } => programs.push(program.as_str()),
                _ => {}
            }
        }
        for kind in Kind::ALL {
            assert!(workloads.contains(&kind.name()), "{}", kind.name());
        }
        for config in Config::ALL {
            assert!(configs.contains(&config.name()), "{}", config.name());
        }
        assert!(programs.contains(&pfnwatch_ebpf::BENCH_EMPTY_PROGRAM));
    }
}
