//! Any bytes from the ring buffer: the input is cut into record-sized items
//! (the last one may be short), each decoded as the daemon decodes it
//! (`Event::from_bytes`, then `Record::from_event`), and what decodes goes
//! through everything `run` and `trace` do with a record: the rules, the
//! duplicate collapsing, the text and JSON views, the metrics tally and
//! its rendering.
//!
//! Properties, beyond "never panics": an item is refused only when shorter
//! than a record without a call path; a decoded event is the item's bytes
//! unchanged (a short one: its head, and no stack); a record is refused only
//! for an id this binary does not know; a record keeps the event's fields
//! and survives a capture (JSON out and back in, the same record); every
//! JSON line is JSON; every /metrics sample line is `name{labels} value`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pfnwatch_fuzz::records::{ITEM, decode, run_through_the_pipeline};

fuzz_target!(|data: &[u8]| {
    let records = data.chunks(ITEM).filter_map(decode).collect();
    run_through_the_pipeline(records);
});
