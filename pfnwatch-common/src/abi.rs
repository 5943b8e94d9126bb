//! Records and sizes shared with the kernel programs.
//!
//! Each struct is declared once with [`abi_struct!`], which emits the
//! `#[repr(C)]` Rust type, its C definition for the generated header, and
//! the field offsets the BTF layout test compares against the object.

use crate::{Class, Hook, class};

/// Rust's view of a C field type, for rendering the generated header.
pub trait CField {
    fn c_decl(name: &str) -> String;
}

macro_rules! c_scalar {
    ($($ty:ty => $c:literal),* $(,)?) => {
        $(impl CField for $ty {
            fn c_decl(name: &str) -> String {
                format!("{} {name}", $c)
            }
        })*
    };
}
c_scalar!(u8 => "__u8", u16 => "__u16", u32 => "__u32", u64 => "__u64", i32 => "__s32", i64 => "__s64");

/// Word arrays (the kernel stack).
impl<const N: usize> CField for [u64; N] {
    fn c_decl(name: &str) -> String {
        format!("__u64 {name}[{N}]")
    }
}

/// Byte arrays are NUL-padded strings on the C side.
impl<const N: usize> CField for [u8; N] {
    fn c_decl(name: &str) -> String {
        format!("char {name}[{N}]")
    }
}

