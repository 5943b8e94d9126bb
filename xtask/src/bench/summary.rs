//! The figures an operator asks about first: BENCHMARKS.md's summary
//! tables, one row per kernel, and the line per kernel on the terminal.

use std::fmt::{self, Write as _};

use super::{
    KernelBench,
    lines::Line,
    render::kib,
    stats::{KernelFigures, Spread},
};

pub const ANON: &str = "anon-fork";
pub const PFNMAP: &str = "pfnmap-fork";
/// `pfnwatch run` while a device mapping keeps its lookups attached.
pub const RUN_MAPPED: &str = "run-mapped";
/// The naive peer (pfnwatch-ebpf's naive.bpf.c).
pub const NAIVE: &str = "naive";
/// Debian's bpftrace, counting by class in a map.
pub const BPFTRACE: &str = "bpftrace";

pub fn section(md: &mut String, benches: &[KernelBench]) {
    let measured: Vec<(&KernelBench, &KernelFigures)> = benches
        .iter()
        .filter_map(|b| Some((b, b.outcome.as_ref().ok()?)))
        .collect();
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Summary\n\n\
         Fork+exit time (guest instructions, see Method) with a configuration over the time with \
         another (median over rounds, range over rounds in brackets). \"ours\" is `pfnwatch run`; \"empty\" an fexit program on \
         vm_normal_page that does nothing, so ours/empty is pfnwatch's own share. pfnwatch attaches \
         its page-table lookups only while a device mapping exists (README, Cost): \"no device\" is \
         the ordinary-memory workload on a host without one, \"device mapped\" the same workload \
         while another process holds one page of the VGA BAR; the PFNMAP workload is a device \
         mapping itself.\n\n\
         | kernel | ordinary memory, no device: ours/none | ordinary memory, device mapped: ours/none | empty/none | ours/empty | PFNMAP: ours/none | ours/empty | trace --all/none | lookups attached after the mmap |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (b, k) in &measured {
        let r = |w: &str, over: &str, base: &str| ratio_cell(k.ratio(w, over, base));
        let delays: Vec<f64> = k.attach_delays_ns.iter().map(|n| *n as f64 / 1e6).collect();
        let delay = Spread::of(&delays).map_or("?".to_owned(), |s| {
            format!("{:.1} ms ({:.1}–{:.1})", s.median, s.min, s.max)
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {delay} |",
            b.label,
            r(ANON, "run", "none"),
            r(ANON, RUN_MAPPED, "none"),
            r(ANON, "empty", "none"),
            r(ANON, RUN_MAPPED, "empty"),
            r(PFNMAP, "run", "none"),
            r(PFNMAP, "run", "empty"),
            r(PFNMAP, "trace", "none"),
        );
    }
    peers(md, &measured);
    let _ = writeln!(
        md,
        "\nExtra guest instructions per vm_normal_page call (difference of the median fork+exit \
         times over the calls per fork):\n\n\
         | kernel | fexit trampoline (empty − none), ordinary memory | pfnwatch (ours − empty), ordinary memory | trampoline, PFNMAP | pfnwatch, PFNMAP | trace --all − ours, PFNMAP |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    for (b, k) in &measured {
        let d = |w: &str, over: &str, base: &str| {
            k.added_ns_per_call(w, over, base)
                .map_or("?".to_owned(), |v| format!("{v:+.0}"))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            b.label,
            d(ANON, "empty", "none"),
            d(ANON, RUN_MAPPED, "empty"),
            d(PFNMAP, "empty", "none"),
            d(PFNMAP, "run", "empty"),
            d(PFNMAP, "trace", "run"),
        );
    }
    let _ = writeln!(
        md,
        "\nThe kernel's own accounting (kernel.bpf_stats_enabled) of pfnwatch's vm_normal_page \
         program against the empty one, what the daemon holds, and how long a start takes \
         (exec to ready, guest time: `run` loads every program and attaches all but the \
         page-table lookups, which wait on standby; `trace --all --lookups always` attaches \
         every one):\n\n\
         | kernel | instructions per run vs empty, ordinary memory | the same, PFNMAP | daemon VmRSS | daemon VmHWM | BPF maps and programs | run: start to ready | trace, every program: start to ready |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (b, k) in &measured {
        let rss = k.processes.get("run");
        let median_rss = rss
            .and_then(|p| Spread::of(&p.iter().map(|p| p.vm_rss_kib as f64).collect::<Vec<_>>()))
            .map_or("?".to_owned(), |s| format!("{:.1} MiB", s.median / 1024.0));
        let hwm = rss
            .and_then(|p| p.iter().map(|p| p.vm_hwm_kib).max())
            .map_or("?".to_owned(), |v| format!("{:.1} MiB", v as f64 / 1024.0));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {median_rss} | {hwm} | {} | {} | {} |",
            b.label,
            vs_empty(k, ANON),
            vs_empty(k, PFNMAP),
            bpf_memory(k, "run"),
            start_to_ready(k, "run"),
            start_to_ready(k, "trace"),
        );
    }
    let _ = writeln!(md);
}

