//! What the kernel's record cannot carry, looked up on the host: the call
//! path's symbols, the cgroup's path and container, the driver's name.

mod cgroup;
mod devices;
mod kallsyms;

pub use cgroup::{Cgroups, container_id};
pub use devices::Devices;
pub use kallsyms::Kallsyms;

use crate::record::Record;

/// Host context for one record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enrichment {
    pub cgroup: Option<String>,
    pub container: Option<String>,
    pub driver: Option<String>,
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