macro_rules! abi_struct {
    (
        $(#[doc = $doc:literal])*
        pub struct $name:ident as $cname:literal {
            $( $(#[doc = $fdoc:literal])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[doc = $doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name { $( $(#[doc = $fdoc])* pub $field: $ty, )* }

        impl $name {
            /// The C struct tag.
            pub const C_NAME: &'static str = $cname;

            /// Field names and byte offsets, in declaration order.
            pub const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($field), core::mem::offset_of!($name, $field))),*];

            /// The C definition, as the kernel programs see it.
            pub fn c_definition() -> String {
                let mut out = format!("struct {} {{\n", $cname);
                $(out.push_str(&format!("\t{};\n", <$ty as $crate::abi::CField>::c_decl(stringify!($field))));)*
                out.push_str("};\n");
                out
            }
        }
    };
}

/// pgtable.rs declares its [`crate::pgtable::Geometry`] with it too.
pub(crate) use abi_struct;

pub const COMM_LEN: usize = 16;
pub const NAME_LEN: usize = 32;
/// The kernel's MODULE_NAME_LEN (64 - sizeof(unsigned long)).
pub const MODULE_NAME_LEN: usize = 56;
/// Kernel return addresses kept per record (the call path).
pub const STACK_DEPTH: usize = 32;

abi_struct! {
    /// One detail record, sent through the `events` ring buffer for the
    /// (hook, class) pairs user space asked for.
    pub struct Event as "pfnwatch_event" {
        /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
        pub ts_ns: u64,
        pub cgroup_id: u64,
        /// `vma->vm_flags` when the hooked function returned.
        pub vm_flags: u64,
        pub vm_start: u64,
        pub vm_end: u64,
        /// `vma->vm_pgoff` when the hooked function returned.
        pub vm_pgoff: u64,
        /// `vma->vm_pgoff` when a remap was entered (see [`EVENT_PGOFF_BEFORE`]).
        pub pgoff_before: u64,
        /// The address looked up or mapped (a remap's start).
        pub addr: u64,
        /// The pfn at `addr`, when known (see [`EVENT_PFN_KNOWN`]).
        pub pfn: u64,
        /// Bytes covered: a remap's size, else the page or huge page size.
        pub size: u64,
        /// The raw pte/pmd value, for the page-table hooks.
        pub entry: u64,
        /// Return value: -errno, a vm_fault_t, or 1/0 for page present/NULL.
        pub ret: i64,
        /// `vm_file`'s inode number.
        pub ino: u64,
        /// The file's mmap (or 7.x mmap_prepare) handler: a kernel address
        /// user space symbolises (0: none).
        pub mmap_fn: u64,
        /// The vma's fault (or huge_fault) handler (0: none).
        pub fault_fn: u64,
        /// The inventory's id of the vma (its created and gone records carry
        /// the same one; 0 on other hooks).
        pub vma_id: u64,
        /// `vm_file`'s `i_rdev` (kernel encoding: major << 20 | minor).
        pub rdev: u32,
        /// `vm_file`'s superblock `s_dev` (kernel encoding).
        pub sdev: u32,
        pub pid: u32,
        pub tgid: u32,
        /// A [`Hook`] id.
        pub hook: u16,
        /// A [`class::Class`] bit set.
        pub class: u16,
        /// `EVENT_*` bits.
        pub flags: u32,
        pub comm: [u8; COMM_LEN],
        /// `vm_file`'s dentry name.
        pub file: [u8; NAME_LEN],
        /// `vm_file`'s parent dentry name (the PCI device of a BAR file).
        pub parent: [u8; NAME_LEN],
        /// The module that owns the file's operations (empty: built in).
        pub module: [u8; MODULE_NAME_LEN],
        /// Bytes of `stack` filled by bpf_get_stack (0: not captured).
        pub stack_bytes: u32,
        /// The page-table level of `entry` (0 pte, 1 pmd, 2 pud).
        pub level: u16,
        /// log2 of the kernel's page size ([`crate::pgtable::Geometry`]):
        /// what turns addresses into the page offsets the pfn rule reads.
        pub page_shift: u16,
        /// Kernel return addresses, innermost first.
        pub stack: [u64; STACK_DEPTH],
    }
}

/// `Event::pfn` is valid.
pub const EVENT_PFN_KNOWN: u32 = 1 << 0;
/// `Event::pgoff_before` was captured on entry.
pub const EVENT_PGOFF_BEFORE: u32 = 1 << 1;
/// The vma has a `vm_file`; `ino`, `rdev`, `sdev`, `file`, `parent`,
/// `module` and `mmap_fn` are set.
pub const EVENT_FILE: u32 = 1 << 2;
/// Seen at fentry: the kernel is about to BUG() on the call.
pub const EVENT_AT_ENTRY: u32 = 1 << 3;
/// The pfn is the shared zero page's.
pub const EVENT_ZERO_PAGE: u32 = 1 << 4;
/// An inventory record of a vma a fork copied into the child.
pub const EVENT_FORK: u32 = 1 << 5;

/// An inventory record of a vma that existed before pfnwatch started (or
/// that the inventory missed), found by walking every task's vmas.
pub const EVENT_EXISTING: u32 = 1 << 6;

/// An inventory record of a vma gone whose free no program saw (the
/// kernel skipped the call: `pfnwatch_program_misses_total`): two walks of
/// every task's vmas in a row did not find it. Only its id and range are
/// known.
pub const EVENT_FREE_UNSEEN: u32 = 1 << 7;

/// Named event flags, for the C header.
pub const EVENT_FLAGS: [(&str, u32); 8] = [
    ("PFN_KNOWN", EVENT_PFN_KNOWN),
    ("PGOFF_BEFORE", EVENT_PGOFF_BEFORE),
    ("FILE", EVENT_FILE),
    ("AT_ENTRY", EVENT_AT_ENTRY),
    ("ZERO_PAGE", EVENT_ZERO_PAGE),
    ("FORK", EVENT_FORK),
    ("EXISTING", EVENT_EXISTING),
    ("FREE_UNSEEN", EVENT_FREE_UNSEEN),
];

/// Slots of the `drops` per-CPU array: what the kernel could not keep.
pub const LOSS_RINGBUF: u32 = 0;
/// The inventory map was full: a vma went untracked.
pub const LOSS_INVENTORY: u32 = 1;
/// A record that may be a warning or critical hit found both ring
/// buffers full.
pub const LOSS_URGENT: u32 = 2;
/// A tracked vma's free went unseen and a walk found it gone
/// ([`EVENT_FREE_UNSEEN`]).
pub const LOSS_FREE_UNSEEN: u32 = 3;
pub const LOSS_SLOTS: usize = 4;
/// Live pfn-mapping vmas the inventory tracks at most.
pub const INVENTORY_SLOTS: usize = 65536;
/// u64s in an inventory value (`struct tracked`: id, mm, start, end,
/// watched, seen, vm_flags); the id, the one user space reads, is first.
pub const INVENTORY_VALUE_U64S: usize = 7;

/// Slots of the `lookups` array (u64 each), the state of the page-table
/// lookup programs when they attach on demand. Live watched vmas: pfn
/// mappings in the inventory that are not a kernel subsystem's safe by
/// design, plus any the inventory had no room for (never taken back).
pub const LOOKUPS_WATCHED: u32 = 0;
/// Nonzero while user space has the lookup programs attached; while zero,
/// the first watched vma sends a wake-up through `LOOKUP_WAKE`.
pub const LOOKUPS_ATTACHED: u32 = 1;
/// The number of the latest walk of every task's vmas (user space sets it
/// before each): the inventory stamps each vma with the walk that last
/// found it, and one missing from two walks in a row is gone.
pub const LOOKUPS_WALK: u32 = 2;
pub const LOOKUP_SLOTS: usize = 3;
/// Size of the `lookup_wake` ring buffer: `bpf_ktime_get_ns()` of each
/// watched vma created while the lookups were detached.
pub const LOOKUP_WAKE_BYTES: u32 = 4096;
/// `file_operations` whose mappings never call the lookups in (user space
/// fills `SAFE_FOPS` from kallsyms; 0: unknown, not skipped).
pub const SAFE_FOPS_SLOTS: usize = 4;

/// Entries of the `counts` per-CPU array: index [`counts_index`].
pub const COUNTS_LEN: usize = Hook::COUNT * class::SLOTS;
/// Errno slots per hook in the `errors` per-CPU array; the last one
/// collects every larger errno.
pub const ERRNO_SLOTS: usize = 64;
/// Entries of the `errors` per-CPU array: index [`errors_index`].
pub const ERRORS_LEN: usize = Hook::COUNT * ERRNO_SLOTS;
/// Process or thread ids the kernel programs can filter records by
/// (`only_pids`); a longer `--pid` list is filtered in user space.
pub const PID_FILTER_SLOTS: usize = 8;
/// Default size of the `events` ring buffer in bytes.
pub const RINGBUF_BYTES: u32 = 256 * 1024;
/// Size of the `urgent_events` ring buffer: records that may be a warning
/// or critical hit, which a flood of others cannot crowd out.
pub const URGENT_RINGBUF_BYTES: u32 = 64 * 1024;

/// Names of the kernel objects user space looks up.
pub mod names {
    pub const COUNTS: &str = "counts";
    pub const ERRORS: &str = "errors";
    /// Per-CPU `u64[LOSS_SLOTS]`: what the kernel could not keep.
    pub const DROPS: &str = "drops";
    pub const EVENTS: &str = "events";
    pub const URGENT_EVENTS: &str = "urgent_events";
    /// `const volatile __u64[Hook::COUNT * CLASS_WORDS]`: the (hook, class)
    /// pairs whose records go to `URGENT_EVENTS`.
    pub const URGENT_MASK: &str = "urgent_mask";
    /// `const volatile __u32`: the tgid whose calls are never reported.
    pub const SELF_TGID: &str = "self_tgid";
    /// `const volatile __u64[Hook::COUNT * CLASS_WORDS]`: which
    /// (hook, class) pairs send a record.
    pub const RECORD_MASK: &str = "record_mask";
    /// `const volatile __u32`: nonzero to put the kernel call path in records.
    pub const CAPTURE_STACK: &str = "capture_stack";
    /// `const volatile __u32[PID_FILTER_SLOTS]`: when `ONLY_PID_COUNT` is
    /// nonzero, records are sent only for calls by these pids or tgids.
    pub const ONLY_PIDS: &str = "only_pids";
    /// `const volatile __u32`: how many of `ONLY_PIDS` are set (0: all).
    pub const ONLY_PID_COUNT: &str = "only_pid_count";
    /// `const volatile struct pfnw_geometry`: the running kernel's
    /// page-table layout ([`crate::pgtable::Geometry`]).
    pub const GEOMETRY: &str = "geometry";
    /// `const volatile __u64`: the address of x86's `physical_mask` (0:
    /// unknown, take bits 0..51).
    pub const PHYSICAL_MASK_ADDR: &str = "physical_mask_addr";
    /// `const volatile __u64`: the address of `zero_pfn` (6.x) or
    /// `zero_page_pfn` (7.x) (0: unknown).
    pub const ZERO_PFN_ADDR: &str = "zero_pfn_addr";
    /// `const volatile __u64`: `&special_mapping_vmops`, the vDSO's vm_ops
    /// (0: unknown).
    pub const SPECIAL_MAPPING_VMOPS: &str = "special_mapping_vmops";
    /// `const volatile __u64[SAFE_FOPS_SLOTS]`: `file_operations` whose
    /// pfn mappings do not count as watched (0: unused slot).
    pub const SAFE_FOPS: &str = "safe_fops";
    /// `u64[LOOKUP_SLOTS]` array: the on-demand lookups' state.
    pub const LOOKUPS: &str = "lookups";
    /// Hash of the live pfn-mapping vmas, by kernel address, to
    /// `u64[INVENTORY_VALUE_U64S]` (`struct tracked`, its id first).
    pub const INVENTORY: &str = "inventory";
    /// Ring buffer of wake-ups for the on-demand lookups.
    pub const LOOKUP_WAKE: &str = "lookup_wake";
    /// The iter/task_vma program that walks every task's vmas.
    pub const EXISTING_VMAS: &str = "existing_vmas";
}

/// Index into `counts` of a (hook, class) pair.
pub const fn counts_index(hook: Hook, class: Class) -> u32 {
    (hook.id() as u32) * (class::SLOTS as u32) + (class.0 as u32 & (class::SLOTS as u32 - 1))
}

/// The (hook, class) pair a `counts` index counts; `None` past the hooks.
pub fn counts_slot(index: usize) -> Option<(Hook, Class)> {
    let hook = Hook::from_id(u16::try_from(index / class::SLOTS).ok()?)?;
    Some((hook, Class((index % class::SLOTS) as u16)))
}

/// Index into `errors` of a hook's errno (larger errnos share the last slot).
pub const fn errors_index(hook: Hook, errno: u32) -> u32 {
    let slot = if errno as usize >= ERRNO_SLOTS {
        ERRNO_SLOTS as u32 - 1
    } else {
        errno
    };
    (hook.id() as u32) * (ERRNO_SLOTS as u32) + slot
}

/// The (hook, errno) an `errors` index counts; the last slot of a hook
/// stands for every errno from `ERRNO_SLOTS - 1` on.
pub fn errors_slot(index: usize) -> Option<(Hook, u32)> {
    let hook = Hook::from_id(u16::try_from(index / ERRNO_SLOTS).ok()?)?;
    Some((hook, (index % ERRNO_SLOTS) as u32))
}

/// The index arithmetic above, as the C macros the kernel programs use.
pub fn c_index_defines() -> String {
    format!(
        "#define PFNW_COUNTS_LEN {COUNTS_LEN}\n\
         #define PFNW_COUNTS_INDEX(hook, class) ((__u32)(hook) * {slots} + ((__u32)(class) & {last}))\n\
         #define PFNW_ERRNO_SLOTS {ERRNO_SLOTS}\n\
         #define PFNW_ERRORS_LEN {ERRORS_LEN}\n\
         #define PFNW_ERRORS_INDEX(hook, err) ((__u32)(hook) * {ERRNO_SLOTS} + \
         ((err) >= {ERRNO_SLOTS} ? {top} : (__u32)(err)))\n",
        slots = class::SLOTS,
        last = class::SLOTS - 1,
        top = ERRNO_SLOTS - 1,
    )
}

/// Bytes of a record sent without a call path: everything before `stack`.
/// A session that captures none sends these, so twice as many records fit
/// the ring buffer.
pub const EVENT_BYTES_NO_STACK: usize = std::mem::offset_of!(Event, stack);

impl Event {
    /// Decodes a ring buffer record, whole or without its call path. `None`
    /// if it is shorter than that.
    pub fn from_bytes(bytes: &[u8]) -> Option<Event> {
        if let Some(whole) = bytes.get(..size_of::<Event>()) {
            return Some(bytemuck::pod_read_unaligned(whole));
        }
        let head = bytes.get(..EVENT_BYTES_NO_STACK)?;
        let mut e: Event = bytemuck::Zeroable::zeroed();
        bytemuck::bytes_of_mut(&mut e)
            .get_mut(..EVENT_BYTES_NO_STACK)?
            .copy_from_slice(head);
        // No stack came, whatever the field says.
        e.stack_bytes = 0;
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_has_no_padding_and_is_8_aligned() {
        // bytemuck::Pod already refuses padding; check the size stays put.
        assert_eq!(size_of::<Event>(), 296 + 8 * STACK_DEPTH);
        assert_eq!(size_of::<Event>() % 8, 0);
    }

    #[test]
    fn records_without_a_call_path_decode_with_none() {
        let mut e: Event = bytemuck::Zeroable::zeroed();
        e.pid = 7;
        e.page_shift = 12;
        e.stack_bytes = 16;
        e.stack[0] = 0xffff_ffff_8100_0000;
        let bytes = bytemuck::bytes_of(&e);
        let whole = Event::from_bytes(bytes).expect("a whole record");
        assert_eq!(
            (whole.pid, whole.stack_bytes, whole.stack[0]),
            (7, 16, e.stack[0])
        );
        let short = Event::from_bytes(&bytes[..EVENT_BYTES_NO_STACK]).expect("a short one");
        assert_eq!((short.pid, short.page_shift), (7, 12));
        assert_eq!((short.stack_bytes, short.stack[0]), (0, 0));
        assert!(Event::from_bytes(&bytes[..EVENT_BYTES_NO_STACK - 1]).is_none());
        // The stack's offset is what the C side's offsetof gives.
        assert_eq!(EVENT_BYTES_NO_STACK, 296);
    }

    #[test]
    fn c_definition_lists_every_field_in_order() {
        let c = Event::c_definition();
        let mut last = 0;
        for (name, _) in Event::FIELDS {
            let at = c
                .find(&format!(" {name};"))
                .or_else(|| c.find(&format!(" {name}[")))
                .unwrap_or_else(|| panic!("{name} missing from {c}"));
            assert!(at > last, "{name} out of order");
            last = at;
        }
        assert!(c.contains("char comm[16];"));
        assert!(c.contains("__s64 ret;"));
    }

    #[test]
    fn from_bytes_rejects_short_and_reads_fields() {
        assert!(Event::from_bytes(&[0u8; 100]).is_none());
        let mut ev = Event::zeroed();
        ev.pfn = 0xf0;
        ev.hook = Hook::RemapPfnRange.id();
        let mut bytes = bytemuck::bytes_of(&ev).to_vec();
        bytes.extend_from_slice(&[0xff; 8]); // ring buffer records are padded
        assert_eq!(Event::from_bytes(&bytes), Some(ev));
    }

    #[test]
    fn indexes_are_dense_and_decode_back() {
        assert_eq!(counts_index(Hook::VmNormalPage, Class(0)), 0);
        let last = counts_index(Hook::ApplyToPageRange, Class(511));
        assert_eq!(last as usize, COUNTS_LEN - 1);
        assert_eq!(
            counts_slot(last as usize),
            Some((Hook::ApplyToPageRange, Class(511)))
        );
        assert_eq!(counts_slot(COUNTS_LEN), None);
        let i = errors_index(Hook::RemapPfnRange, 22);
        assert_eq!(errors_slot(i as usize), Some((Hook::RemapPfnRange, 22)));
        // Large errnos share the last slot of their hook.
        assert_eq!(
            errors_index(Hook::RemapPfnRange, 4095),
            errors_index(Hook::RemapPfnRange, 63)
        );
        assert_eq!(errors_slot(ERRORS_LEN), None);
        let c = c_index_defines();
        assert!(
            c.contains("((__u32)(hook) * 512 + ((__u32)(class) & 511))"),
            "{c}"
        );
        assert!(c.contains("((err) >= 64 ? 63 : (__u32)(err))"), "{c}");
    }

    use bytemuck::Zeroable;
}
