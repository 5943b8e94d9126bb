//! Which (hook, class) pairs send a detail record: one bit per pair, set
//! by user space before load (the `record_mask` rodata array) and tested
//! by the kernel programs for every call they classify.

use crate::{Class, Hook, class};

/// `u64` words of one hook's mask (one bit per class).
pub const CLASS_WORDS: usize = class::SLOTS / 64;
/// Words of the whole mask.
pub const WORDS: usize = Hook::COUNT * CLASS_WORDS;

/// The word and the bit of a (hook, class) pair. The C side computes the
/// same through `PFNW_MASK_WORD` and `PFNW_MASK_BIT`, rendered from this.
const fn position(hook: Hook, class: Class) -> (usize, u64) {
    let class = class.0 as usize & (class::SLOTS - 1);
    (
        hook.id() as usize * CLASS_WORDS + class / 64,
        1 << (class % 64),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMask([u64; WORDS]);

impl RecordMask {
    /// No pair sends a record.
    pub const fn none() -> RecordMask {
        RecordMask([0; WORDS])
    }

    /// Every pair sends a record.
    pub const fn all() -> RecordMask {
        RecordMask([u64::MAX; WORDS])
    }

    /// The pairs `wanted` says yes to.
    pub fn from_fn(mut wanted: impl FnMut(Hook, Class) -> bool) -> RecordMask {
        let mut mask = RecordMask::none();
        for hook in Hook::ALL {
            for class in Class::every() {
                if wanted(hook, class) {
                    mask.set(hook, class);
                }
            }
        }
        mask
    }

    pub fn set(&mut self, hook: Hook, class: Class) {
        let (word, bit) = position(hook, class);
        self.0[word] |= bit;
    }

    pub fn contains(&self, hook: Hook, class: Class) -> bool {
        let (word, bit) = position(hook, class);
        self.0[word] & bit != 0
    }

    /// Turns off every class of `hook`.
    pub fn clear_hook(&mut self, hook: Hook) {
        let first = position(hook, Class(0)).0;
        self.0[first..first + CLASS_WORDS].fill(0);
    }

    /// Only the pairs both masks have.
    pub fn intersect(&mut self, other: &RecordMask) {
        for (word, keep) in self.0.iter_mut().zip(other.0) {
            *word &= keep;
        }
    }

    /// The words as the kernel programs read them.
    pub const fn words(&self) -> &[u64; WORDS] {
        &self.0
    }
}

/// The macros that index the mask from C.
pub fn c_defines() -> String {
    format!(
        "#define PFNW_CLASS_WORDS {CLASS_WORDS}\n\
         #define PFNW_MASK_WORDS {WORDS}\n\
         #define PFNW_MASK_WORD(hook, class) ((__u32)(hook) * PFNW_CLASS_WORDS + (((class) & {last}) / 64))\n\
         #define PFNW_MASK_BIT(class) (1ull << ((class) % 64))\n",
        last = class::SLOTS - 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_contains_agree_and_stay_in_their_hook() {
        let mut m = RecordMask::none();
        let c = Class(class::PFNMAP | class::COW);
        m.set(Hook::RemapPfnRange, c);
        assert!(m.contains(Hook::RemapPfnRange, c));
        assert!(!m.contains(Hook::RemapPfnRangeComplete, c));
        assert!(!m.contains(Hook::RemapPfnRange, Class(class::PFNMAP)));
        assert_eq!(m.words().iter().map(|w| w.count_ones()).sum::<u32>(), 1);
        m.clear_hook(Hook::RemapPfnRange);
        assert_eq!(m, RecordMask::none());
        let mut all = RecordMask::all();
        all.clear_hook(Hook::VmNormalPage);
        assert!(!all.contains(Hook::VmNormalPage, Class(0x1ff)));
        assert!(all.contains(Hook::VmNormalPagePmd, Class(0)));
        all.intersect(&RecordMask::from_fn(|h, _| h == Hook::VmNormalPagePud));
        assert!(all.contains(Hook::VmNormalPagePud, Class(7)));
        assert!(!all.contains(Hook::VmNormalPagePmd, Class(7)));
    }

    #[test]
    fn the_c_macros_compute_the_same_position() {
        // PFNW_MASK_WORD(hook, class) as written in the header, evaluated here.
        let c_word = |hook: Hook, class: u16| {
            hook.id() as usize * CLASS_WORDS + ((class as usize & (class::SLOTS - 1)) / 64)
        };
        for hook in Hook::ALL {
            for class in [0u16, 63, 64, 300, 511] {
                let (word, bit) = position(hook, Class(class));
                assert_eq!(word, c_word(hook, class));
                assert_eq!(bit, 1 << (class % 64));
            }
        }
        assert!(c_defines().contains("(((class) & 511) / 64)"));
    }
}
