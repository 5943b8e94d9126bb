//! The kernel functions pfnwatch's programs attach to, and their BTF ids,
//! found in one pass over the kernel's BTF.
//!
//! aya finds a function's id by walking every type of the kernel's BTF and
//! reading each function's name (aya-obj's `Btf::id_by_type_name_kind`),
//! and a start asked twice a program (is it there; `FEntry::load`): some
//! fifty walks of 100,000 and more types, each about 10 ms of guest time
//! under TCG. Here the raw BTF is walked once for every name pfnwatch may
//! ask about, and the loads get a [`Functions::directory`]: a BTF that has
//! those functions at their kernel ids and nothing else, so aya's walk
//! compares kinds and reads no name.

use std::collections::HashMap;

use aya_obj::btf::{Btf, BtfKind, BtfType, Func, FuncLinkage};

use super::programs::PROGRAMS;

/// The iterator function behind iter/task_vma (aya's `Iter::load` looks
/// up `bpf_iter_` and the iterator's name).
pub const TASK_VMA_ITER: &str = "bpf_iter_task_vma";

/// Every function name a start may ask about: each program's target and
/// its older name, and the vma walk's iterator.
pub fn wanted() -> impl Iterator<Item = &'static str> {
    PROGRAMS
        .iter()
        .flat_map(|spec| [Some(spec.target()), spec.older])
        .flatten()
        .chain([TASK_VMA_ITER])
}