/// A ratio's table cell: the median, the range over rounds in brackets.
fn ratio_cell(s: Option<Spread>) -> String {
    s.map_or("?".to_owned(), |s| {
        format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
    })
}

/// The peers beside pfnwatch, in the same boot: what each adds to
/// fork+exit, and what the naive peer's ring buffer let through.
fn peers(md: &mut String, measured: &[(&KernelBench, &KernelFigures)]) {
    let has = |config: &str| {
        measured
            .iter()
            .any(|(_, k)| k.fork_time(PFNMAP, config).is_some())
    };
    if !has(NAIVE) && !has(BPFTRACE) {
        return;
    }
    let _ = writeln!(
        md,
        "\nPeers in the same boot: bpftrace (Debian 13's package) counting every \
         vm_normal_page call in a map keyed by class (pfn map, mixed map, COW, page found), \
         and the naive peer (pfnwatch-ebpf's naive.bpf.c: every call, 64 bytes, through a \
         256 KiB ring buffer the bench drains and counts). \"× ours\" is what the peer adds \
         to fork+exit over none divided by what `pfnwatch run` adds (median over rounds, \
         range in brackets); ? where the peer did not run:\n\n\
         | kernel | PFNMAP: bpftrace/none | bpftrace × ours | naive/none | naive × ours | ordinary memory, no device: bpftrace/none | naive/none | naive's records taken / lost per round (median) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (b, k) in measured {
        let flow = k.peers.get(NAIVE).map_or("?".to_owned(), |rounds| {
            let taken: Vec<f64> = rounds.iter().map(|r| r.0 as f64).collect();
            let lost: Vec<f64> = rounds.iter().map(|r| r.1 as f64).collect();
            match (Spread::of(&taken), Spread::of(&lost)) {
                (Some(t), Some(l)) => format!("{:.0} / {:.0}", t.median, l.median),
                _ => "?".to_owned(),
            }
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {flow} |",
            b.label,
            ratio_cell(k.ratio(PFNMAP, BPFTRACE, "none")),
            ratio_cell(k.cost_ratio(PFNMAP, BPFTRACE, "run", "none")),
            ratio_cell(k.ratio(PFNMAP, NAIVE, "none")),
            ratio_cell(k.cost_ratio(PFNMAP, NAIVE, "run", "none")),
            ratio_cell(k.ratio(ANON, BPFTRACE, "none")),
            ratio_cell(k.ratio(ANON, NAIVE, "none")),
        );
    }
}

/// Median exec-to-ready time of a configuration over rounds, with the range.
fn start_to_ready(k: &KernelFigures, config: &str) -> String {
    k.processes
        .get(config)
        .and_then(|p| Spread::of(&p.iter().map(|p| p.attach_ms as f64).collect::<Vec<_>>()))
        .map_or("?".to_owned(), |s| {
            format!("{:.0} ms ({:.0}–{:.0})", s.median, s.min, s.max)
        })
}

/// pfnwatch's vm_normal_page program's run time per run over the empty one's.
fn vs_empty(k: &KernelFigures, workload: &str) -> String {
    let ns = |config: &str| {
        k.programs_of(workload, config)
            .find(|(_, p)| p.function == "vm_normal_page")
            .and_then(|(_, p)| p.ns_per_run())
            .map(|s| s.median)
    };
    // On ordinary memory the lookups run only while a device is mapped.
    let ours = if workload == ANON { RUN_MAPPED } else { "run" };
    match (ns(ours), ns("empty")) {
        (Some(run), Some(empty)) if empty > 0.0 => {
            format!("{run:.0} / {empty:.0} = {:.2}×", run / empty)
        }
        _ => "?".to_owned(),
    }
}

/// A configuration's BPF memory as the kernel charges it (fdinfo memlock of
/// its maps and programs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfMemory {
    pub charged: u64,
    /// The ring buffer's data size when the kernel charges nothing for it
    /// (before 6.4 memlock came from key and value sizes; a ring buffer has none).
    pub ring_uncharged: Option<u64>,
}

