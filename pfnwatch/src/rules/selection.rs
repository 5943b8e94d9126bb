//! Which (hook, class) pairs the kernel sends detail records for, derived
//! from the enabled rules: the record mask user space sets before load.

use super::{RuleSet, Severity};
use pfnwatch_common::{Family, RecordMask};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// Calls some enabled rule may match, plus the inventory: every pfn
    /// mapping created and gone (rare, one record per vma however it is
    /// filled: a perf buffer's per-page remaps send nothing).
    Rules,
    /// Every classified call (tests, debugging; can be a lot on busy hosts).
    All,
}

/// The (hook, class) pairs some enabled rule may make a warning or a
/// critical: the kernel gives their records a ring buffer of their own, so
/// a flood of info hits and inventory records cannot crowd them out.
pub fn urgent_mask(rules: &RuleSet) -> RecordMask {
    RecordMask::from_fn(|hook, class| rules.may_be_at_least(hook, class, Severity::Warning))
}

pub fn record_mask(selection: Selection, rules: &RuleSet) -> RecordMask {
    match selection {
        Selection::All => RecordMask::all(),
        Selection::Rules => RecordMask::from_fn(|hook, class| {
            matches!(hook.family(), Family::VmaCreated | Family::VmaGone)
                || rules.kernel_part_matches(hook, class)
        }),
    }
}
