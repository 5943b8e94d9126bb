//! `pfnwatch synth-capture FILE --records N` (hidden): writes a capture of
//! made-up records for `cargo xtask bench`, timing the record side as it
//! goes: each record through the rules and filters into the capture writer,
//! as `pfnwatch record` does after the ring buffer (`--writer-only`: the
//! writer alone). A subcommand rather than an xtask generator because the
//! figure is of this binary's own writer and pipeline.
//!
//! The mix is what `record --all` sees on a host with a few device
//! mappings: mostly lookups in shared PFNMAPs that break no rule, some
//! remaps and inserts, a few rule hits, from 64 processes with a dozen
//! call paths.

use crate::enrich::Enrichment;
use crate::kernel::decode::{DevNum, MappedFile, Record};
use crate::pipeline::alert::Clock;
use crate::pipeline::filter::Filter;
use crate::pipeline::{Hosts, Pipeline, Sink};
use crate::rules::{Context, RuleConfig, RuleSet, Selection};
use crate::views::capture::{self, Header, Writer};
use anyhow::Result;
use pfnwatch_common::class::{COW, MIXEDMAP, NO_PAGE, PFN_MATCH, PFNMAP, SPECIAL};
use pfnwatch_common::{Class, Hook, vm_flags};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// What `synth-capture` prints: one JSON object.
#[derive(Debug, Serialize)]
pub struct Written {
    pub records: u64,
    pub bytes: u64,
    /// The writing loop's time: records through rules, filters and writer
    /// (or the writer alone), output included, setup not.
    pub seconds: f64,
    /// The loop's CPU time (user and system): on a shared machine the
    /// measure of one core's rate.
    pub cpu_seconds: f64,
    pub records_per_second: f64,
    /// Records over CPU time.
    pub records_per_cpu_second: f64,
    pub writer_only: bool,
}

/// Distinct records the generator cycles through (their times advance).
const POOL: usize = 4096;

pub fn synth(path: &Path, records: u64, writer_only: bool) -> Result<Written> {
    let pool = pool(POOL);
    let mut writer = Writer::create(path)?;
    writer.header(&header())?;
    let rules = RuleSet::new(
        RuleConfig::default(),
        Context {
            arch_pte_special: true,
        },
    );
    let clock = Clock::with_offset(0);
    let mut pipeline = Pipeline::new(
        rules,
        Filter::default(),
        Hosts::Given,
        Duration::from_secs(10),
        clock,
    );
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut ts = 1_000_000_000u64;
    for i in 0..records {
        let (record, host) = &pool[(i % POOL as u64) as usize];
        // About 2 µs apart: a million records span two seconds.
        ts += 2000;
        if writer_only {
            let record = Record {
                ts_ns: ts,
                ..record.clone()
            };
            writer.record(&record, host)?;
        } else {
            let record = Record {
                ts_ns: ts,
                ..record.clone()
            };
            let mut sinks: [&mut dyn Sink; 1] = [&mut writer];
            pipeline.feed(record, Some(host.clone()), &mut sinks)?;
        }
        // Record flushes after each ring-buffer batch.
        if i % 256 == 255 {
            writer.flush()?;
        }
    }
    pipeline.finish(&mut [&mut writer])?;
    writer.finish_file()?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    let bytes = std::fs::metadata(path)?.len();
    Ok(Written {
        records,
        bytes,
        seconds,
        cpu_seconds: cpu,
        records_per_second: records as f64 / seconds.max(1e-9),
        records_per_cpu_second: records as f64 / cpu.max(1e-9),
        writer_only,
    })
}

/// This process's CPU time so far, user and system.
fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data for the kernel to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid rusage to write into.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Prints `written` as one JSON line.
pub fn report(written: &Written, out: &mut impl Write) -> Result<()> {
    writeln!(out, "{}", serde_json::to_string(written)?)?;
    Ok(())
}

fn header() -> Header {
    Header {
        format: capture::FORMAT.to_owned(),
        version: capture::VERSION,
        pfnwatch: env!("CARGO_PKG_VERSION").to_owned(),
        kernel: "6.12.117+deb13-amd64".to_owned(),
        arch: "x86_64".to_owned(),
        pte_special: true,
        pte_special_source: "synth-capture".to_owned(),
        page_shift: pfnwatch_common::pgtable::PAGE_SHIFT_DEFAULT,
        clock_offset_ns: 1_700_000_000_000_000_000,
        recorded_at: "2023-11-14T22:13:20Z".to_owned(),
        selection: Selection::All,
        args: vec!["synth-capture".to_owned()],
        programs: Vec::new(),
    }
}

