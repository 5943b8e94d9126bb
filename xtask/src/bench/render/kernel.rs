//! One kernel's part of BENCHMARKS.md: each workload's times and ratios,
//! the programs' own cost, and memory.

use std::fmt::Write as _;

use super::{gib, kib};
use crate::bench::{
    KernelBench,
    lines::Line,
    stats::{KernelFigures, Spread},
    summary::{self, ANON, PFNMAP},
};

/// Differences per call worth a row: (over, base, what it is).
pub const PER_CALL: [(&str, &str, &str); 6] = [
    ("empty", "none", "the fexit trampoline"),
    ("run", "empty", "pfnwatch's program"),
    ("run", "none", "all of pfnwatch run"),
    ("trace", "run", "sending and printing records"),
    ("naive", "none", "the naive peer, a record per call"),
    ("bpftrace", "none", "bpftrace, counting by class in a map"),
];

/// (label, over, base, what it says)
const RATIOS: [(&str, &str, &str, &str); 7] = [
    ("ours/none", "run", "none", "what `pfnwatch run` adds"),
    (
        "empty/none",
        "empty",
        "none",
        "what any fexit program on vm_normal_page adds",
    ),
    (
        "ours/empty",
        "run",
        "empty",
        "pfnwatch's own code, beyond the trampoline",
    ),
    (
        "trace/none",
        "trace",
        "none",
        "`pfnwatch trace --all`, a record per call",
    ),
    (
        "trace/ours",
        "trace",
        "run",
        "sending and printing the records",
    ),
    (
        "naive/none",
        "naive",
        "none",
        "the naive peer: every call through a ring buffer",
    ),
    (
        "bpftrace/none",
        "bpftrace",
        "none",
        "bpftrace counting by class in a map",
    ),
];

pub fn section(md: &mut String, bench: &KernelBench, k: &KernelFigures) {
    let _ = writeln!(
        md,
        "## Kernel {} ({}, Debian {})\n",
        bench.label, k.release, bench.package
    );
    let _ = writeln!(
        md,
        "{} guest CPU, {} guest RAM; {} rounds; boot to power-off {:.0} s of real time.\n",
        k.cpus,
        gib(k.mem_total_kib),
        k.runs,
        bench.boot_secs
    );
    for (workload, title) in [
        (ANON, "Hot path: ordinary memory"),
        (PFNMAP, "Classify path: a PFNMAP"),
    ] {
        workload_section(md, k, workload, title);
    }
    programs_section(md, k);
    memory_section(md, k);
}

fn workload_section(md: &mut String, k: &KernelFigures, workload: &str, title: &str) {
    let (about, pages) = k.workloads.get(workload).cloned().unwrap_or_default();
    let _ = writeln!(md, "### {title} ({workload})\n");
    let _ = writeln!(md, "{about}; {pages} ptes.\n");
    let calls = k
        .programs_of(workload, "empty")
        .find(|(_, p)| p.function == "vm_normal_page")
        .map(|(_, p)| p.runs_per_fork());
    if let Some(calls) = calls {
        let _ = writeln!(
            md,
            "vm_normal_page calls per fork+exit: {calls:.0} (the empty program's run count; the rest of the process's ptes included).\n"
        );
    }
    let _ = writeln!(
        md,
        "| configuration | fork+exit, million instructions (median over rounds) | range |\n|---|---:|---:|"
    );
    for config in ["none", "empty", "run", "trace", "naive", "bpftrace"] {
        if let Some(s) = k.fork_time(workload, config) {
            let _ = writeln!(
                md,
                "| {config} | {:.3} | {:.3}–{:.3} |",
                s.median / 1e6,
                s.min / 1e6,
                s.max / 1e6
            );
        }
    }
    let _ = writeln!(
        md,
        "\n| ratio | median | range over rounds | rounds | what it is |\n|---|---:|---:|---:|---|"
    );
    for (label, over, base, what) in RATIOS {
        if let Some(r) = k.ratio(workload, over, base) {
            let _ = writeln!(
                md,
                "| {label} | {:.3} | {:.3}–{:.3} | {} | {what} |",
                r.median, r.min, r.max, r.rounds
            );
        }
    }
    let added: Vec<String> = PER_CALL
        .iter()
        .filter_map(|(over, base, what)| {
            let extra = k.added_ns_per_call(workload, over, base)?;
            Some(format!("| {over} − {base} | {extra:+.0} | {what} |"))
        })
        .collect();
    if !added.is_empty() {
        let _ = writeln!(
            md,
            "\n| extra per vm_normal_page call | instructions | what it is |\n|---|---:|---|\n{}",
            added.join("\n")
        );
    }
    if workload == PFNMAP {
        trace_lines(md, k);
    }
    let _ = writeln!(md);
}

fn trace_lines(md: &mut String, k: &KernelFigures) {
    let Some(rounds) = k.processes.get("trace") else {
        return;
    };
    let _ = writeln!(
        md,
        "\n`pfnwatch trace --all` per round (every fork of the phase, timed and stats cycles):\n\n\
         | round | records printed | records lost (ring buffer full) | trace's CPU time, million instructions |\n|---:|---:|---:|---:|"
    );
    for p in rounds {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            p.round,
            p.records.map_or("?".to_owned(), |v| v.to_string()),
            p.lost.map_or("?".to_owned(), |v| v.to_string()),
            p.cpu_ms
        );
    }
}

