//! The compiled object's BTF must describe exactly the layout pfnwatch-common
//! defines: if the C side and the Rust side ever disagree, this fails.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test code

use btf_rs::{Btf, Type};
use object::{Object, ObjectSection};
use pfnwatch_common::{Event, abi, pgtable::Geometry};

fn object_btf() -> Btf {
    let elf = object::File::parse(pfnwatch_ebpf::OBJECT).expect("object parses as ELF");
    let section = elf.section_by_name(".BTF").expect("object carries .BTF");
    Btf::from_bytes(section.data().expect(".BTF data")).expect("BTF parses")
}

fn single(btf: &Btf, name: &str) -> Type {
    let mut types = btf.resolve_types_by_name(name).expect(name);
    assert_eq!(types.len(), 1, "{name} defined more than once");
    types.remove(0)
}

/// Size of a type, following typedefs, qualifiers and arrays.
fn size_of_type(btf: &Btf, ty: &Type) -> usize {
    match ty {
        Type::Int(i) => i.size(),
        Type::Struct(s) => s.size(),
        Type::Array(a) => {
            let elem = btf.resolve_chained_type(a).expect("array element");
            a.len() * size_of_type(btf, &elem)
        }
        Type::Ptr(_) => 8,
        Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) => {
            let inner = btf
                .resolve_chained_type(ty.as_btf_type().expect("chained"))
                .expect("chained type");
            size_of_type(btf, &inner)
        }
        other => panic!("unexpected type {}", other.name()),
    }
}

#[test]
fn event_layout_matches_btf() {
    assert_layout(Event::C_NAME, size_of::<Event>(), Event::FIELDS);
}

#[test]
fn geometry_layout_matches_btf() {
    assert_layout(Geometry::C_NAME, size_of::<Geometry>(), Geometry::FIELDS);
}

fn assert_layout(c_name: &str, size: usize, fields: &[(&str, usize)]) {
    let btf = object_btf();
    let Type::Struct(st) = single(&btf, c_name) else {
        panic!("{c_name} is not a struct");
    };
    assert_eq!(st.size(), size, "struct size");
    let got: Vec<(String, usize)> = st
        .members
        .iter()
        .map(|m| {
            assert_eq!(m.bitfield_size(), None, "no bitfields in the ABI");
            (
                btf.resolve_name(m).expect("member name"),
                m.bit_offset() as usize / 8,
            )
        })
        .collect();
    let want: Vec<(String, usize)> = fields.iter().map(|(n, o)| (n.to_string(), *o)).collect();
    assert_eq!(got, want, "field names and byte offsets");

    // Offsets alone miss a field that grew into padding-free neighbours'
    // room only at the end; check each member's size too.
    for (i, m) in st.members.iter().enumerate() {
        let end = st
            .members
            .get(i + 1)
            .map_or(st.size(), |n| n.bit_offset() as usize / 8);
        let ty = btf.resolve_chained_type(m).expect("member type");
        assert_eq!(
            size_of_type(&btf, &ty),
            end - m.bit_offset() as usize / 8,
            "size of {}",
            btf.resolve_name(m).expect("name")
        );
    }
}

#[test]
fn globals_user_space_sets_have_the_expected_size() {
    let btf = object_btf();
    let rodata = btf
        .resolve_types_by_name(".rodata")
        .expect(".rodata datasec");
    let Some(Type::Datasec(sec)) = rodata.into_iter().next() else {
        panic!(".rodata is not a datasec");
    };
    let mut found = std::collections::BTreeMap::new();
    for var in &sec.variables {
        let Type::Var(v) = btf.resolve_chained_type(var).expect("var") else {
            continue;
        };
        found.insert(btf.resolve_name(&v).expect("var name"), var.size());
    }
    assert_eq!(found.get(abi::names::SELF_TGID), Some(&4));
    assert_eq!(
        found.get(abi::names::GEOMETRY),
        Some(&size_of::<Geometry>())
    );
    assert_eq!(
        found.get(abi::names::RECORD_MASK),
        Some(&(pfnwatch_common::mask::WORDS * 8))
    );
    assert_eq!(found.get(abi::names::ONLY_PID_COUNT), Some(&4));
    assert_eq!(
        found.get(abi::names::ONLY_PIDS),
        Some(&(abi::PID_FILTER_SLOTS * 4))
    );
}