/// [`wanted`] sorted, each name once, as [`func_ids`] takes them.
fn wanted_sorted() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = wanted().collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The ids of `names` as aya finds them: a walk of every type per name.
fn ids_by_name(btf: &Btf, names: &[&'static str]) -> HashMap<&'static str, u32> {
    names
        .iter()
        .filter_map(|&n| Some((n, btf.id_by_type_name_kind(n, BtfKind::Func).ok()?)))
        .collect()
}

/// Which of the wanted functions this kernel has, by BTF id.
#[derive(Clone, Debug, Default)]
pub struct Functions {
    ids: HashMap<&'static str, u32>,
}

impl Functions {
    /// Walks `raw` (the kernel's BTF as read) once; where the walk cannot
    /// read it (a kind newer than this code), asks `btf` name by name as
    /// aya does, which is slower and as right.
    pub fn find(raw: &[u8], btf: &Btf) -> Functions {
        let names = wanted_sorted();
        let ids = match func_ids(raw, &names) {
            Ok(ids) => ids,
            Err(why) => {
                tracing::debug!("kernel BTF walked name by name: {why}");
                ids_by_name(btf, &names)
            }
        };
        Functions { ids }
    }

    /// Whether the kernel has `name` (not inlined away). Only the names
    /// [`wanted`] yields are known; any other is answered false.
    pub fn has(&self, name: &str) -> bool {
        self.ids.contains_key(name)
    }

    /// A BTF for aya's program loads: the functions found, each at its
    /// kernel id with its name, and an empty type at every other id, so
    /// the id aya hands the kernel is the kernel's own.
    pub fn directory(&self) -> Btf {
        let mut by_id: Vec<(u32, &str)> = self.ids.iter().map(|(&n, &id)| (id, n)).collect();
        by_id.sort_unstable();
        let mut btf = Btf::new();
        // Id 0 is the void type every BTF starts with.
        let mut next = 1;
        for (id, name) in by_id {
            while next < id {
                btf.add_type(BtfType::Unknown);
                next += 1;
            }
            let name = btf.add_string(name);
            btf.add_type(BtfType::Func(Func::new(name, 0, FuncLinkage::Global)));
            next += 1;
        }
        btf
    }
}

/// Why the raw walk gave up.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("not a little-endian BTF (magic {0:#06x})")]
    Magic(u16),
    #[error("{0} is past the end of the BTF")]
    Truncated(&'static str),
    #[error("type {id} has kind {kind}, which this walk does not know")]
    UnknownKind { id: u32, kind: u32 },
}

fn u32_at(raw: &[u8], at: usize, what: &'static str) -> Result<u32, WalkError> {
    let bytes = raw.get(at..at + 4).ok_or(WalkError::Truncated(what))?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The ids of the functions (BTF_KIND_FUNC) named in `sorted_names`, from
/// the raw BTF as include/uapi/linux/btf.h lays it out: a header, then
/// the types (12 bytes each and a tail that depends on the kind), then
/// the strings. Names are compared as bytes: no UTF-8 check, no copy.
fn func_ids(
    raw: &[u8],
    sorted_names: &[&'static str],
) -> Result<HashMap<&'static str, u32>, WalkError> {
    const MAGIC: u16 = 0xeb9f;
    let magic = raw
        .get(..2)
        .map(|m| u16::from_le_bytes([m[0], m[1]]))
        .ok_or(WalkError::Truncated("the header"))?;
    if magic != MAGIC {
        return Err(WalkError::Magic(magic));
    }
    let hdr_len = u32_at(raw, 4, "the header")? as usize;
    let type_off = u32_at(raw, 8, "the header")? as usize;
    let type_len = u32_at(raw, 12, "the header")? as usize;
    let str_off = u32_at(raw, 16, "the header")? as usize;
    let str_len = u32_at(raw, 20, "the header")? as usize;
    let types = raw
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or(WalkError::Truncated("the type section"))?;
    let strings = raw
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or(WalkError::Truncated("the string section"))?;
    let mut found = HashMap::new();
    let mut at = 0;
    // Id 0 is void, never written out: the first type is id 1.
    let mut id = 1u32;
    while at < types.len() {
        let name_off = u32_at(types, at, "a type")? as usize;
        let info = u32_at(types, at + 4, "a type")?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let tail = match kind {
            // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
            2 | 7..=12 | 16 | 18 => 0,
            // INT, VAR, DECL_TAG: one u32
            1 | 14 | 17 => 4,
            // ARRAY: struct btf_array
            3 => 12,
            // STRUCT, UNION (btf_member), DATASEC (btf_var_secinfo), ENUM64
            4 | 5 | 15 | 19 => 12 * vlen,
            // ENUM (btf_enum), FUNC_PROTO (btf_param)
            6 | 13 => 8 * vlen,
            kind => return Err(WalkError::UnknownKind { id, kind }),
        };
        if kind == 12 {
            let name = strings
                .get(name_off..)
                .and_then(|s| s.split(|&b| b == 0).next())
                .ok_or(WalkError::Truncated("a function's name"))?;
            if let Ok(i) = sorted_names.binary_search_by(|n| n.as_bytes().cmp(name)) {
                // The first of a name, as aya's lookup takes it.
                found.entry(sorted_names[i]).or_insert(id);
            }
        }
        at += 12 + tail;
        id += 1;
    }
    if at != types.len() {
        return Err(WalkError::Truncated("the last type"));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya_obj::btf::{
        BtfEnum, BtfEnum64, BtfParam, DataSec, DataSecEntry, DeclTag, Enum, Enum64, Float,
        FuncProto, Int, IntEncoding, Ptr, TypeTag, Var, VarLinkage,
    };

    /// A BTF with every kind aya can write whose tail has a length (a
    /// struct's and an array's are as long as a datasec's and an enum64's),
    /// before, between and after the functions, as aya writes it (the
    /// kernel's layout). The real kernel's BTF has them all: see
    /// `the_walk_agrees_with_aya_on_this_kernel`.
    fn sample() -> Btf {
        let mut btf = Btf::new();
        let int_name = btf.add_string("int");
        let int = btf.add_type(BtfType::Int(Int::new(int_name, 4, IntEncoding::Signed, 0)));
        let field = btf.add_string("a");
        let e_name = btf.add_string("e");
        btf.add_type(BtfType::Enum(Enum::new(
            e_name,
            true,
            vec![BtfEnum::new(field, 1), BtfEnum::new(field, 2)],
        )));
        btf.add_type(BtfType::Enum64(Enum64::new(
            e_name,
            false,
            vec![BtfEnum64::new(field, 1 << 40)],
        )));
        let proto = btf.add_type(BtfType::FuncProto(FuncProto::new(
            vec![
                BtfParam {
                    name_offset: field,
                    btf_type: int,
                },
                BtfParam {
                    name_offset: field,
                    btf_type: int,
                },
            ],
            int,
        )));
        // A type named like a function is no function.
        let decoy = btf.add_string("vm_normal_page");
        btf.add_type(BtfType::Float(Float::new(decoy, 8)));
        for name in ["folio_walk_start", "vm_normal_page", "not_wanted"] {
            let name = btf.add_string(name);
            btf.add_type(BtfType::Func(Func::new(name, proto, FuncLinkage::Global)));
        }
        let v_name = btf.add_string("v");
        let var = btf.add_type(BtfType::Var(Var::new(v_name, int, VarLinkage::Global)));
        let sec = btf.add_string(".data");
        btf.add_type(BtfType::DataSec(DataSec::new(
            sec,
            vec![
                DataSecEntry {
                    btf_type: var,
                    offset: 0,
                    size: 4,
                },
                DataSecEntry {
                    btf_type: var,
                    offset: 4,
                    size: 4,
                },
            ],
            8,
        )));
        btf.add_type(BtfType::DeclTag(DeclTag::new(field, var, -1)));
        btf.add_type(BtfType::TypeTag(TypeTag::new(field, int)));
        btf.add_type(BtfType::Ptr(Ptr::new(0, int)));
        let iter = btf.add_string(TASK_VMA_ITER);
        btf.add_type(BtfType::Func(Func::new(iter, proto, FuncLinkage::Static)));
        btf
    }

    #[test]
    fn the_walk_finds_what_aya_finds() {
        let btf = sample();
        let raw = btf.to_bytes();
        let names = wanted_sorted();
        let walked = func_ids(&raw, &names).unwrap();
        assert_eq!(walked, ids_by_name(&btf, &names));
        assert_eq!(walked.len(), 3, "{walked:?}");
        let functions = Functions::find(&raw, &btf);
        assert!(functions.has("vm_normal_page") && functions.has(TASK_VMA_ITER));
        assert!(!functions.has("follow_pfnmap_start"));
        assert!(!functions.has("not_wanted"), "only the names asked about");
    }

    #[test]
    fn the_directory_gives_aya_the_kernel_ids() {
        let btf = sample();
        let functions = Functions::find(&btf.to_bytes(), &btf);
        let directory = functions.directory();
        for name in ["vm_normal_page", "folio_walk_start", TASK_VMA_ITER] {
            assert_eq!(
                directory.id_by_type_name_kind(name, BtfKind::Func).ok(),
                btf.id_by_type_name_kind(name, BtfKind::Func).ok(),
                "{name}"
            );
        }
        assert!(
            directory
                .id_by_type_name_kind("not_wanted", BtfKind::Func)
                .is_err()
        );
    }

    /// The running kernel's BTF, where there is one (the build machines
    /// and CI have it): the walk agrees with aya on every wanted name.
    #[test]
    fn the_walk_agrees_with_aya_on_this_kernel() {
        let Ok(raw) = std::fs::read(super::super::facts::SYS_BTF) else {
            eprintln!("no {}: skipped", super::super::facts::SYS_BTF);
            return;
        };
        let btf = Btf::parse(&raw, aya::Endianness::default()).unwrap();
        let names = wanted_sorted();
        let walked = func_ids(&raw, &names).unwrap();
        assert_eq!(walked, ids_by_name(&btf, &names));
        assert!(walked.contains_key("vm_normal_page"), "{walked:?}");
    }

    #[test]
    fn a_damaged_btf_falls_back_to_asking_aya() {
        let btf = sample();
        let raw = btf.to_bytes();
        let names = wanted_sorted();
        let mut swapped = raw.clone();
        swapped.swap(0, 1);
        assert!(matches!(
            func_ids(&swapped, &names),
            Err(WalkError::Magic(_))
        ));
        // A kind from a future kernel (31) in the first type.
        let hdr_len = u32::from_le_bytes(raw[4..8].try_into().unwrap()) as usize;
        let mut future = raw.clone();
        future[hdr_len + 7] = 31;
        assert!(matches!(
            func_ids(&future, &names),
            Err(WalkError::UnknownKind { id: 1, kind: 31 })
        ));
        let functions = Functions::find(&future, &btf);
        assert!(functions.has("vm_normal_page"), "asked aya instead");
        assert!(matches!(
            func_ids(&raw[..raw.len() - 8], &names),
            Err(WalkError::Truncated(_))
        ));
    }
}