/// xorshift64*: deterministic, so every run writes the same capture.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A kind of call: hook, class, weight out of 1000.
const KINDS: [(Hook, u16, u64); 8] = [
    // Lookups in a shared PFNMAP: special ptes where they should be.
    (
        Hook::VmNormalPage,
        PFNMAP | SPECIAL | PFN_MATCH | NO_PAGE,
        700,
    ),
    (
        Hook::FolioWalkStart,
        PFNMAP | SPECIAL | PFN_MATCH | NO_PAGE,
        100,
    ),
    (Hook::VmfInsertPfnProt, PFNMAP, 80),
    (Hook::RemapPfnRange, PFNMAP | PFN_MATCH, 60),
    (Hook::VmfInsertMixed, MIXEDMAP, 30),
    // Rule hits: R1, R8, R7.
    (Hook::RemapPfnRange, PFNMAP | COW | PFN_MATCH, 15),
    (Hook::VmNormalPage, PFNMAP | COW | SPECIAL | NO_PAGE, 10),
    (Hook::VmNormalPage, PFNMAP | PFN_MATCH | NO_PAGE, 5),
];

fn pool(n: usize) -> Vec<(Record, Enrichment)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let paths: Vec<Vec<String>> = (0..12)
        .map(|p| {
            let depth = 8 + (p % 7);
            (0..depth)
                .map(|f| {
                    format!(
                        "{}+0x{:x}",
                        SYMBOLS[(p * 3 + f) % SYMBOLS.len()],
                        0x10 * (f + 1)
                    )
                })
                .collect()
        })
        .collect();
    let files = [
        ("mem", "/", (1, 1), "mem", None),
        (
            "resource0",
            "0000:00:02.0",
            (0, 0),
            "bochs-drm",
            Some("bochs"),
        ),
        ("card0", "dri", (226, 0), "bochs-drm", Some("bochs")),
        ("uio0", "/", (243, 0), "uio_pci_generic", Some("uio")),
    ];
    let total: u64 = KINDS.iter().map(|k| k.2).sum();
    (0..n)
        .map(|_| {
            let mut pick = rng.below(total);
            let &(hook, class, _) = KINDS
                .iter()
                .find(|k| {
                    let hit = pick < k.2;
                    pick = pick.saturating_sub(k.2);
                    hit
                })
                .unwrap_or(&KINDS[0]);
            let tgid = 1000 + rng.below(64) as u32;
            let (name, parent, rdev, driver, module) =
                files[rng.below(files.len() as u64) as usize];
            let mut flags = vm_flags::VM_IO | vm_flags::VM_MAYWRITE | vm_flags::VM_READ;
            if class & PFNMAP != 0 {
                flags |= vm_flags::VM_PFNMAP;
            }
            if class & MIXEDMAP != 0 {
                flags |= vm_flags::VM_MIXEDMAP;
            }
            if class & COW == 0 {
                flags |= vm_flags::VM_SHARED;
            }
            let vm_start = 0x7f00_0000_0000 + (rng.below(1 << 20) << 12);
            let pages = 1 + rng.below(4096);
            let page = rng.below(pages);
            let pgoff = 0xfd000 + rng.below(1 << 16);
            let record = Record {
                pid: tgid + rng.below(4) as u32,
                tgid,
                comm: format!("worker-{}", tgid % 16),
                cgroup_id: 100 + u64::from(tgid % 8),
                vm_flags: flags,
                vm_start,
                vm_end: vm_start + (pages << 12),
                vm_pgoff: pgoff,
                pgoff_before: hook.family().maps_pfns().then_some(pgoff),
                addr: vm_start + (page << 12),
                pfn: Some(if class & PFN_MATCH != 0 {
                    pgoff + page
                } else {
                    0x3_8ea1 + page
                }),
                size: 0x1000,
                entry: 0x8000_0000_fd00_0237,
                ret: i64::from(class & NO_PAGE == 0),
                file: Some(MappedFile {
                    name: name.to_owned(),
                    parent: parent.to_owned(),
                    ino: 2 + u64::from(rdev.1),
                    rdev: DevNum {
                        major: rdev.0,
                        minor: rdev.1,
                    },
                    sdev: DevNum { major: 0, minor: 5 },
                    module: module.map(str::to_owned),
                    mmap_fn: 0,
                }),
                ..Record::new(hook, Class(class))
            };
            let host = Enrichment {
                cgroup: Some(format!("/system.slice/worker-{}.service", tgid % 8)),
                container: None,
                driver: Some(driver.to_owned()),
                handlers: None,
                stack: paths[rng.below(paths.len() as u64) as usize]
                    .as_slice()
                    .into(),
            };
            (record, host)
        })
        .collect()
}

/// Kernel functions the made-up call paths are built of.
const SYMBOLS: [&str; 16] = [
    "zap_pte_range",
    "zap_pmd_range",
    "unmap_page_range",
    "unmap_vmas",
    "exit_mmap",
    "__mmput",
    "copy_pte_range",
    "copy_page_range",
    "dup_mmap",
    "copy_process",
    "kernel_clone",
    "__do_sys_clone",
    "do_syscall_64",
    "entry_SYSCALL_64_after_hwframe",
    "handle_mm_fault",
    "do_user_addr_fault",
];
