//! Label values: from fixed sets (hooks, class bits), except driver and
//! device, which are [`Bounded`].

use pfnwatch_common::class::{
    ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
};
use pfnwatch_common::{Class, Family, Hook};
use std::collections::BTreeSet;

/// Distinct driver (or driver and device) label values before `other`.
pub const MAX_SOURCES: usize = 16;
/// The label value for everything past [`MAX_SOURCES`].
pub const OTHER: &str = "other";

/// The `vma` label: which of VM_PFNMAP and VM_MIXEDMAP the vma has.
pub fn vma_label(class: Class) -> &'static str {
    match (class.has(PFNMAP), class.has(MIXEDMAP)) {
        (true, true) => "pfnmap+mixedmap",
        (true, false) => "pfnmap",
        (false, true) => "mixedmap",
        (false, false) => "none",
    }
}

/// The `result` label: what the hooked function did.
pub fn result_label(hook: Hook, class: Class) -> &'static str {
    match hook.family() {
        Family::BadMap => return "reported",
        Family::VmaCreated => return "created",
        Family::VmaGone => return "gone",
        _ => {}
    }
    if class.has(ERROR) {
        "error"
    } else if hook.family().maps_pfns() || hook.family() == Family::Follow {
        "ok"
    } else if class.has(NO_PAGE) {
        "no_page"
    } else if class.has(ANON) {
        "anon_page"
    } else {
        "page"
    }
}

/// The `outcome` label of a remap.
pub fn remap_outcome(class: Class) -> &'static str {
    if class.has(ERROR) {
        "error"
    } else if class.has(PARTIAL) {
        "partial"
    } else {
        "whole"
    }
}

pub fn bit(class: Class, mask: u16) -> &'static str {
    if class.has(mask) { "true" } else { "false" }
}

/// The `hook_calls` labels of one (hook, class) counter slot.
pub fn hook_call_labels(hook: Hook, class: Class) -> [&'static str; 6] {
    [
        hook.function(),
        vma_label(class),
        bit(class, COW),
        bit(class, SPECIAL),
        bit(class, PFN_MATCH),
        result_label(hook, class),
    ]
}

/// A label dimension that admits its first `limit` values and maps the
/// rest to [`OTHER`]. First come, first kept: a value never moves to
/// another series, so each series only grows.
#[derive(Debug)]
pub struct Bounded<K: Ord> {
    limit: usize,
    kept: BTreeSet<K>,
}

impl<K: Ord + Clone> Bounded<K> {
    pub fn new(limit: usize) -> Bounded<K> {
        Bounded {
            limit,
            kept: BTreeSet::new(),
        }
    }

    /// `Some(value)` while it has its own series, `None` for other.
    pub fn admit(&mut self, value: &K) -> Option<K> {
        if self.kept.contains(value) || self.kept.len() < self.limit {
            self.kept.insert(value.clone());
            return Some(value.clone());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_class_bits() {
        assert_eq!(
            result_label(Hook::VmNormalPage, Class(PFNMAP | NO_PAGE)),
            "no_page"
        );
        assert_eq!(
            result_label(Hook::FolioWalkStart, Class(PFNMAP | COW | ANON)),
            "anon_page"
        );
        assert_eq!(result_label(Hook::VmNormalPage, Class(MIXEDMAP)), "page");
        assert_eq!(result_label(Hook::RemapPfnRange, Class(PFNMAP)), "ok");
        assert_eq!(
            result_label(Hook::VmfInsertMixed, Class(MIXEDMAP | ERROR)),
            "error"
        );
        assert_eq!(result_label(Hook::PrintBadPte, Class(PFNMAP)), "reported");
        assert_eq!(vma_label(Class(PFNMAP | MIXEDMAP)), "pfnmap+mixedmap");
        assert_eq!(vma_label(Class(COW | PARTIAL | ERROR)), "none");
        assert_eq!(remap_outcome(Class(COW | PARTIAL | ERROR)), "error");
        assert_eq!(remap_outcome(Class(PFNMAP | PARTIAL)), "partial");
        assert_eq!(remap_outcome(Class(PFNMAP | COW)), "whole");
    }
}
