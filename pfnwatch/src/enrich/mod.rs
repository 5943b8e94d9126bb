//! What the kernel's record cannot carry, looked up on the host: the call
//! path's symbols, the cgroup's path and container, the driver's name.

mod cgroup;
mod devices;
mod kallsyms;

pub use cgroup::{Cgroups, container_id};
pub use devices::Devices;
pub use kallsyms::Kallsyms;

use crate::kernel::decode::Record;
use serde::{Deserialize, Serialize};

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
    /// The record's `stack`, symbolised, innermost first.
    #[serde(rename = "call_path", default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<String>,
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
            kallsyms: Kallsyms::new("/proc/kallsyms"),
            cgroups: Cgroups::discover(),
            devices: Devices::new(),
        }
    }

    pub fn enrich(&mut self, r: &Record) -> Enrichment {
        let cgroup = self.cgroups.path(r.cgroup_id);
        Enrichment {
            container: cgroup.as_deref().and_then(container_id),
            cgroup,
            driver: r.file.as_ref().and_then(|f| self.devices.driver(f)),
            stack: r
                .stack
                .iter()
                .map(|a| self.kallsyms.symbolize(*a))
                .collect(),
        }
    }
}

/// The call path from the first frame a reader wants to see: without the
/// BPF program and trampoline frames in front (how pfnwatch got there, not
/// what the kernel was doing), nor addresses no symbol covers. All of it
/// when nothing else is left. Alerts and views both ask this.
pub fn callers(frames: &[String]) -> &[String] {
    let plumbing = |f: &String| f.starts_with("bpf_") || f.starts_with("0x") || f.contains("[bpf]");
    let skip = frames.iter().take_while(|f| plumbing(f)).count();
    if skip == frames.len() {
        frames
    } else {
        &frames[skip..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_start_after_the_bpf_frames() {
        let frames = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = frames(&[
            "bpf_prog_6deef7357e7b4530_vm_normal_page_exit+0x12 [bpf]",
            "bpf_trampoline_6442510025+0x4f",
            "0xffffffffc0123456",
            "zap_pte_range+0x1f0",
            "0xffffffff81000000",
        ]);
        assert_eq!(callers(&all), &all[3..]);
        let only_bpf = frames(&["bpf_trampoline_1+0x5"]);
        assert_eq!(callers(&only_bpf), &only_bpf[..]);
        assert!(callers(&[]).is_empty());
    }
}
