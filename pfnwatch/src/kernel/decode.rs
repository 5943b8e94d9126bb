//! A detail record as user space presents and stores it: decoded once from
//! the kernel's `pfnwatch_event`, with names instead of ids. Everything
//! downstream (rules, host context, alerts, views, captures) takes this.

use pfnwatch_common::pgtable::{self, PAGE_SHIFT_DEFAULT};
use pfnwatch_common::{Class, Event, Hook, Level, abi, class};
use serde::{Deserialize, Serialize};
use std::fmt;

/// CLOCK_MONOTONIC now, in the records' time base.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    pub hook: Hook,
    pub class: Class,
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub vm_flags: u64,
    pub vm_start: u64,
    pub vm_end: u64,
    pub vm_pgoff: u64,
    /// vm_pgoff before a remap rewrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgoff_before: Option<u64>,
    pub addr: u64,
    /// None when the kernel returned before the pfn could be read.
    pub pfn: Option<u64>,
    pub size: u64,
    /// Raw pte/pmd for the page-table hooks.
    pub entry: u64,
    pub ret: i64,
    /// Page-table level of `entry` (a number in JSON: 0 pte, 1 pmd, 2 pud).
    #[serde(default, skip_serializing_if = "is_pte")]
    pub level: Level,
    /// log2 of the recording kernel's page size (12 unless said).
    #[serde(
        default = "page_shift_default",
        skip_serializing_if = "is_page_shift_default"
    )]
    pub page_shift: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<MappedFile>,
    /// The vma's fault handler, a kernel address (0: none); host context
    /// names it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fault_fn: u64,
    /// The inventory's id of the vma: its created and gone records carry
    /// the same (0 on other hooks).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vma_id: u64,
    /// Seen at fentry: the kernel is about to BUG() on this call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub at_entry: bool,
    /// The pfn is the shared zero page's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zero_page: bool,
    /// An inventory record of a vma a fork gave the child.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fork: bool,
    /// An inventory record of a vma found by walking every task's vmas:
    /// mapped before pfnwatch started, or missed by the inventory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
    /// A gone record of a vma whose free no program saw: two walks of
    /// every task's vmas did not find it. No task, file or handler.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free_unseen: bool,
    /// Kernel return addresses, innermost first (empty unless captured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<u64>,
}

impl Record {
    /// The record without kernel addresses (the call path, the fault and
    /// mmap handlers): KASLR secrets, which what pfnwatch writes out
    /// carries as symbols instead (the host context).
    pub fn without_kernel_addresses(&self) -> Record {
        let mut r = self.clone();
        r.stack.clear();
        r.fault_fn = 0;
        if let Some(f) = r.file.as_mut() {
            f.mmap_fn = 0;
        }
        r
    }
}

fn page_shift_default() -> u8 {
    PAGE_SHIFT_DEFAULT
}

fn is_page_shift_default(shift: &u8) -> bool {
    *shift == PAGE_SHIFT_DEFAULT
}

fn is_pte(level: &Level) -> bool {
    *level == Level::Pte
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedFile {
    pub name: String,
    /// The parent directory's name: the PCI address of a BAR file.
    pub parent: String,
    pub ino: u64,
    /// The device a device node stands for (e.g. 1:1 for /dev/mem).
    pub rdev: DevNum,
    /// The device of the filesystem holding the file.
    pub sdev: DevNum,
    /// The module that owns the file's operations (None: built in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The file's mmap (7.x: mmap_prepare) handler, a kernel address (0:
    /// none); host context names it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mmap_fn: u64,
}

/// A device number; serialized as "major:minor".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    /// Decodes the kernel's internal dev_t (MINORBITS = 20).
    pub fn from_kernel(dev: u32) -> DevNum {
        DevNum {
            major: dev >> 20,
            minor: dev & 0xf_ffff,
        }
    }
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl Serialize for DevNum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DevNum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(d)?;
        let parsed = text
            .split_once(':')
            .and_then(|(ma, mi)| Some((ma.parse().ok()?, mi.parse().ok()?)));
        match parsed {
            Some((major, minor)) => Ok(DevNum { major, minor }),
            None => Err(D::Error::custom(format!(
                "bad device number {text:?} (want major:minor)"
            ))),
        }
    }
}

