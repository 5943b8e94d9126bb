//! Page-table geometry: how a pte, pmd or pud encodes its pfn and the
//! "special" bit, and the size each level maps. Both sides use these: the
//! kernel programs (through the generated header) to classify a call, user
//! space to recompute what the rule checks (pfn == vm_pgoff + offset).
//!
//! x86-64 (arch/x86/include/asm/pgtable_types.h, page_types.h): the pfn of
//! a pte is bits 12..51; a huge pmd's starts at bit 21, a huge pud's at 30;
//! `_PAGE_BIT_SPECIAL` is `_PAGE_BIT_SOFTW1`, bit 9.

use core::fmt::Write;

pub const PAGE_SHIFT: u32 = 12;
pub const PMD_SHIFT: u32 = 21;
pub const PUD_SHIFT: u32 = 30;
/// Bits 12..51.
pub const PTE_PFN_MASK: u64 = 0x000f_ffff_ffff_f000;
/// The special bit of a pte (and of a huge pmd or pud).
pub const SPECIAL: u64 = 1 << 9;
/// `_PAGE_PRESENT`: a PROT_NONE entry has it clear (and `_PAGE_PROTNONE`
/// set), and holds its pfn bits inverted.
pub const PRESENT: u64 = 1 << 0;
/// `physical_mask` where the kernel has none (no memory encryption
/// configured): bits 0..51.
pub const PHYSICAL_MASK_DEFAULT: u64 = (1 << 52) - 1;

/// The page-table level of an entry, as the kernel's `enum pgtable_level`
/// numbers them (pte 0, pmd 1, pud 2).
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    #[default]
    Pte = 0,
    Pmd = 1,
    Pud = 2,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Pte, Level::Pmd, Level::Pud];

    pub fn from_raw(raw: u32) -> Option<Level> {
        Level::ALL.get(raw as usize).copied()
    }

    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// log2 of the bytes one entry of this level maps.
    pub const fn shift(self) -> u32 {
        match self {
            Level::Pte => PAGE_SHIFT,
            Level::Pmd => PMD_SHIFT,
            Level::Pud => PUD_SHIFT,
        }
    }

    pub const fn size(self) -> u64 {
        1 << self.shift()
    }

    /// The bits of an entry of this level that hold its (first page's) pfn.
    pub const fn pfn_mask(self) -> u64 {
        PTE_PFN_MASK & !(self.size() - 1)
    }

    /// The pfn an entry of this level points at, as x86's pte_pfn(),
    /// pmd_pfn() and pud_pfn() read it (arch/x86/include/asm/pgtable.h):
    /// a PROT_NONE entry (not empty, present bit clear) holds its pfn
    /// inverted (the L1TF mitigation, protnone_mask()), and
    /// `physical_mask` leaves out the memory-encryption bits (the SME
    /// C-bit, the TDX shared bit and all above it, Hyper-V's vTOM). The
    /// kernel programs' entry_pfn() is the same algorithm.
    pub const fn pfn(self, entry: u64, physical_mask: u64) -> u64 {
        let entry = if entry != 0 && entry & PRESENT == 0 {
            !entry
        } else {
            entry
        };
        (entry & self.pfn_mask() & physical_mask) >> PAGE_SHIFT
    }

    /// The start of the entry that maps `addr`.
    pub const fn base(self, addr: u64) -> u64 {
        addr & !(self.size() - 1)
    }

    const fn c_name(self) -> &'static str {
        match self {
            Level::Pte => "PTE",
            Level::Pmd => "PMD",
            Level::Pud => "PUD",
        }
    }
}

