//! Page-table geometry: how a pte, pmd or pud encodes its pfn and the
//! "special" bit, and the size each level maps. It differs by architecture
//! and page size, so it is data, not constants: the loader picks the
//! running kernel's ([`Geometry::of_host`]) and writes it into the kernel
//! programs' read-only data, and user space decodes with the same values.
//!
//! x86-64 (arch/x86/include/asm/pgtable_types.h, page_types.h): 4 KiB
//! pages; the pfn of a pte is bits 12..51; `_PAGE_BIT_SPECIAL` is
//! `_PAGE_BIT_SOFTW1`, bit 9; a PROT_NONE entry holds its pfn inverted
//! (pgtable-invert.h, the L1TF mitigation).
//!
//! arm64 (arch/arm64/include/asm/pgtable-hw.h, pgtable-prot.h,
//! pgtable.h `__pte_to_phys`): 4, 16 or 64 KiB pages; the output address
//! starts at the page shift; `PTE_SPECIAL` is software bit 56; bit 9 is a
//! shareability bit, set on nearly every pte. A 52-bit physical address
//! puts its top bits elsewhere: with 64 KiB pages pte bits 12..15 hold
//! PA 48..51; with LPA2 (4 and 16 KiB pages) bits 8..9 hold PA 50..51, and
//! the output address runs to bit 49. Without LPA2 those bits 8..9 are the
//! shareability field, so they only count where LPA2 is on (see
//! [`Geometry::arm64`]). PROT_NONE entries are not inverted.

use core::fmt::Write;

/// `physical_mask` where the kernel has none (x86 without memory
/// encryption, and every other architecture): bits 0..51.
pub const PHYSICAL_MASK_DEFAULT: u64 = (1 << 52) - 1;

/// log2 of the page sizes pfnwatch knows: 4, 16 and 64 KiB.
pub const PAGE_SHIFTS: [u8; 3] = [12, 14, 16];
/// x86-64's, and most arm64 kernels'; what records without one assume.
pub const PAGE_SHIFT_DEFAULT: u8 = 12;

/// log2 of the bytes one entry of `level` maps: each table is one page of
/// 8-byte entries, so each level up maps `page_shift - 3` more bits (x86-64
/// 12/21/30; arm64 4K 12/21/30, 16K 14/25/36, 64K 16/29/42).
pub const fn level_shift(page_shift: u32, level: Level) -> u32 {
    page_shift.saturating_add(level.raw().saturating_mul(page_shift.saturating_sub(3)))
}

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

    const fn c_name(self) -> &'static str {
        match self {
            Level::Pte => "PTE",
            Level::Pmd => "PMD",
            Level::Pud => "PUD",
        }
    }
}

crate::abi::abi_struct! {
    /// One architecture's page-table entry layout, as the kernel programs
    /// read it from their `geometry` global.
    pub struct Geometry as "pfnw_geometry" {
        /// Bytes one pte, pmd and pud maps (1 << the level's shift).
        pub pte_size: u64,
        pub pmd_size: u64,
        pub pud_size: u64,
        /// log2 of `pte_size`: a pfn is a physical address shifted by it.
        pub page_shift: u64,
        /// Entry bits that hold physical-address bits in place (for a pte;
        /// a huge entry's also leave out the bits below its size).
        pub pfn_mask: u64,
        /// Entry bits that hold the top physical-address bits elsewhere,
        /// and how far left they move (arm64's 52-bit addresses; 0 else).
        pub pfn_high_mask: u64,
        pub pfn_high_shift: u64,
        /// The software "special" bit (pte_special, pmd_special, pud_special).
        pub special: u64,
        /// x86: an entry that is not empty and has this (present) bit clear
        /// is PROT_NONE and holds its pfn bits inverted. 0: never inverted.
        pub invert_unless: u64,
    }
}

/// The architectures pfnwatch decodes entries for ([`Geometry::of_host`]).
pub const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

impl Geometry {
    /// x86-64: 4 KiB pages, pfn bits 12..51, special bit 9, PROT_NONE inverted.
    pub const X86_64: Geometry = Geometry {
        pte_size: 1 << 12,
        pmd_size: 1 << level_shift(12, Level::Pmd),
        pud_size: 1 << level_shift(12, Level::Pud),
        page_shift: 12,
        pfn_mask: 0x000f_ffff_ffff_f000,
        pfn_high_mask: 0,
        pfn_high_shift: 0,
        special: 1 << 9,
        invert_unless: 1 << 0,
    };