fn programs_section(md: &mut String, k: &KernelFigures) {
    let _ = writeln!(
        md,
        "### Per program (kernel.bpf_stats_enabled)\n\n\
         run_time_ns / run_cnt over {} stats cycles per round, all rounds; under -icount a run_time \
         nanosecond is an instruction. Programs that never ran are left out.\n\n\
         | workload | configuration | program | runs per fork+exit | instructions per run, median | range over rounds | vs empty |\n\
         |---|---|---|---:|---:|---:|---:|",
        k.stats_forks
    );
    for workload in [ANON, PFNMAP] {
        let empty = k
            .programs_of(workload, "empty")
            .find(|(_, p)| p.function == "vm_normal_page")
            .and_then(|(_, p)| p.ns_per_run());
        for config in ["empty", "run", "trace"] {
            for (name, p) in k.programs_of(workload, config) {
                let Some(s) = p.ns_per_run() else { continue };
                let vs = match (&empty, p.function.as_str()) {
                    (Some(e), "vm_normal_page") if e.median > 0.0 => {
                        format!("{:.2}×", s.median / e.median)
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    md,
                    "| {workload} | {config} | `{name}` | {:.0} | {:.0} | {} | {vs} |",
                    p.runs_per_fork(),
                    s.median,
                    range(&s)
                );
            }
        }
    }
    let _ = writeln!(md);
}

fn memory_section(md: &mut String, k: &KernelFigures) {
    let _ = writeln!(md, "### Memory\n");
    for (config, what) in [
        ("run", "`pfnwatch run` (daemon)"),
        ("trace", "`pfnwatch trace --all`"),
    ] {
        let Some(rounds) = k.processes.get(config) else {
            continue;
        };
        let rss: Vec<f64> = rounds.iter().map(|p| p.vm_rss_kib as f64).collect();
        let hwm = rounds.iter().map(|p| p.vm_hwm_kib).max().unwrap_or(0);
        let cpu: u64 = rounds.iter().map(|p| p.cpu_ms).sum();
        let ready: Vec<f64> = rounds.iter().map(|p| p.ready_rss_kib as f64).collect();
        // Where the peak was reached: already at ready, or during the workloads.
        let peak_at_start = rounds.iter().all(|p| p.ready_hwm_kib == p.vm_hwm_kib);
        if let (Some(rss), Some(ready)) = (Spread::of(&rss), Spread::of(&ready)) {
            let _ = writeln!(
                md,
                "- {what}: VmRSS {:.0} KiB once ready, {:.0} KiB after the workloads (medians of {} rounds; \
                 after: {:.0}–{:.0}); VmHWM at most {hwm} KiB, {}; {cpu} million instructions of CPU time while the workloads ran (in 10-million ticks), \
                 all rounds together.",
                ready.median,
                rss.median,
                rss.rounds,
                rss.min,
                rss.max,
                if peak_at_start {
                    "reached while it started"
                } else {
                    "reached during the workloads"
                }
            );
        }
    }
    let mut maps: Vec<&Line> = k
        .maps
        .iter()
        .filter(|l| matches!(l, Line::Map { config, .. } if config == "run"))
        .collect();
    // fdinfo lists them in fd order, which moves from run to run.
    maps.sort_by_key(|l| match l {
        Line::Map { name, .. } => name.clone(),
        _ => String::new(),
    });
    if !maps.is_empty() {
        let _ = writeln!(
            md,
            "\nBPF maps held by `pfnwatch run` (fdinfo `memlock`, what the kernel charges):\n\n\
             | map | type | key | value | entries | memlock (bytes) | per further CPU (computed) |\n|---|---|---:|---:|---:|---:|---:|"
        );
        let mut total = 0;
        let mut per_cpu_total = 0;
        for line in maps {
            if let Line::Map {
                name,
                map_type,
                key_size,
                value_size,
                max_entries,
                memlock,
                ..
            } = line
            {
                total += memlock;
                let per_cpu = per_cpu_bytes(map_type, *value_size, *max_entries);
                per_cpu_total += per_cpu;
                let _ = writeln!(
                    md,
                    "| {name} | {map_type} | {key_size} | {value_size} | {max_entries} | {memlock} | {per_cpu} |"
                );
            }
        }
        let _ = writeln!(
            md,
            "| **total** | | | | | **{total}** | **{per_cpu_total}** |"
        );
        let uncounted = summary::bpf_memory(k, "run").ring_uncharged.unwrap_or(0);
        let _ = writeln!(
            md,
            "\nThe guest has one CPU. A per-CPU array holds its values once per possible CPU \
             (value size rounded up to 8, times entries): on a 64-CPU host these maps would hold about {} \
             (computed: the total above, 63 times the per-CPU column, and the ring buffer where the \
             kernel leaves it out; not measured).",
            kib(total + 63 * per_cpu_total + uncounted)
        );
    }
    let code: Vec<(u64, u64)> = k
        .code
        .iter()
        .filter_map(|l| match l {
            Line::Code {
                config,
                jited_bytes,
                memlock,
                ..
            } if config == "run" => Some((u64::from(*jited_bytes), *memlock)),
            _ => None,
        })
        .collect();
    if !code.is_empty() {
        let jited: u64 = code.iter().map(|c| c.0).sum();
        let memlock: u64 = code.iter().map(|c| c.1).sum();
        let _ = writeln!(
            md,
            "\nPrograms held by `pfnwatch run`: {}, {jited} bytes of JIT'ed code, {memlock} bytes memlock.",
            code.len()
        );
    }
    let _ = writeln!(md);
}

fn range(s: &Spread) -> String {
    format!("{:.0}–{:.0}", s.min, s.max)
}

/// The bytes a per-CPU map adds for each possible CPU; 0 for other maps.
pub fn per_cpu_bytes(map_type: &str, value_size: u32, max_entries: u32) -> u64 {
    if map_type.starts_with("PerCpu") || map_type.starts_with("LruPerCpu") {
        u64::from(value_size.next_multiple_of(8)) * u64::from(max_entries)
    } else {
        0
    }
}
