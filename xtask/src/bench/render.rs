//! BENCHMARKS.md, from the machine and each kernel's figures.

mod kernel;

use std::fmt::Write as _;

use super::{
    ICOUNT, KernelBench,
    host::Machine,
    summary::{self, ANON, PFNMAP},
};

pub fn markdown(
    machine: &Machine,
    benches: &[KernelBench],
    runs: u32,
    host: &Result<super::replay::ReplayFigures, String>,
) -> String {
    let mut md = String::new();
    let labels: Vec<&str> = benches.iter().map(|b| b.label).collect();
    let _ = writeln!(md, "# pfnwatch benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench --kernel {} --runs {runs}` on {} (UTC). \
         Rerun it rather than editing this file; `xtask/src/bench.rs` says how.\n",
        labels.join(","),
        machine.date
    );
    machine_section(&mut md, machine, benches);
    summary::section(&mut md, benches);
    match host {
        Ok(figures) => super::replay::section(&mut md, figures),
        Err(reason) => {
            let _ = writeln!(md, "{}\n\nNot measured: {reason}\n", super::replay::HEADING);
        }
    }
    let cycles = benches
        .iter()
        .find_map(|b| b.outcome.as_ref().ok())
        .map(|k| (k.forks, k.stats_forks));
    method_section(&mut md, runs, cycles);
    for bench in benches {
        match &bench.outcome {
            Ok(figures) => kernel::section(&mut md, bench, figures),
            Err(reason) => {
                let _ = writeln!(md, "## Kernel {}\n\nNot measured: {reason}\n", bench.label);
            }
        }
    }
    limits_section(&mut md);
    md
}

fn machine_section(md: &mut String, m: &Machine, benches: &[KernelBench]) {
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| host CPU | {} ({} cores) |", m.cpu_model, m.cpus);
    let _ = writeln!(md, "| host RAM | {} |", gib(m.mem_total_kib));
    let _ = writeln!(md, "| host kernel | {} |", m.kernel);
    let _ = writeln!(md, "| emulator | {} |", m.qemu);
    let _ = writeln!(
        md,
        "| guest | TCG (no KVM: this machine's /dev/kvm cannot run stock kernels), `{}`, `-cpu max -smp 1 -m 1024`, `-vga std`, a 1 GiB ivshmem BAR the benchmark leaves alone |",
        ICOUNT.join(" ")
    );
    for b in benches {
        let exact = b
            .outcome
            .as_ref()
            .map_or_else(|_| "not booted".to_owned(), |f| f.version.clone());
        let _ = writeln!(
            md,
            "| kernel {} | Debian {}: `{}` |",
            b.label,
            if b.package.is_empty() {
                "?"
            } else {
                &b.package
            },
            exact
        );
    }
    let _ = writeln!(md);
}