/// The geometry as C macros, for the generated header.
pub fn c_defines() -> String {
    let mut h = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(h, "#define PFNW_PAGE_SHIFT {PAGE_SHIFT}");
    let _ = writeln!(h, "#define PFNW_PTE_SPECIAL 0x{SPECIAL:x}ull");
    let _ = writeln!(h, "#define PFNW_PTE_PRESENT 0x{PRESENT:x}ull");
    let _ = writeln!(
        h,
        "#define PFNW_PHYSICAL_MASK_DEFAULT 0x{PHYSICAL_MASK_DEFAULT:x}ull"
    );
    for level in Level::ALL {
        let n = level.c_name();
        let _ = writeln!(h, "#define PFNW_LEVEL_{n} {}", level.raw());
        let _ = writeln!(h, "#define PFNW_{n}_SIZE 0x{:x}ull", level.size());
        let _ = writeln!(h, "#define PFNW_{n}_PFN_MASK 0x{:x}ull", level.pfn_mask());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_follow_x86_64() {
        assert_eq!(Level::Pte.pfn_mask(), 0x000f_ffff_ffff_f000);
        assert_eq!(Level::Pmd.pfn_mask(), 0x000f_ffff_ffe0_0000);
        assert_eq!(Level::Pud.pfn_mask(), 0x000f_ffff_c000_0000);
        // A present, writable, special pte of pfn 0xfd001.
        assert_eq!(
            Level::Pte.pfn(0x8000_0000_fd00_1267, PHYSICAL_MASK_DEFAULT),
            0xfd001
        );
        assert_eq!(Level::Pmd.base(0x7f00_0030_5000), 0x7f00_0020_0000);
        assert_eq!(Level::from_raw(2), Some(Level::Pud));
        assert_eq!(Level::from_raw(3), None);
    }

    /// Entries as the kernel writes them, and the pfn its pte_pfn(),
    /// pmd_pfn() and pud_pfn() return (arch/x86/include/asm/pgtable.h,
    /// pgtable-invert.h; physical_mask as boot narrows it in
    /// mem_encrypt_identity.c and coco/tdx/tdx.c).
    #[test]
    fn entries_decode_as_the_kernel_decodes_them() {
        let full = PHYSICAL_MASK_DEFAULT;
        let cases = [
            // A plain present special pte, RW, NX.
            (
                "plain pte",
                Level::Pte,
                0x8000_0000_febd_0267,
                full,
                0xfebd0,
            ),
            // mprotect(PROT_NONE): present clear, PROTNONE (bit 8) set, pfn
            // bits inverted; the special bit 9 is not.
            (
                "PROT_NONE pte",
                Level::Pte,
                0x000f_ffff_0142_f360,
                full,
                0xfebd0,
            ),
            // AMD SME/SEV: the C-bit 47 set on an encrypted page, and
            // physical_mask without it.
            (
                "SME C-bit 47",
                Level::Pte,
                0x8000_8000_1234_5067,
                0x000f_7fff_ffff_ffff,
                0x12345,
            ),
            (
                "SEV C-bit 51",
                Level::Pte,
                0x8008_0000_1234_5067,
                0x0007_ffff_ffff_ffff,
                0x12345,
            ),
            // TDX: MMIO carries the shared bit; physical_mask = shared bit - 1.
            (
                "TDX shared bit 51",
                Level::Pte,
                0x8008_0000_febd_0267,
                0x0007_ffff_ffff_ffff,
                0xfebd0,
            ),
            (
                "TDX shared bit 47",
                Level::Pte,
                0x8000_8000_febd_0267,
                0x0000_7fff_ffff_ffff,
                0xfebd0,
            ),
            // A huge pmd with _PAGE_PAT_LARGE (bit 12) set: not a pfn bit.
            (
                "huge pmd, PAT",
                Level::Pmd,
                0x8000_0000_4000_12e7,
                full,
                0x40000,
            ),
            (
                "PROT_NONE huge pmd",
                Level::Pmd,
                0x000f_ffff_bfe0_13e0,
                full,
                0x40000,
            ),
            (
                "huge pud, PAT",
                Level::Pud,
                0x8000_0000_8000_12e7,
                full,
                0x80000,
            ),
        ];
        for (what, level, raw, mask, pfn) in cases {
            assert_eq!(level.pfn(raw, mask), pfn, "{what}: {raw:#x}");
        }
        // The raw bits would have been wrong in every inverted or encrypted case.
        assert_ne!(Level::Pte.pfn_mask() & 0x000f_ffff_0142_f360, 0xfebd0 << 12);
        assert_eq!(Level::Pte.pfn(0, full), 0, "an empty entry is not inverted");
    }

    #[test]
    fn header_has_every_level() {
        let h = c_defines();
        assert!(h.contains("#define PFNW_LEVEL_PMD 1\n"));
        assert!(h.contains("#define PFNW_PMD_SIZE 0x200000ull\n"));
        assert!(h.contains("#define PFNW_PUD_PFN_MASK 0xfffffc0000000ull\n"));
        assert!(h.contains("#define PFNW_PTE_SPECIAL 0x200ull\n"));
    }
}