    /// arm64 with `page_shift` 12, 14 or 16 (4, 16, 64 KiB pages) and LPA2
    /// on or off (only meaningful below 64 KiB pages).
    pub const fn arm64(page_shift: u32, lpa2: bool) -> Option<Geometry> {
        if !matches!(page_shift, 12 | 14 | 16) {
            return None;
        }
        let (pfn_mask, pfn_high_mask, pfn_high_shift) = if page_shift == 16 {
            // PTE_ADDR_LOW bits 16..47, PTE_ADDR_HIGH bits 12..15 -> PA 48..51.
            (bits_between(16, 47), bits_between(12, 15), 36)
        } else if lpa2 {
            // PTE_ADDR_LOW to bit 49, PTE_ADDR_HIGH bits 8..9 -> PA 50..51.
            (bits_between(page_shift, 49), bits_between(8, 9), 42)
        } else {
            // 48-bit output addresses: bits 48..50 are RES0 or PTE_GP.
            (bits_between(page_shift, 47), 0, 0)
        };
        Some(Geometry {
            pte_size: 1 << page_shift,
            pmd_size: 1 << level_shift(page_shift, Level::Pmd),
            pud_size: 1 << level_shift(page_shift, Level::Pud),
            page_shift: page_shift as u64,
            pfn_mask,
            pfn_high_mask,
            pfn_high_shift,
            special: 1 << 56,
            invert_unless: 0,
        })
    }

    /// The geometry of architecture `arch` (Rust's `std::env::consts::ARCH`
    /// names) with `page_shift`, and on arm64 whether LPA2 is on; None
    /// where pfnwatch does not know the layout (it would read wrong bits).
    pub const fn of_host(arch: &str, page_shift: u32, lpa2: bool) -> Option<Geometry> {
        match arch.as_bytes() {
            b"x86_64" if page_shift == 12 => Some(Geometry::X86_64),
            b"aarch64" => Geometry::arm64(page_shift, lpa2),
            _ => None,
        }
    }

    /// Bytes one entry of `level` maps.
    pub const fn size(&self, level: Level) -> u64 {
        match level {
            Level::Pte => self.pte_size,
            Level::Pmd => self.pmd_size,
            Level::Pud => self.pud_size,
        }
    }

    /// The start of the entry of `level` that maps `addr`.
    pub const fn base(&self, level: Level, addr: u64) -> u64 {
        addr & !(self.size(level) - 1)
    }

    /// The pfn an entry of `level` points at (its first page's, for a huge
    /// entry), as the kernel's pte_pfn(), pmd_pfn() and pud_pfn() read it.
    /// On x86 a PROT_NONE entry holds its pfn inverted, and
    /// `physical_mask` leaves out the memory-encryption bits (the SME
    /// C-bit, the TDX shared bit and all above it, Hyper-V's vTOM). The
    /// kernel programs' entry_pfn() is the same algorithm.
    pub const fn pfn(&self, level: Level, entry: u64, physical_mask: u64) -> u64 {
        let entry = if self.invert_unless != 0 && entry != 0 && entry & self.invert_unless == 0 {
            !entry
        } else {
            entry
        };
        let low = entry & self.pfn_mask & !(self.size(level) - 1);
        let high = (entry & self.pfn_high_mask) << self.pfn_high_shift;
        ((low | high) & physical_mask) >> self.page_shift
    }

    /// Page index of `addr` from `start`.
    pub const fn pages(&self, start: u64, addr: u64) -> u64 {
        addr.saturating_sub(start) >> self.page_shift
    }
}

/// Bits `low..=high` set.
const fn bits_between(low: u32, high: u32) -> u64 {
    (u64::MAX >> (63 - high)) & !((1u64 << low) - 1)
}

