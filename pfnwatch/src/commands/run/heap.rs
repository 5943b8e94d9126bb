//! The daemon's heap: resident size is what its operators watch, so freed
//! memory goes back to the kernel rather than stay with glibc.

/// Blocks at least this large are mapped on their own and unmapped when
/// freed. Fixing it turns off glibc's sliding threshold, which rises to the
/// largest block freed (BTF at start: megabytes) and from then on serves
/// every block below that from the heap, where a freed one stays resident
/// while anything above it lives (CI's soak saw steps of 1 to 7 MiB).
/// The reader's batches stay below it ([`crate::kernel::reader`]).
const MMAP_THRESHOLD: i32 = 256 << 10;

/// Set before anything large is allocated.
pub fn fix_thresholds() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a glibc tunable.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } != 1 {
        tracing::warn!("glibc refused a fixed mmap threshold: the daemon's RSS may creep up");
    }
}

/// Returns the free parts of the heap to the kernel: what starting took
/// (the object, the verifier's logs, the symbol table's growth) and, after
/// each scrape and interval, what a burst of records took. glibc keeps
/// freed memory that lies below live allocations; malloc_trim gives back
/// every free page, wherever it lies.
pub fn give_back_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
