//! How the kernel programs classify each call: a small bit set per call.
//! Counters are kept per (hook, class), so every combination has a slot.

/// One classification bit.
#[derive(Clone, Copy, Debug)]
pub struct ClassBit {
    pub mask: u16,
    /// Short name used in output, metrics labels and expectations.
    pub name: &'static str,
    /// Name of the C macro (`PFNW_CLASS_<c_name>`).
    pub c_name: &'static str,
    pub doc: &'static str,
}

pub const MIXEDMAP: u16 = 1 << 0;
pub const COW: u16 = 1 << 1;
pub const SPECIAL: u16 = 1 << 2;
pub const PFN_MATCH: u16 = 1 << 3;
pub const NO_PAGE: u16 = 1 << 4;
pub const PARTIAL: u16 = 1 << 5;
pub const ANON: u16 = 1 << 6;
pub const ERROR: u16 = 1 << 7;
pub const PFNMAP: u16 = 1 << 8;

pub const BITS: [ClassBit; 9] = [
    ClassBit {
        mask: MIXEDMAP,
        name: "mixedmap",
        c_name: "MIXEDMAP",
        doc: "the vma is VM_MIXEDMAP",
    },
    ClassBit {
        mask: COW,
        name: "cow",
        c_name: "COW",
        doc: "is_cow_mapping(vm_flags): private and may become writable",
    },
    ClassBit {
        mask: SPECIAL,
        name: "special",
        c_name: "SPECIAL",
        doc: "the pte/pmd has the special bit set",
    },
    ClassBit {
        mask: PFN_MATCH,
        name: "pfn_match",
        c_name: "PFN_MATCH",
        doc: "pfn == vm_pgoff + (addr - vm_start) / PAGE_SIZE",
    },
    ClassBit {
        mask: NO_PAGE,
        name: "no_page",
        c_name: "NO_PAGE",
        doc: "a page-returning function returned NULL",
    },
    ClassBit {
        mask: PARTIAL,
        name: "partial",
        c_name: "PARTIAL",
        doc: "a remap covers only part of the vma",
    },
    ClassBit {
        mask: ANON,
        name: "anon",
        c_name: "ANON",
        doc: "the page or folio returned is anonymous (a COW copy)",
    },
    ClassBit {
        mask: ERROR,
        name: "error",
        c_name: "ERROR",
        doc: "the call failed (-errno or a VM_FAULT error)",
    },
    ClassBit {
        mask: PFNMAP,
        name: "pfnmap",
        c_name: "PFNMAP",
        doc: "the vma is VM_PFNMAP",
    },
];

/// Display order: the kind of vma first, then the rest in bit order.
const DISPLAY: [u16; 9] = [
    PFNMAP, MIXEDMAP, COW, SPECIAL, PFN_MATCH, NO_PAGE, PARTIAL, ANON, ERROR,
];

/// Number of distinct classes: one counter slot each, per hook.
pub const SLOTS: usize = 1 << BITS.len();

/// A set of [`ClassBit`]s as the kernel programs computed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Class(pub u16);

impl Class {
    /// Every class, in order: one counter slot each.
    pub fn every() -> impl Iterator<Item = Class> {
        (0..SLOTS as u16).map(Class)
    }

    pub const fn has(self, mask: u16) -> bool {
        self.0 & mask == mask
    }

    /// Names of the bits set: the kind of vma first, then the rest.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        DISPLAY
            .into_iter()
            .filter(move |mask| self.has(*mask))
            .filter_map(|mask| BITS.iter().find(|b| b.mask == mask).map(|b| b.name))
    }

    /// Parses the `+`-joined form [`Class`]'s Display writes ("none" for 0).
    pub fn parse(text: &str) -> Result<Class, String> {
        let mut mask = 0u16;
        if text.trim() == "none" {
            return Ok(Class(0));
        }
        for part in text.split('+').map(str::trim) {
            match BITS.iter().find(|b| b.name == part) {
                Some(bit) => mask |= bit.mask,
                None => {
                    let known: Vec<_> = BITS.iter().map(|b| b.name).collect();
                    return Err(format!(
                        "unknown class bit {part:?} (known: {})",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(Class(mask))
    }
}

impl core::fmt::Display for Class {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for name in self.names() {
            if !first {
                f.write_str("+")?;
            }
            f.write_str(name)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_distinct_single_bits_in_order() {
        for (i, bit) in BITS.iter().enumerate() {
            assert_eq!(bit.mask, 1 << i, "{}", bit.name);
        }
        assert_eq!(SLOTS, 512);
        let mut shown: Vec<u16> = DISPLAY.to_vec();
        shown.sort_unstable();
        let all: Vec<u16> = BITS.iter().map(|b| b.mask).collect();
        assert_eq!(shown, all, "every bit is displayed once");
    }

    #[test]
    fn display_and_parse_round_trip() {
        for raw in 0..SLOTS as u16 {
            let class = Class(raw);
            assert_eq!(Class::parse(&class.to_string()), Ok(class));
        }
        assert_eq!(
            Class(PFNMAP | COW | SPECIAL).to_string(),
            "pfnmap+cow+special"
        );
        assert_eq!(Class(MIXEDMAP).to_string(), "mixedmap");
        assert_eq!(Class(PFNMAP | MIXEDMAP).to_string(), "pfnmap+mixedmap");
        assert_eq!(
            Class(COW | PARTIAL | ERROR).to_string(),
            "cow+partial+error"
        );
        assert_eq!(Class(0).to_string(), "none");
    }

    #[test]
    fn parse_names_the_bad_part() {
        let err = Class::parse("pfnmap+cwo").unwrap_err();
        assert!(err.contains("\"cwo\""), "{err}");
    }
}
