//! What the kernel's record cannot carry, looked up on the host: the call
//! path's symbols, the cgroup's path and container, the driver's name and
//! its mmap and fault handlers.

mod cgroup;
mod devices;
mod kallsyms;

pub use cgroup::{Cgroups, container_id};
pub use devices::Devices;
pub use kallsyms::Kallsyms;

use crate::kernel::decode::Record;
use crate::kernel::facts::KernelAddresses;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn no_frames(stack: &Arc<[String]>) -> bool {
    stack.is_empty()
}

/// Host context for one record. Captures carry it as it was looked up on
/// the capture host; trace's JSON lines show it with the record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrichment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The vma's fault and the file's mmap handler, as the kernel's own
    /// bad-page report names them: `fault:sigbus_fault [pfnwatch_badmod]
    /// mmap:bad_page_map_mmap [pfnwatch_badmod]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handlers: Option<String>,
    /// The record's `stack`, symbolised, innermost first, from the first
    /// frame outside pfnwatch's program, its trampoline and the hooked
    /// function itself.
    /// Shared: a capture's records share a few call paths, and replay
    /// hands each record its path without copying it.
    #[serde(rename = "call_path", default, skip_serializing_if = "no_frames")]
    pub stack: Arc<[String]>,
}

/// Caches of host lookups; live mode reads the running system, replay
/// passes `None` for what the capture already carries.
#[derive(Debug)]
pub struct Enricher {
    pub kallsyms: Kallsyms,
    pub cgroups: Cgroups,
    pub devices: Devices,
}

impl Enricher {
    pub fn live() -> Enricher {
        Enricher {
            kallsyms: Kallsyms::new(crate::kernel::facts::KALLSYMS),
            cgroups: Cgroups::discover(),
            devices: Devices::new(),
        }
    }

    /// [`Enricher::live`] with the symbol table read now, and the kernel
    /// addresses the programs need read on the way (one read of
    /// /proc/kallsyms, not two, and none later in the middle of a burst).
    pub fn live_preloaded() -> (Enricher, KernelAddresses) {
        let at = std::time::Instant::now();
        let mut enricher = Enricher::live();
        let mut addresses = KernelAddresses::default();
        enricher.kallsyms.preload(|line| addresses.feed(line));
        tracing::info!(ms = at.elapsed().as_millis(), "kernel symbols read");
        (enricher, addresses)
    }

    pub fn enrich(&mut self, r: &Record) -> Enrichment {
        // The symbols were read at start: a driver loaded since is not in
        // them, and its addresses would read as an older module's.
        if let Some(module) = r.file.as_ref().and_then(|f| f.module.as_deref()) {
            self.kallsyms.ensure_module(module);
        }
        let cgroup = self.cgroups.path(r.cgroup_id);
        let fault = self.kallsyms.name_at(r.fault_fn);
        let mmap = r
            .file
            .as_ref()
            .and_then(|f| self.kallsyms.name_at(f.mmap_fn));
        let handlers = [("fault", &fault), ("mmap", &mmap)]
            .iter()
            .filter_map(|(what, name)| Some(format!("{what}:{}", name.as_ref()?)))
            .collect::<Vec<_>>();
        // A driver without a file naming it is named by its handlers' module.
        let driver = r
            .file
            .as_ref()
            .and_then(|f| self.devices.driver(f))
            .or_else(|| {
                [&fault, &mmap]
                    .into_iter()
                    .flatten()
                    .find_map(|n| module_of(n))
            });
        let symbols: Vec<String> = r
            .stack
            .iter()
            .map(|a| self.kallsyms.symbolize(*a))
            .collect();
        Enrichment {
            container: cgroup.as_deref().and_then(container_id),
            cgroup,
            driver,
            handlers: (!handlers.is_empty()).then(|| handlers.join(" ")),
            stack: callers(symbols.into(), r.hook.function()),
        }
    }
}

/// The module in a symbol's "name [module]" form.
fn module_of(symbol: &str) -> Option<String> {
    let (_, module) = symbol.split_once(" [")?;
    Some(module.trim_end_matches(']').to_owned())
}

/// The call path from the first frame a reader wants to see: without the
/// BPF program and trampoline frames in front (how pfnwatch got there, not
/// what the kernel was doing), addresses no symbol covers, and the hooked
/// function's own frame (`hook`, or a name starting with it: 6.1's
/// vmf_insert_pfn_pmd_prot). All of it when nothing else is left.
pub fn callers(frames: Arc<[String]>, hook: &str) -> Arc<[String]> {
    let plumbing = |f: &String| {
        f.starts_with("bpf_")
            || f.starts_with("0x")
            || f.contains("[bpf]")
            || f.strip_prefix(hook)
                .is_some_and(|rest| rest.starts_with('+') || rest.starts_with("_prot+"))
    };
    let skip = frames.iter().take_while(|f| plumbing(f)).count();
    if skip == 0 || skip == frames.len() {
        frames
    } else {
        frames[skip..].into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_start_after_the_bpf_frames_and_the_hook() {
        let frames = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = frames(&[
            "bpf_prog_6deef7357e7b4530_vm_normal_page_exit+0x12 [bpf]",
            "bpf_trampoline_6442510025+0x4f",
            "0xffffffffc0123456",
            "zap_pte_range+0x1f0",
            "0xffffffff81000000",
        ]);
        assert_eq!(
            callers(all.as_slice().into(), "vm_normal_page").to_vec(),
            &all[3..]
        );
        // 6.1 and 6.12: the fentry trampoline is called from the hooked
        // function's own prologue, which then shows as the first frame.
        let remap = frames(&[
            "bpf_trampoline_1+0x5",
            "remap_pfn_range+0x5",
            "mmap_mem+0x9",
            "mmap_region+0x2a",
        ]);
        assert_eq!(
            callers(remap.as_slice().into(), "remap_pfn_range").to_vec(),
            &remap[2..]
        );
        let prot = frames(&["vmf_insert_pfn_pmd_prot+0x5", "huge_fault+0x1"]);
        assert_eq!(
            callers(prot.as_slice().into(), "vmf_insert_pfn_pmd").to_vec(),
            &prot[1..]
        );
        // A caller whose name merely starts like the hook stays.
        let other = frames(&["remap_pfn_range_notrack+0x10", "x+0x1"]);
        assert_eq!(
            callers(other.as_slice().into(), "remap_pfn_range").to_vec(),
            other
        );
        let only_bpf = frames(&["bpf_trampoline_1+0x5"]);
        assert_eq!(
            callers(only_bpf.as_slice().into(), "vm_normal_page").to_vec(),
            only_bpf
        );
        assert!(callers(Arc::default(), "vm_normal_page").is_empty());
        assert_eq!(
            module_of("sigbus_fault [pfnwatch_badmod]").as_deref(),
            Some("pfnwatch_badmod")
        );
        assert_eq!(module_of("mmap_mem"), None);
    }
}