/// The NUL-terminated prefix of a kernel string buffer.
fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl Record {
    /// A record of `hook` and `class` with nothing else known: what tests
    /// and probes start from.
    pub fn new(hook: Hook, class: Class) -> Record {
        Record {
            ts_ns: 0,
            hook,
            class,
            pid: 0,
            tgid: 0,
            comm: String::new(),
            cgroup_id: 0,
            vm_flags: 0,
            vm_start: 0,
            vm_end: 0,
            vm_pgoff: 0,
            pgoff_before: None,
            addr: 0,
            pfn: None,
            size: 0,
            entry: 0,
            ret: 0,
            level: Level::Pte,
            page_shift: PAGE_SHIFT_DEFAULT,
            file: None,
            fault_fn: 0,
            vma_id: 0,
            at_entry: false,
            zero_page: false,
            fork: false,
            existing: false,
            free_unseen: false,
            stack: Vec::new(),
        }
    }

    /// Decodes a kernel event. `None` for an unknown hook id, level, page
    /// size or class bit, which means the object and this binary disagree.
    pub fn from_event(e: &Event) -> Option<Record> {
        // A bit no name stands for would print as a class that does not
        // read back: a capture holding it would be refused whole.
        if usize::from(e.class) >= class::SLOTS {
            return None;
        }
        let has = |flag: u32| e.flags & flag != 0;
        Some(Record {
            ts_ns: e.ts_ns,
            hook: Hook::from_id(e.hook)?,
            class: Class(e.class),
            pid: e.pid,
            tgid: e.tgid,
            comm: c_str(&e.comm),
            cgroup_id: e.cgroup_id,
            vm_flags: e.vm_flags,
            vm_start: e.vm_start,
            vm_end: e.vm_end,
            vm_pgoff: e.vm_pgoff,
            pgoff_before: has(abi::EVENT_PGOFF_BEFORE).then_some(e.pgoff_before),
            addr: e.addr,
            pfn: has(abi::EVENT_PFN_KNOWN).then_some(e.pfn),
            size: e.size,
            entry: e.entry,
            ret: e.ret,
            level: Level::from_raw(u32::from(e.level))?,
            page_shift: u8::try_from(e.page_shift)
                .ok()
                .filter(|shift| pgtable::PAGE_SHIFTS.contains(shift))?,
            stack: {
                let n = (e.stack_bytes as usize / 8).min(e.stack.len());
                e.stack[..n].to_vec()
            },
            file: has(abi::EVENT_FILE).then(|| MappedFile {
                name: c_str(&e.file),
                parent: c_str(&e.parent),
                ino: e.ino,
                rdev: DevNum::from_kernel(e.rdev),
                sdev: DevNum::from_kernel(e.sdev),
                module: Some(c_str(&e.module)).filter(|m| !m.is_empty()),
                mmap_fn: e.mmap_fn,
            }),
            fault_fn: e.fault_fn,
            vma_id: e.vma_id,
            at_entry: has(abi::EVENT_AT_ENTRY),
            zero_page: has(abi::EVENT_ZERO_PAGE),
            fork: has(abi::EVENT_FORK),
            existing: has(abi::EVENT_EXISTING),
            free_unseen: has(abi::EVENT_FREE_UNSEEN),
        })
    }

    /// Page index inside the vma of the entry's first page: `addr` itself
    /// for a pte, `addr` rounded down to the pmd or pud for a huge entry
    /// (whose pfn is that of its first page).
    pub fn page_offset(&self) -> u64 {
        // Total for any page_shift: the readers refuse unknown ones, but a
        // record can be made by hand.
        let shift = pgtable::level_shift(u32::from(self.page_shift), self.level);
        let size = 1u64.checked_shl(shift).unwrap_or(0);
        let base = self.addr & !size.wrapping_sub(1);
        base.saturating_sub(self.vm_start)
            .checked_shr(u32::from(self.page_shift))
            .unwrap_or(0)
    }

    /// The pfn the remap rule predicts for `addr`: vm_pgoff + page offset.
    pub fn rule_pfn(&self) -> u64 {
        self.vm_pgoff.wrapping_add(self.page_offset())
    }
}

/// A file a test's vma maps: `name` in `parent`, device `rdev` (major,
/// minor), on devtmpfs (0:5).
#[cfg(test)]
pub(crate) fn test_file(name: &str, parent: &str, rdev: (u32, u32)) -> MappedFile {
    MappedFile {
        name: name.into(),
        parent: parent.into(),
        ino: 2,
        rdev: DevNum {
            major: rdev.0,
            minor: rdev.1,
        },
        sdev: DevNum { major: 0, minor: 5 },
        module: None,
        mmap_fn: 0,
    }
}