pub fn bpf_memory(k: &KernelFigures, of: &str) -> BpfMemory {
    let mut memory = BpfMemory {
        charged: 0,
        ring_uncharged: None,
    };
    for line in k.maps.iter().chain(&k.code) {
        match line {
            Line::Map {
                config,
                map_type,
                max_entries,
                memlock,
                ..
            } if config == of => {
                memory.charged += memlock;
                // Every such ring buffer (pfnwatch has three), not the last.
                if map_type == "RingBuf" && *memlock == 0 {
                    let before = memory.ring_uncharged.unwrap_or(0);
                    memory.ring_uncharged = Some(before + u64::from(*max_entries));
                }
            }
            Line::Code {
                config, memlock, ..
            } if config == of => memory.charged += memlock,
            _ => {}
        }
    }
    memory
}

impl fmt::Display for BpfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} memlock", kib(self.charged))?;
        if let Some(ring) = self.ring_uncharged {
            write!(
                f,
                " + {} of ring buffers this kernel does not count",
                kib(ring)
            )?;
        }
        Ok(())
    }
}

/// One line per kernel for the terminal.
pub fn summary(benches: &[KernelBench]) -> String {
    let mut out = String::new();
    for b in benches {
        let _ = match &b.outcome {
            Ok(k) => {
                let r = |w: &str, over: &str, base: &str| {
                    k.ratio(w, over, base)
                        .map_or("?".to_owned(), |s| format!("{:.3}", s.median))
                };
                writeln!(
                    out,
                    "[{}] {ANON}: ours/none {} empty/none {} ours/empty {}; {PFNMAP}: ours/none {} trace/none {}",
                    b.label,
                    r(ANON, "run", "none"),
                    r(ANON, "empty", "none"),
                    r(ANON, "run", "empty"),
                    r(PFNMAP, "run", "none"),
                    r(PFNMAP, "trace", "none"),
                )
            }
            Err(reason) => writeln!(out, "[{}] not measured: {reason}", b.label),
        };
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::lines::fixture_lines;

    fn map(name: &str, map_type: &str, max_entries: u32, memlock: u64) -> Line {
        Line::Map {
            config: "run".into(),
            name: name.into(),
            map_type: map_type.into(),
            key_size: 0,
            value_size: 0,
            max_entries,
            memlock,
        }
    }

    #[test]
    fn bpf_memory_adds_maps_and_programs_of_one_configuration() {
        let k = KernelFigures::from_lines(&fixture_lines());
        // events 275736 + counts 73992 + one program's 4096; trace's are apart.
        assert_eq!(
            bpf_memory(&k, "run"),
            BpfMemory {
                charged: 353_824,
                ring_uncharged: None
            }
        );
        assert_eq!(bpf_memory(&k, "run").to_string(), "346 KiB memlock");
    }

    #[test]
    fn a_ring_buffer_charged_nothing_is_named_apart() {
        // 6.1: fdinfo says 0 for the ring buffer.
        let lines = [
            map("events", "RingBuf", 262_144, 0),
            map("counts", "PerCpuArray", 4608, 73_728),
            map("urgent_events", "RingBuf", 65_536, 0),
            map("lookup_wake", "RingBuf", 4096, 0),
        ];
        let k = KernelFigures::from_lines(&lines);
        let m = bpf_memory(&k, "run");
        assert_eq!(m.ring_uncharged, Some(331_776), "all three, not the last");
        assert_eq!(
            m.to_string(),
            "72 KiB memlock + 324 KiB of ring buffers this kernel does not count"
        );
    }
}
