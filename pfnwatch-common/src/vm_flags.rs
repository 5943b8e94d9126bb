//! `vm_area_struct::vm_flags` bits pfnwatch reads. Their values have been
//! stable for many releases (include/linux/mm.h).

pub const VM_READ: u64 = 0x1;
pub const VM_WRITE: u64 = 0x2;
pub const VM_EXEC: u64 = 0x4;
pub const VM_SHARED: u64 = 0x8;
pub const VM_MAYWRITE: u64 = 0x20;
pub const VM_PFNMAP: u64 = 0x400;
pub const VM_IO: u64 = 0x4000;
pub const VM_DONTEXPAND: u64 = 0x40000;
pub const VM_DONTDUMP: u64 = 0x400_0000;
pub const VM_MIXEDMAP: u64 = 0x1000_0000;

/// Every flag above with its kernel name, for the C header and for output.
pub const NAMED: [(&str, u64); 10] = [
    ("VM_READ", VM_READ),
    ("VM_WRITE", VM_WRITE),
    ("VM_EXEC", VM_EXEC),
    ("VM_SHARED", VM_SHARED),
    ("VM_MAYWRITE", VM_MAYWRITE),
    ("VM_PFNMAP", VM_PFNMAP),
    ("VM_IO", VM_IO),
    ("VM_DONTEXPAND", VM_DONTEXPAND),
    ("VM_DONTDUMP", VM_DONTDUMP),
    ("VM_MIXEDMAP", VM_MIXEDMAP),
];

/// The kernel's `is_cow_mapping()`: private and may become writable.
pub const fn is_cow_mapping(flags: u64) -> bool {
    flags & (VM_SHARED | VM_MAYWRITE) == VM_MAYWRITE
}

/// The named flags set in `flags`, in bit order.
pub fn names(flags: u64) -> impl Iterator<Item = &'static str> {
    NAMED
        .into_iter()
        .filter(move |(_, bit)| flags & bit != 0)
        .map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cow_mapping_is_private_and_maywrite() {
        assert!(is_cow_mapping(VM_MAYWRITE | VM_PFNMAP));
        assert!(!is_cow_mapping(VM_SHARED | VM_MAYWRITE));
        assert!(!is_cow_mapping(VM_READ));
    }

    #[test]
    fn names_lists_set_bits_only() {
        let got: Vec<_> = names(VM_SHARED | VM_PFNMAP | VM_IO | 0x8000_0000_0000).collect();
        assert_eq!(got, ["VM_SHARED", "VM_PFNMAP", "VM_IO"]);
    }
}