fn method_section(md: &mut String, runs: u32, cycles: Option<(u32, u32)>) {
    let (forks, stats_forks) = cycles.map_or(("?".to_owned(), "?".to_owned()), |(f, s)| {
        (f.to_string(), s.to_string())
    });
    let icount = ICOUNT.join(" ");
    let _ = writeln!(
        md,
        "## Method

Every figure comes from a qemu TCG guest: the host kernel refuses fentry/fexit,
and this machine's KVM cannot run stock kernels. qemu runs with `{icount}`:
the guest's clock advances by one nanosecond per guest instruction executed
and jumps over idle time. **A guest \"nanosecond\" here is one guest
instruction**, so every time below is an instruction count: the fork+exit
times, and the kernel's own per-program `run_time_ns`. They are
deterministic (repeats agree to about 0.1%) and do not move with the host's
load, which moved plain TCG timings by up to 2x on this shared 2-core host.
Instruction counts are not real time: they leave out caches, branch
prediction and the relative cost of instructions, so read them as the
amount of work, and the ratios as ratios of work.

Workloads (a small process forked from the guest's init before it loads
anything forks a child that exits at once; the kernel copies each pte into
the child and zaps it again, calling `vm_normal_page` once per pte each way):

- **{ANON}**: 128 MiB of written anonymous memory, `MADV_NOHUGEPAGE` (one pte
  per page). pfnwatch's program returns after one load (`vma->vm_flags`): the
  hot path every fork and exit on a host pays.
- **{PFNMAP}**: qemu's VGA BAR (`00:02.0/resource0`, 16 MiB) mapped whole,
  `MAP_SHARED`: a `VM_PFNMAP` of special ptes, so every call is classified
  and counted. The anonymous memory is `MADV_DONTFORK` meanwhile, so each
  workload copies only its own ptes.

Configurations, in this order in even rounds and backwards in odd ones (so
drift within a round weighs on each alike):

- **none**: nothing attached.
- **empty**: `pfnwatch-ebpf/src/bpf/bench.bpf.c`, an fexit program on
  `vm_normal_page` that returns 0, loaded with aya by the guest: the floor any
  fexit program on that function pays (trampoline, saved arguments and return
  value, the call of the original).
- **run** (\"ours\"): `pfnwatch run` with the defaults (every rule, 256 KiB
  ring buffer, call paths in records), as the package starts it. No rule
  matches either workload, so nothing is sent: this is the daemon's steady
  cost.
- **trace** ({PFNMAP} only): `pfnwatch trace --all --format json`, which
  sends a record for every classified call; its output is read and discarded
  by the guest, as `> /dev/null` would.
- **run-mapped** ({ANON} only): `pfnwatch run` while the bench holds one
  page of the VGA BAR mapped, so the page-table lookups are attached.
- **naive** (peer): `pfnwatch-ebpf/src/bpf/naive.bpf.c`, an fexit program on
  `vm_normal_page` that sends every call (64 bytes: time, task, vma flags and
  start, address, pte, page) through a 256 KiB ring buffer, which a thread of
  the bench drains and counts; losses are counted in the kernel.
- **bpftrace** (peer, where xtask could ship it): Debian 13's bpftrace
  counting every call in a map keyed by class (`fexit:vmlinux:vm_normal_page
  {{ @calls[pfn map, mixed map, COW, page found] = count(); }}`), started as an
  operator would and stopped with SIGINT.

Before the first round the guest idles 5 s and forks each workload untimed
(background work left from boot made round 0 up to twice as long without
it). Each round times each configuration and workload with {forks} fork+exit
cycles after one untimed cycle, and keeps their median; the ratios are taken
round by round, then summarised as the median and the range over the
{runs} rounds. The timed cycles run with `kernel.bpf_stats_enabled=0`;
{stats_forks} more cycles with it on give each program's `run_cnt` and
`run_time_ns` (bpf_prog_info). That time runs from just before the program to
just after it, inside the trampoline: it holds the program and the
accounting's own clock reads, not the trampoline, which is why the fork
times grow by more than the programs' run time. The extra work per call is
the difference of two configurations' fork times over the calls per fork
(the empty program's run count, which counts exactly the calls). Memory is
pfnwatch's `VmRSS`/`VmHWM` (/proc/PID/status) once it is ready and again
after the workloads, and the `memlock` the kernel charges for each map and
program pfnwatch holds (/proc/PID/fdinfo). One vCPU: two made
multi-threaded TCG run stale copies of re-patched trampolines
(xtask/src/qemu.rs).
"
    );
}

fn limits_section(md: &mut String) {
    let _ = writeln!(
        md,
        "## How to read it

- The workloads are worst cases by construction: forks and exits of a
  process that does nothing else, so copying and zapping its ptes (the code
  around vm_normal_page) is all the work measured. On a host the same
  per-call cost is spread over everything else the processes do.
- empty/none is what any fexit program on vm_normal_page costs, whoever
  writes it; ours/empty and the extra instructions per call are what
  pfnwatch's code adds to that. For scale on real hardware, not measured
  here: an empty fentry program on getpid added about 24 ns per call in
  cloudflare/ebpf_exporter's benchmark (benchmark/README.md: a MacBook Air
  M1 running Linux 6.5-rc1 in QEMU, so arm64, and fentry rather than fexit).
- `trace --all` on a PFNMAP this busy loses most records (the tables say how
  many): it is a tool for a reproduction, not for a fleet. A lost record
  costs the program less than a sent one, and how many get through depends
  on when the one vCPU runs trace, so trace's figures spread more than the
  others.

## What this does not measure

- Real time on real hardware. These are instruction counts: a cache miss on
  `vma->vm_flags`, the trampoline's calls and returns, or a slow clock read
  cost more than their count says, so a ratio here is a ratio of work, not a
  prediction of the same ratio in nanoseconds.
- More than one CPU: the guest has one vCPU, so per-CPU map sizes are the
  one-CPU figures (a per-CPU array costs its value size times entries once
  per possible CPU), and no contention on the ring buffer is seen.
- The trampolines themselves (executable memory the kernel allocates for
  each attached function, not charged to the process), and the object's BTF
  the loader hands to the kernel.
- Workloads with rule hits under `pfnwatch run`: none of these sends a record
  in its steady state; the records path is measured through `trace --all`.
- The other hooks (vm_normal_page_pmd, folio_walk_start, the remap and insert
  functions): these workloads call them seldom or never, as the per-program
  table shows; only their memory is counted.
"
    );
}

