//! What each scenario must make pfnwatch report, per kernel, derived from
//! the kernels' code (mm/memory.c, drivers/char/mem.c, ...), never from
//! pfnwatch's own output. Each row says why.

use crate::judge::Tally;
use pfnwatch_common::class::{ANON, COW, NO_PAGE, PFN_MATCH, SPECIAL};
use pfnwatch_common::{Class, Hook};

/// A kernel's major.minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32);

impl KernelVersion {
    /// Parses `uname -r`, e.g. "6.12.117+deb13-amd64" or "6.1.0-50-amd64".
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(KernelVersion(major, minor))
    }
}

impl std::fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Kernels a row applies to: `from <= v < until`.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub from: KernelVersion,
    pub until: KernelVersion,
}

const fn v(major: u32, minor: u32) -> KernelVersion {
    KernelVersion(major, minor)
}

const ALL: Kernels = Kernels {
    from: v(0, 0),
    until: v(99, 0),
};

impl Kernels {
    pub fn contains(self, k: KernelVersion) -> bool {
        self.from <= k && k < self.until
    }
}

pub struct Row {
    pub scenario: &'static str,
    pub kernels: Kernels,
    pub hook: Hook,
    pub class: u16,
    pub count: u64,
    pub why: &'static str,
}

pub const ROWS: &[Row] = &[];

/// Which hooks this kernel must have (and pfnwatch must attach): the
/// functions exist from these versions on.
pub fn hook_present(kernel: KernelVersion, hook: Hook) -> bool {
    match hook {
        Hook::FolioWalkStart => kernel >= v(6, 12),
        Hook::RemapPfnRangeComplete => kernel >= v(7, 0),
        _ => true,
    }
}

/// The expected tally for a scenario on a kernel.
pub fn expected(kernel: KernelVersion, scenario: &str) -> Tally {
    let mut t = Tally::new();
    for row in ROWS
        .iter()
        .filter(|r| r.scenario == scenario && r.kernels.contains(kernel))
    {
        *t.entry((row.hook, Class(row.class))).or_default() += row.count;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_releases() {
        assert_eq!(KernelVersion::parse("6.1.0-50-amd64"), Some(v(6, 1)));
        assert_eq!(KernelVersion::parse("6.12.117+deb13-amd64"), Some(v(6, 12)));
        assert_eq!(KernelVersion::parse("7.2.12+deb14-amd64"), Some(v(7, 2)));
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn every_row_names_a_scenario() {
        for row in ROWS {
            assert!(crate::scenario::find(row.scenario).is_some(), "{}", row.scenario);
            assert!(!row.why.is_empty());
        }
    }
}