/// The levels and the defaults as C macros, for the generated header; the
/// geometry itself is the `pfnw_geometry` struct.
pub fn c_defines() -> String {
    let mut h = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        h,
        "#define PFNW_PHYSICAL_MASK_DEFAULT 0x{PHYSICAL_MASK_DEFAULT:x}ull"
    );
    for level in Level::ALL {
        let _ = writeln!(h, "#define PFNW_LEVEL_{} {}", level.c_name(), level.raw());
    }
    let _ = writeln!(h, "\n{}", Geometry::c_definition());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: Geometry = Geometry::X86_64;

    #[test]
    fn x86_64_masks_and_sizes() {
        assert_eq!(X86.size(Level::Pmd), 2 << 20);
        assert_eq!(X86.size(Level::Pud), 1 << 30);
        assert_eq!(
            X86.pfn_mask & !(X86.size(Level::Pmd) - 1),
            0x000f_ffff_ffe0_0000
        );
        assert_eq!(
            X86.pfn_mask & !(X86.size(Level::Pud) - 1),
            0x000f_ffff_c000_0000
        );
        // A present, writable, special pte of pfn 0xfd001.
        assert_eq!(
            X86.pfn(Level::Pte, 0x8000_0000_fd00_1267, PHYSICAL_MASK_DEFAULT),
            0xfd001
        );
        assert_eq!(X86.base(Level::Pmd, 0x7f00_0030_5000), 0x7f00_0020_0000);
        assert_eq!(X86.pages(0x7f00_0000_0000, 0x7f00_0000_3000), 3);
        assert_eq!(Level::from_raw(2), Some(Level::Pud));
        assert_eq!(Level::from_raw(3), None);
    }

    /// Entries as the kernel writes them, and the pfn its pte_pfn(),
    /// pmd_pfn() and pud_pfn() return (arch/x86/include/asm/pgtable.h,
    /// pgtable-invert.h; physical_mask as boot narrows it in
    /// mem_encrypt_identity.c and coco/tdx/tdx.c).
    #[test]
    fn x86_64_entries_decode_as_the_kernel_decodes_them() {
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
            // AMD SME/SEV: the C-bit set on an encrypted page, and
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
            assert_eq!(X86.pfn(level, raw, mask), pfn, "{what}: {raw:#x}");
        }
        // The raw bits would have been wrong in every inverted or encrypted case.
        assert_ne!(X86.pfn_mask & 0x000f_ffff_0142_f360, 0xfebd0 << 12);
        assert_eq!(
            X86.pfn(Level::Pte, 0, full),
            0,
            "an empty entry is not inverted"
        );
    }

    /// An arm64 user device pte as pfn_pte(pfn, pgprot_noncached(...)) plus
    /// pte_mkspecial builds it (pgtable-hw.h, pgtable-prot.h): valid, page,
    /// AttrIndx, user, shareability 0b11 (without LPA2), AF, nG, DBM
    /// (PTE_WRITE), PXN, UXN, special.
    fn arm64_device_pte(address_bits: u64, lpa2: bool) -> u64 {
        let shared = if lpa2 { 0 } else { 3 << 8 };
        address_bits
            | 1
            | 1 << 1
            | 1 << 2
            | 1 << 6
            | shared
            | 1 << 10
            | 1 << 11
            | 1 << 51
            | 1 << 53
            | 1 << 54
            | 1 << 56
    }

    #[test]
    fn arm64_entries_decode_as_the_kernel_decodes_them() {
        let full = PHYSICAL_MASK_DEFAULT;
        let k4 = Geometry::arm64(12, false).unwrap();
        let pte = arm64_device_pte(0x0000_0000_1000_0000, false);
        assert_eq!(k4.pfn(Level::Pte, pte, full), 0x10000);
        assert_ne!(pte & k4.special, 0);
        // Bit 9 is shareability, set here though the pte is not "special"
        // in x86's sense: reading x86's bit would call every pte special.
        assert_ne!(pte & X86.special, 0);
        // PROT_NONE (valid clear, PTE_PRESENT_INVALID) is not inverted.
        assert_eq!(k4.pfn(Level::Pte, pte & !1, full), 0x10000);
        // A 2 MiB block and a 1 GiB block.
        assert_eq!(k4.size(Level::Pmd), 2 << 20);
        assert_eq!(k4.size(Level::Pud), 1 << 30);
        let block = 0x0000_0040_0020_0000 | 1 | 1 << 10 | 3 << 8 | 1 << 56;
        assert_eq!(k4.pfn(Level::Pmd, block, full), 0x0400_0200);

        // LPA2: PA bits 48..49 in place, 50..51 in pte bits 8..9.
        let lpa2 = Geometry::arm64(12, true).unwrap();
        let pte = arm64_device_pte(0x0003_0000_1234_5000 | 3 << 8, true);
        assert_eq!(lpa2.pfn(Level::Pte, pte, full), 0x000f_0000_1234_5000 >> 12);
        // The same bits without LPA2 are shareability, not address.
        let pte = arm64_device_pte(0x0000_0000_1234_5000, false);
        assert_eq!(k4.pfn(Level::Pte, pte, full), 0x12345);

        // 16 KiB pages: 32 MiB and 64 GiB huge entries.
        let k16 = Geometry::arm64(14, false).unwrap();
        assert_eq!(k16.size(Level::Pmd), 32 << 20);
        assert_eq!(k16.size(Level::Pud), 64 << 30);
        assert_eq!(
            k16.pfn(Level::Pte, arm64_device_pte(0x1_0000_4000, false), full),
            0x4_0001
        );

        // 64 KiB pages, 52-bit PA: PA 48..51 in pte bits 12..15.
        let k64 = Geometry::arm64(16, false).unwrap();
        assert_eq!(k64.size(Level::Pmd), 512 << 20);
        let pte = arm64_device_pte(0x0000_0000_1234_0000 | 0xf << 12, false);
        assert_eq!(k64.pfn(Level::Pte, pte, full), 0x000f_0000_1234_0000 >> 16);

        assert_eq!(Geometry::arm64(13, false), None);
    }

    #[test]
    fn hosts_pfnwatch_decodes() {
        assert_eq!(Geometry::of_host("x86_64", 12, false), Some(X86));
        assert_eq!(Geometry::of_host("x86_64", 14, false), None);
        assert_eq!(
            Geometry::of_host("aarch64", 16, true),
            Geometry::arm64(16, true)
        );
        assert_eq!(Geometry::of_host("riscv64", 12, false), None);
        assert!(
            ARCHES
                .iter()
                .all(|arch| Geometry::of_host(arch, 12, false).is_some())
        );
    }

    #[test]
    fn header_has_every_level_and_the_geometry() {
        let h = c_defines();
        assert!(h.contains("#define PFNW_LEVEL_PMD 1\n"));
        assert!(h.contains("struct pfnw_geometry {\n\t__u64 pte_size;\n"));
        assert!(h.contains("\t__u64 invert_unless;\n};"));
    }
}
