//! Renders the ABI as the C header the kernel programs include.

use crate::{Event, Family, Hook, abi, class, mask, pgtable, vm_flags};
use std::fmt::Write;

/// The generated `pfnwatch_abi.h`.
pub fn c_header() -> String {
    let mut h = String::new();
    // Writing to a String cannot fail; ignore the fmt::Result.
    let _ = write_header(&mut h);
    h
}

fn write_header(h: &mut String) -> std::fmt::Result {
    writeln!(
        h,
        "/* Generated from pfnwatch-common by pfnwatch-ebpf's build script. */"
    )?;
    writeln!(h, "/* Do not edit: change pfnwatch-common/src instead. */")?;
    writeln!(h, "#ifndef PFNWATCH_ABI_H\n#define PFNWATCH_ABI_H\n")?;
    for hook in Hook::ALL {
        let name = hook.function().to_ascii_uppercase();
        writeln!(h, "#define PFNW_HOOK_{name} {}", hook.id())?;
    }
    writeln!(h, "#define PFNW_HOOK_COUNT {}\n", Hook::COUNT)?;
    for (i, family) in Family::ALL.into_iter().enumerate() {
        writeln!(h, "#define PFNW_FAMILY_{} {i}", family.c_name())?;
    }
    writeln!(
        h,
        "\n/* The family of a hook id; clang folds it for a constant id. */"
    )?;
    writeln!(
        h,
        "static __always_inline int pfnw_hook_family(__u32 hook)\n{{\n\tswitch (hook) {{"
    )?;
    for family in Family::ALL {
        for hook in Hook::of(family) {
            let name = hook.function().to_ascii_uppercase();
            writeln!(h, "\tcase PFNW_HOOK_{name}:")?;
        }
        writeln!(h, "\t\treturn PFNW_FAMILY_{};", family.c_name())?;
    }
    writeln!(h, "\t}}\n\treturn -1;\n}}\n")?;
    for bit in class::BITS {
        writeln!(
            h,
            "#define PFNW_CLASS_{} 0x{:x}u /* {} */",
            bit.c_name, bit.mask, bit.doc
        )?;
    }
    writeln!(h, "#define PFNW_CLASS_SLOTS {}", class::SLOTS)?;
    write!(h, "{}", mask::c_defines())?;
    write!(h, "{}", abi::c_index_defines())?;
    writeln!(h, "#define PFNW_PID_FILTER_SLOTS {}", abi::PID_FILTER_SLOTS)?;
    writeln!(h, "#define PFNW_RINGBUF_BYTES {}", abi::RINGBUF_BYTES)?;
    writeln!(h, "#define PFNW_LOSS_RINGBUF {}", abi::LOSS_RINGBUF)?;
    writeln!(h, "#define PFNW_LOSS_INVENTORY {}", abi::LOSS_INVENTORY)?;
    writeln!(h, "#define PFNW_LOSS_URGENT {}", abi::LOSS_URGENT)?;
    writeln!(h, "#define PFNW_LOSS_FREE_UNSEEN {}", abi::LOSS_FREE_UNSEEN)?;
    writeln!(
        h,
        "#define PFNW_URGENT_RINGBUF_BYTES {}",
        abi::URGENT_RINGBUF_BYTES
    )?;
    writeln!(h, "#define PFNW_LOSS_SLOTS {}", abi::LOSS_SLOTS)?;
    writeln!(h, "#define PFNW_INVENTORY_SLOTS {}", abi::INVENTORY_SLOTS)?;
    writeln!(h, "#define PFNW_LOOKUPS_WATCHED {}", abi::LOOKUPS_WATCHED)?;
    writeln!(h, "#define PFNW_LOOKUPS_ATTACHED {}", abi::LOOKUPS_ATTACHED)?;
    writeln!(h, "#define PFNW_LOOKUPS_WALK {}", abi::LOOKUPS_WALK)?;
    writeln!(h, "#define PFNW_LOOKUP_SLOTS {}", abi::LOOKUP_SLOTS)?;
    writeln!(
        h,
        "#define PFNW_LOOKUP_WAKE_BYTES {}",
        abi::LOOKUP_WAKE_BYTES
    )?;
    writeln!(h, "#define PFNW_SAFE_FOPS_SLOTS {}\n", abi::SAFE_FOPS_SLOTS)?;
    write!(h, "{}", pgtable::c_defines())?;
    writeln!(h)?;
    for (name, bit) in abi::EVENT_FLAGS {
        writeln!(h, "#define PFNW_EVENT_{name} 0x{bit:x}u")?;
    }
    writeln!(h)?;
    for (name, bit) in vm_flags::NAMED {
        writeln!(h, "#define {name} 0x{bit:x}ul")?;
    }
    writeln!(h, "#define PFNW_COMM_LEN {}", abi::COMM_LEN)?;
    writeln!(h, "#define PFNW_NAME_LEN {}", abi::NAME_LEN)?;
    writeln!(h, "#define PFNW_MODULE_NAME_LEN {}", abi::MODULE_NAME_LEN)?;
    writeln!(h, "#define PFNW_STACK_DEPTH {}\n", abi::STACK_DEPTH)?;
    writeln!(h, "{}", Event::c_definition())?;
    writeln!(h, "#endif /* PFNWATCH_ABI_H */")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_defines_every_hook_class_and_struct() {
        let h = c_header();
        assert!(h.contains("#define PFNW_HOOK_VM_NORMAL_PAGE 0\n"));
        assert!(h.contains("#define PFNW_HOOK_VMF_INSERT_MIXED 6\n"));
        assert!(h.contains("#define PFNW_HOOK_PRINT_BAD_PAGE_MAP 8\n"));
        assert!(h.contains("#define PFNW_HOOK_VMF_INSERT_PFN_PUD 10\n"));
        assert!(h.contains("#define PFNW_HOOK_COUNT 23\n"));
        assert!(h.contains("#define PFNW_CLASS_PFNMAP 0x100u"));
        assert!(h.contains("#define PFNW_CLASS_ERROR 0x80u"));
        assert!(h.contains("#define VM_PFNMAP 0x400ul"));
        assert!(h.contains("struct pfnwatch_event {"));
        assert!(
            h.contains("\tcase PFNW_HOOK_REMAP_PFN_RANGE_PREPARE:\n\t\treturn PFNW_FAMILY_REMAP;")
        );
        assert!(h.contains("#define PFNW_MASK_WORD(hook, class)"));
        assert!(h.contains("#define PFNW_COUNTS_INDEX(hook, class)"));
        assert!(h.contains("struct pfnw_geometry {"));
        assert!(h.trim_end().ends_with("#endif /* PFNWATCH_ABI_H */"));
    }
}