/// A whole-vma COW remap of 4 pages by pid 7, as tests across the crate
/// use it (ts 1, no call path).
#[cfg(test)]
pub(crate) fn sample_remap() -> Record {
    use pfnwatch_common::class::{COW, PFN_MATCH, PFNMAP};
    Record {
        ts_ns: 1,
        pid: 7,
        tgid: 7,
        comm: "trig".into(),
        cgroup_id: 1,
        vm_flags: 0x4420,
        vm_start: 0x1000,
        vm_end: 0x5000,
        vm_pgoff: 0xf0,
        pgoff_before: Some(0xf0),
        addr: 0x1000,
        pfn: Some(0xf0),
        size: 0x4000,
        ..Record::new(Hook::RemapPfnRange, Class(PFNMAP | COW | PFN_MATCH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    fn event() -> Event {
        let mut e = Event::zeroed();
        e.hook = Hook::VmNormalPage.id();
        e.class = 0x11c;
        e.vm_start = 0x7f00_0000_0000;
        e.vm_end = 0x7f00_0000_4000;
        e.vm_pgoff = 0xf0;
        e.addr = 0x7f00_0000_2000;
        e.pfn = 0xf2;
        e.rdev = (1 << 20) | 1;
        e.comm[..4].copy_from_slice(b"test");
        e.file[..3].copy_from_slice(b"mem");
        e.flags = abi::EVENT_PFN_KNOWN | abi::EVENT_FILE;
        e.page_shift = 12;
        e
    }

    #[test]
    fn decodes_strings_devices_and_optional_fields() {
        let r = Record::from_event(&event()).unwrap();
        assert_eq!(r.comm, "test");
        assert_eq!(r.pfn, Some(0xf2));
        assert_eq!(r.pgoff_before, None);
        let file = r.file.as_ref().unwrap();
        assert_eq!(file.name, "mem");
        assert_eq!(file.rdev.to_string(), "1:1");
        assert_eq!(r.page_offset(), 2);
        assert_eq!(r.rule_pfn(), 0xf2);
        assert_eq!(r.class.to_string(), "pfnmap+special+pfn_match+no_page");
    }

    #[test]
    fn page_offsets_follow_the_page_size_and_never_panic() {
        let mut r = Record::from_event(&event()).unwrap();
        assert_eq!(r.page_offset(), 2);
        // arm64 with 64 KiB pages: a 512 MiB pmd.
        r.page_shift = 16;
        r.level = Level::Pmd;
        r.vm_start = 0x4000_0000;
        r.addr = 0x6000_1234;
        assert_eq!(r.page_offset(), 0x2000_0000 >> 16);
        for shift in [0, 1, 2, 3, 63, 64, 200, 255] {
            r.page_shift = shift;
            let _ = r.rule_pfn();
        }
    }

    #[test]
    fn a_huge_entrys_rule_pfn_is_its_first_pages() {
        // A 4 MiB vma of two huge pmds at 0x7f00_0000_0000, vm_pgoff 0xfd000;
        // folio_walk_start passes an address inside the second pmd.
        let mut e = event();
        e.hook = Hook::VmNormalPagePmd.id();
        e.vm_end = 0x7f00_0040_0000;
        e.vm_pgoff = 0xfd000;
        e.addr = 0x7f00_0030_5000;
        e.pfn = 0xfd200;
        e.level = 1;
        let r = Record::from_event(&e).unwrap();
        assert_eq!(r.page_offset(), 0x200);
        assert_eq!(r.rule_pfn(), 0xfd200);
        // The same address in a pte: its own page.
        e.level = 0;
        assert_eq!(Record::from_event(&e).unwrap().page_offset(), 0x305);
        e.level = 2;
        e.vm_start = 0x7f00_0000_0000;
        e.addr = 0x7f00_7fff_f000;
        assert_eq!(Record::from_event(&e).unwrap().page_offset(), 0x40000);
    }

    #[test]
    fn flags_gate_optional_fields() {
        let mut e = event();
        e.flags = 0;
        let r = Record::from_event(&e).unwrap();
        assert_eq!(r.pfn, None);
        assert_eq!(r.file, None);
    }

    #[test]
    fn unknown_hook_is_rejected() {
        let mut e = event();
        e.hook = 99;
        assert_eq!(Record::from_event(&e), None);
    }

    #[test]
    fn unknown_class_bits_are_rejected() {
        // Found by fuzzing (fuzz/corpus/record_decode/crash-ac933a3e...): a
        // class of bits this binary has no name for printed as "" in
        // trace --json and captures, which replay then refused.
        let mut e = event();
        e.class = 0x200;
        assert_eq!(Record::from_event(&e), None);
        e.class = 0x11c | 0x8000;
        assert_eq!(Record::from_event(&e), None);
        e.class = 0x1ff;
        let r = Record::from_event(&e).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
    }

    #[test]
    fn json_round_trips() {
        let r = Record::from_event(&event()).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""hook":"vm_normal_page""#), "{json}");
        assert!(json.contains(r#""rdev":"1:1""#), "{json}");
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
        let bad = json.replace("\"1:1\"", "\"1-1\"");
        let err = serde_json::from_str::<Record>(&bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1-1"), "{err}");
    }
}