pub fn kib(bytes: u64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

pub fn gib(kib: u64) -> String {
    format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{lines::fixture_lines, stats::KernelFigures, summary::summary};

    fn machine() -> Machine {
        Machine {
            cpu_model: "AMD EPYC".into(),
            cpus: 2,
            mem_total_kib: 24 * 1024 * 1024,
            kernel: "6.18.44".into(),
            qemu: "QEMU emulator version 7.2.22".into(),
            date: "2026-11-25".into(),
        }
    }

    fn benches() -> Vec<KernelBench> {
        vec![
            KernelBench {
                label: "6.12",
                package: "6.12.117-1".into(),
                outcome: Ok(KernelFigures::from_lines(&fixture_lines())),
                boot_secs: 40.0,
            },
            KernelBench {
                label: "newest",
                package: String::new(),
                outcome: Err("fetching the kernel: offline".into()),
                boot_secs: 0.0,
            },
        ]
    }

    #[test]
    fn the_document_carries_machine_versions_ratios_and_memory() {
        let md = markdown(&machine(), &benches(), 2, &Err("not run".to_owned()));
        for want in [
            "`cargo xtask bench --kernel 6.12,newest --runs 2` on 2026-11-25",
            "| host CPU | AMD EPYC (2 cores) |",
            "| emulator | QEMU emulator version 7.2.22 |",
            "| kernel 6.12 | Debian 6.12.117-1: `Linux version 6.12.117+deb13-amd64",
            // Round 0: 63186548 / 19295179; round 1: 70 / 20.
            "| ours/none | 3.387 | 3.275–3.500 | 2 |",
            // Only round 0 has empty: 63186548 / 61810095.
            "| ours/empty | 1.022 | 1.022–1.022 | 1 |",
            "vm_normal_page calls per fork+exit: 65536",
            // Medians over rounds: none 19647589.5, empty 61810095, run 66593274;
            // over 65536 calls a fork.
            "| empty − none | +643 | the fexit trampoline |",
            "| run − empty | +73 | pfnwatch's program |",
            "| run − none | +716 | all of pfnwatch run |",
            // The summary's pfnwatch share on ordinary memory is run-mapped's
            // (the lookups attached), whose fixture lines come from a later
            // run: (27909237 - 61810095) / 65536, the arithmetic alone.
            "| 6.12 | +643 | -517 | ? | ? | ? |",
            // 16515072 and 17039360 ns over 131072 runs each.
            "| anon-fork | empty | `empty_exit` | 65536 | 126 | 126–126 | 1.00× |",
            "| anon-fork | run | `vm_normal_page_exit` | 65536 | 130 | 130–130 | 1.03× |",
            "| counts | PerCpuArray | 4 | 8 | 4608 | 73992 | 36864 |",
            "| **total** | | | | | **349728** | **36864** |",
            "| 0 | 2038 | 67611 | 390 |",
            "reached while it started",
            "## Kernel newest\n\nNot measured: fetching the kernel: offline",
        ] {
            assert!(md.contains(want), "missing {want:?} in\n{md}");
        }
        // No trace or empty figures were given for the PFNMAP: no such rows.
        assert!(!md.contains("| trace/ours |"), "{md}");
    }

    #[test]
    fn the_terminal_summary_names_each_kernel() {
        let text = summary(&benches());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0]
                .starts_with("[6.12] anon-fork: ours/none 3.387 empty/none 3.203 ours/empty 1.022"),
            "{text}"
        );
        assert_eq!(
            lines[1],
            "[newest] not measured: fetching the kernel: offline"
        );
    }

    #[test]
    fn only_per_cpu_maps_grow_with_cpus() {
        use kernel::per_cpu_bytes;
        assert_eq!(per_cpu_bytes("PerCpuArray", 8, 4608), 36_864);
        // Values are stored 8-byte aligned per CPU.
        assert_eq!(per_cpu_bytes("PerCpuHashMap", 12, 10), 160);
        assert_eq!(per_cpu_bytes("RingBuf", 0, 262_144), 0);
        assert_eq!(per_cpu_bytes("LruHashMap", 16, 1024), 0);
    }
}
