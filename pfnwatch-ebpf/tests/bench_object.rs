//! The benchmark's yardstick must stay what BENCHMARKS.md says it is: one
//! fexit program on vm_normal_page that returns 0 and does nothing else.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test code

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

#[test]
fn bench_object_is_one_empty_fexit_on_vm_normal_page() {
    let elf = object::File::parse(pfnwatch_ebpf::BENCH_OBJECT).expect("bench object parses");
    let programs: Vec<(String, String)> = elf
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.is_global())
        .map(|s| {
            let section = elf.section_by_index(s.section_index().unwrap()).unwrap();
            (
                s.name().unwrap().to_owned(),
                section.name().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        programs,
        [(
            pfnwatch_ebpf::BENCH_EMPTY_PROGRAM.to_owned(),
            "fexit/vm_normal_page".to_owned()
        )]
    );
    // The kernel keeps 15 bytes of a program's name: this one fits whole.
    assert!(pfnwatch_ebpf::BENCH_EMPTY_PROGRAM.len() < 16);
    // r0 = 0 (w0 = 0 with -mcpu=v3's 32-bit ALU); exit: two 8-byte
    // instructions, no maps, no helpers.
    let text = elf.section_by_name("fexit/vm_normal_page").unwrap();
    let code = text.data().unwrap();
    assert_eq!(code.len(), 16, "{code:02x?}");
    assert!(matches!(code[0], 0xb4 | 0xb7), "mov imm: {code:02x?}");
    assert_eq!(code[1] & 0x0f, 0, "into r0: {code:02x?}");
    assert_eq!(&code[4..8], &[0, 0, 0, 0], "imm 0: {code:02x?}");
    assert_eq!(code[8], 0x95, "exit: {code:02x?}");
    assert!(elf.section_by_name(".maps").is_none());
}

#[test]
fn naive_object_is_one_fexit_with_its_ring_and_loss_counter() {
    let elf = object::File::parse(pfnwatch_ebpf::NAIVE_OBJECT).expect("naive object parses");
    let programs: Vec<String> = elf
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.is_global())
        .map(|s| s.name().unwrap().to_owned())
        .collect();
    assert_eq!(programs, [pfnwatch_ebpf::NAIVE_PROGRAM]);
    assert!(pfnwatch_ebpf::NAIVE_PROGRAM.len() < 16);
    assert!(elf.section_by_name("fexit/vm_normal_page").is_some());
    let maps: Vec<String> = elf
        .symbols()
        .filter(|s| {
            s.section_index()
                .and_then(|i| elf.section_by_index(i).ok())
                .is_some_and(|sec| sec.name().ok() == Some(".maps"))
        })
        .map(|s| s.name().unwrap().to_owned())
        .collect();
    for map in [pfnwatch_ebpf::NAIVE_RING, pfnwatch_ebpf::NAIVE_LOST] {
        assert!(maps.iter().any(|m| m == map), "{map} in {maps:?}");
    }
}
