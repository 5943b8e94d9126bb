//! The metric families pfnwatch exports: name, HELP text, type and labels,
//! as data (deploy/'s rules and dashboards are checked against this list).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family: its name, HELP text and labels.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
}

const fn counter(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Spec {
    Spec {
        name,
        help,
        kind: Kind::Counter,
        labels,
    }
}

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Spec {
    Spec {
        name,
        help,
        kind: Kind::Gauge,
        labels,
    }
}

pub const BUILD_INFO: Spec = gauge(
    "pfnwatch_build_info",
    "pfnwatch's version, and the kernel release and architecture it runs on (always 1).",
    &["version", "kernel_release", "arch"],
);
pub const START_TIME: Spec = gauge(
    "pfnwatch_start_time_seconds",
    "When the daemon started, in seconds since the Unix epoch.",
    &[],
);
pub const HOOK_CALLS: Spec = counter(
    "pfnwatch_hook_calls_total",
    "Calls of a hooked kernel function on a VM_PFNMAP/VM_MIXEDMAP vma, as the kernel \
     programs counted them, by hook and the call's class: vma kind, COW mapping, pte \
     special bit, pfn == vm_pgoff + offset, and result.",
    &["hook", "vma", "cow", "special", "pfn_match", "result"],
);
pub const HOOK_ERRORS: Spec = counter(
    "pfnwatch_hook_errors_total",
    "Failed calls of a hooked kernel function, by errno (larger errnos count as other).",
    &["hook", "errno"],
);
pub const REMAP_CALLS: Spec = counter(
    "pfnwatch_remap_calls_total",
    "Remaps by outcome: the whole vma mapped, part of it, or an error \
     (remap_pfn_range(); 7.x's remap_pfn_range_complete(), and \
     remap_pfn_range_prepare() where it refuses).",
    &["hook", "outcome", "cow"],
);
pub const HOOK_AVAILABLE: Spec = gauge(
    "pfnwatch_hook_available",
    "1 when the running kernel has the hook's function (in its BTF), 0 when it has not.",
    &["hook"],
);
pub const HOOK_ATTACHED: Spec = gauge(
    "pfnwatch_hook_attached",
    "1 when every program of the hook is attached, 0 when one is missing or refused.",
    &["hook"],
);
pub const RECORDS: Spec = counter(
    "pfnwatch_ringbuf_records_total",
    "Detail records read from the kernel's ring buffer.",
    &[],
);
pub const DROPPED: Spec = counter(
    "pfnwatch_ringbuf_records_dropped_total",
    "Detail records the kernel programs could not send because the ring buffers were full \
     (counted in the kernel).",
    &[],
);
pub const URGENT_DROPPED: Spec = counter(
    "pfnwatch_urgent_records_dropped_total",
    "Of the records dropped, those that may have been a warning or critical rule hit: \
     their own ring buffer and the shared one were both full.",
    &[],
);
pub const UNDECODABLE: Spec = counter(
    "pfnwatch_ringbuf_records_undecodable_total",
    "Records whose layout this binary does not know (binary and kernel object disagree).",
    &[],
);
pub const RINGBUF_SIZE: Spec = gauge(
    "pfnwatch_ringbuf_size_bytes",
    "Size of the ring buffer the kernel programs write records into.",
    &[],
);
pub const LOOKUPS_ATTACHED: Spec = gauge(
    "pfnwatch_lookups_attached",
    "1 while the page-table lookup programs (vm_normal_page, folio_walk_start) are \
     attached: always with --lookups always, else while a watched device mapping exists.",
    &[],
);
pub const LOOKUPS_WATCHED: Spec = gauge(
    "pfnwatch_lookups_watched_vmas",
    "Live pfn-mapping vmas that keep the lookups attached (not the vDSO's, pfnwatch's own, \
     or the perf, BPF and io_uring ring buffers'), as the kernel counts them.",
    &[],
);
pub const LOOKUPS_ATTACHES: Spec = counter(
    "pfnwatch_lookups_attaches_total",
    "Times the lookups attached because a device mapping appeared.",
    &[],
);
pub const LOOKUPS_DETACHES: Spec = counter(
    "pfnwatch_lookups_detaches_total",
    "Times the lookups detached once no device mapping was left for the grace period.",
    &[],
);
pub const LOOKUPS_ATTACH_DELAY: Spec = gauge(
    "pfnwatch_lookups_attach_delay_seconds",
    "From the first device mapping's creation to the lookups attached, the last time \
     they attached (lookups in it before then were not seen).",
    &[],
);
pub const LOOKUPS_LATE_WAKEUPS: Spec = counter(
    "pfnwatch_lookups_late_wakeups_total",
    "Device mappings whose wake-up the kernel's notification did not deliver: the \
     periodic check (every 100 ms while detached) found it.",
    &[],
);
pub const LOOKUPS_UNSEEN_MAPPINGS: Spec = counter(
    "pfnwatch_lookups_unseen_mappings_total",
    "Device mappings gone before the lookups attached: lookups in them were not seen.",
    &[],
);
pub const ALERTS: Spec = counter(
    "pfnwatch_alerts_total",
    "Rule hits, by rule and severity, before duplicate collapsing.",
    &["rule", "name", "severity"],
);
pub const ALERTS_BY_DRIVER: Spec = counter(
    "pfnwatch_alerts_by_driver_total",
    "Rule hits by rule and the driver behind the mapping (bounded: later drivers count \
     as other; unknown when none could be named), counted when the alert is written.",
    &["rule", "driver"],
);
pub const MAPPINGS: Spec = counter(
    "pfnwatch_pfn_mappings_total",
    "VM_PFNMAP/VM_MIXEDMAP vmas created (at mmap or by a fork), whoever fills them, by \
     origin, kind of vma, driver and device (bounded: later ones count as other).",
    &["origin", "vma", "driver", "device"],
);
pub const MAPPINGS_REMOVED: Spec = counter(
    "pfnwatch_pfn_mappings_removed_total",
    "VM_PFNMAP/VM_MIXEDMAP vmas gone (munmap, exit), by kind of vma, driver and device.",
    &["vma", "driver", "device"],
);
pub const MAPPINGS_LIVE: Spec = gauge(
    "pfnwatch_pfn_mappings",
    "VM_PFNMAP/VM_MIXEDMAP vmas that exist now, by kind of vma, driver and device.",
    &["vma", "driver", "device"],
);
pub const MAPPED_BYTES: Spec = gauge(
    "pfnwatch_pfn_mapped_bytes",
    "Bytes those vmas span now, by kind of vma, driver and device.",
    &["vma", "driver", "device"],
);
pub const INVENTORY_FULL: Spec = counter(
    "pfnwatch_inventory_full_total",
    "Pfn-mapping vmas the kernel could not track (its inventory map was full).",
    &[],
);
pub const MAPPINGS_RECONCILED: Spec = counter(
    "pfnwatch_pfn_mappings_reconciled_total",
    "Live pfn mappings counted gone because the kernel's inventory no longer held them at two looks in a row: their gone records were lost on the way.",
    &[],
);
pub const FREES_UNSEEN: Spec = counter(
    "pfnwatch_inventory_frees_unseen_total",
    "Tracked pfn-mapping vmas whose free no program saw (the kernel skipped the call, see pfnwatch_program_misses_total), found gone by two walks of every task's vmas.",
    &[],
);
pub const STATS_ENABLED: Spec = gauge(
    "pfnwatch_bpf_stats_enabled",
    "1 when kernel.bpf_stats_enabled is on and the programs' run counts and times are kept.",
    &[],
);
pub const PROGRAM_RUNS: Spec = counter(
    "pfnwatch_program_runs_total",
    "Runs of each kernel program while kernel.bpf_stats_enabled was on.",
    &["program", "hook"],
);
pub const PROGRAM_RUN_TIME: Spec = counter(
    "pfnwatch_program_run_seconds_total",
    "Time spent in each kernel program while kernel.bpf_stats_enabled was on.",
    &["program", "hook"],
);
pub const PROGRAM_MISSES: Spec = counter(
    "pfnwatch_program_misses_total",
    "Calls the kernel did not run a program for: it was running on that CPU already (an interrupt inside it, or on a preemptible kernel a task preempted inside it).",
    &["program", "hook"],
);
pub const RELOADS: Spec = counter(
    "pfnwatch_config_reloads_total",
    "Configuration reloads (SIGHUP) by result.",
    &["result"],
);
pub const LAST_RELOAD_OK: Spec = gauge(
    "pfnwatch_config_last_reload_successful",
    "1 when the last configuration reload (or the start) succeeded.",
    &[],
);
pub const RESTART_REQUIRED: Spec = gauge(
    "pfnwatch_config_restart_required",
    "1 when the configuration file asks for something only a restart applies \
     (BTF path, ring buffer size, a rule that was off at start).",
    &[],
);

/// Every family pfnwatch exports (deploy/ files are checked against it).
pub const ALL: &[&Spec] = &[
    &BUILD_INFO,
    &START_TIME,
    &HOOK_CALLS,
    &HOOK_ERRORS,
    &REMAP_CALLS,
    &HOOK_AVAILABLE,
    &HOOK_ATTACHED,
    &RECORDS,
    &DROPPED,
    &URGENT_DROPPED,
    &UNDECODABLE,
    &RINGBUF_SIZE,
    &LOOKUPS_ATTACHED,
    &LOOKUPS_WATCHED,
    &LOOKUPS_ATTACHES,
    &LOOKUPS_DETACHES,
    &LOOKUPS_ATTACH_DELAY,
    &LOOKUPS_LATE_WAKEUPS,
    &LOOKUPS_UNSEEN_MAPPINGS,
    &ALERTS,
    &ALERTS_BY_DRIVER,
    &MAPPINGS,
    &MAPPINGS_REMOVED,
    &MAPPINGS_LIVE,
    &MAPPED_BYTES,
    &INVENTORY_FULL,
    &STATS_ENABLED,
    &PROGRAM_RUNS,
    &PROGRAM_RUN_TIME,
    &PROGRAM_MISSES,
    &FREES_UNSEEN,
    &MAPPINGS_RECONCILED,
    &RELOADS,
    &LAST_RELOAD_OK,
    &RESTART_REQUIRED,
];
