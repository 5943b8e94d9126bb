//! Records the kernel programs could send, with any values in their
//! fields: each event is built from the input field by field (a known
//! hook, class bits and level, any flags, numbers, names and call path),
//! then goes the way `record_decode`'s do: through the decoder as ring
//! buffer bytes, then through the rules, the duplicate collapsing, the
//! views and the metrics. Raw bytes rarely make a run of records with
//! known ids; this reaches what comes after the decoder with them.
//!
//! Properties: `record_decode`'s.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pfnwatch_common::{Event, Hook, abi, class};
use pfnwatch_fuzz::records::{decode, run_through_the_pipeline};

/// Records in one input at most: a ring buffer drain's worth.
const MAX_RECORDS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut records = Vec::new();
    while records.len() < MAX_RECORDS && !u.is_empty() {
        let Ok(event) = event(&mut u) else {
            break;
        };
        match decode(bytemuck::bytes_of(&event)) {
            Some(record) => records.push(record),
            None => panic!("a well-formed event refused: {event:?}"),
        }
    }
    run_through_the_pipeline(records);
});

fn event(u: &mut Unstructured<'_>) -> Result<Event> {
    let mut e: Event = bytemuck::Zeroable::zeroed();
    e.hook = u.int_in_range(0..=Hook::COUNT as u16 - 1)?;
    e.class = u.int_in_range(0..=class::SLOTS as u16 - 1)?;
    e.level = u.int_in_range(0..=2)?;
    e.page_shift = u16::from(*u.choose(&pfnwatch_common::pgtable::PAGE_SHIFTS)?);
    e.flags = u.arbitrary()?;
    e.pid = u.int_in_range(0..=3)?;
    e.tgid = e.pid;
    for field in [
        &mut e.ts_ns,
        &mut e.vm_flags,
        &mut e.vm_start,
        &mut e.vm_end,
        &mut e.vm_pgoff,
        &mut e.pgoff_before,
        &mut e.addr,
        &mut e.pfn,
        &mut e.size,
        &mut e.entry,
        &mut e.ino,
        &mut e.mmap_fn,
        &mut e.fault_fn,
        &mut e.vma_id,
    ] {
        *field = u.arbitrary()?;
    }
    e.ret = u.arbitrary()?;
    e.rdev = u.arbitrary()?;
    e.sdev = u.arbitrary()?;
    fill(u, &mut e.comm)?;
    fill(u, &mut e.file)?;
    fill(u, &mut e.parent)?;
    fill(u, &mut e.module)?;
    let depth = u.int_in_range(0..=abi::STACK_DEPTH)?;
    for slot in &mut e.stack[..depth] {
        *slot = u.arbitrary()?;
    }
    e.stack_bytes = (depth * 8) as u32;
    // Now and then an event past the decoder's expectations too.
    if u.ratio(1, 16)? {
        e.stack_bytes = u.arbitrary()?;
    }
    Ok(e)
}

/// A NUL-padded name of a few bytes (any bytes: a process names its comm
/// anything), or the buffer full without a NUL.
fn fill(u: &mut Unstructured<'_>, buf: &mut [u8]) -> Result<()> {
    let len = u.int_in_range(0..=buf.len())?;
    for b in &mut buf[..len] {
        *b = u.arbitrary()?;
    }
    Ok(())
}
