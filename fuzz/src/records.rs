//! What the record targets share: one ring buffer item decoded with the
//! decoder's properties checked, and records through everything `run` and
//! `trace` do with them.

use pfnwatch::kernel::counters::Counts;
use pfnwatch::kernel::decode::Record;
use pfnwatch::pipeline::alert::Clock;
use pfnwatch::pipeline::filter::Filter;
use pfnwatch::pipeline::{Hosts, Pipeline, Sink};
use pfnwatch::rules::{Context, RuleConfig, RuleSet};
use pfnwatch::sinks::metrics::{self, Snapshot, Tally};
use pfnwatch::views::line::Format;
use pfnwatch::views::{View, ViewOptions};
use pfnwatch_common::{Event, Hook, Level, abi, class, pgtable};
use std::time::Duration;

/// One ring buffer item: a `pfnwatch_event`.
pub const ITEM: usize = size_of::<Event>();

/// One ring buffer item, with the decoder's properties checked.
pub fn decode(item: &[u8]) -> Option<Record> {
    let Some(event) = Event::from_bytes(item) else {
        assert!(
            item.len() < abi::EVENT_BYTES_NO_STACK,
            "an item of {} bytes, long enough for a record without a call path, refused",
            item.len()
        );
        return None;
    };
    assert!(
        item.len() >= abi::EVENT_BYTES_NO_STACK,
        "a short item ({} bytes) decoded",
        item.len()
    );
    if item.len() >= ITEM {
        assert_eq!(
            bytemuck::bytes_of(&event),
            &item[..ITEM],
            "the decoded event is not the item's bytes"
        );
    } else {
        // A record sent without its call path: the head as sent, no stack.
        let head = &bytemuck::bytes_of(&event)[..abi::EVENT_BYTES_NO_STACK];
        let stack_bytes = std::mem::offset_of!(Event, stack_bytes);
        assert_eq!(
            (&head[..stack_bytes], &head[stack_bytes + 4..]),
            (&item[..stack_bytes], &item[stack_bytes + 4..abi::EVENT_BYTES_NO_STACK]),
            "the decoded event's head is not the item's bytes"
        );
        assert_eq!(event.stack_bytes, 0, "a record without a call path has one");
        assert!(event.stack.iter().all(|a| *a == 0), "a stack came from nowhere");
    }
    let Some(record) = Record::from_event(&event) else {
        // Refused only for what the object and this binary disagree on.
        assert!(
            Hook::from_id(event.hook).is_none()
                || Level::from_raw(u32::from(event.level)).is_none()
                || !u8::try_from(event.page_shift)
                    .is_ok_and(|shift| pgtable::PAGE_SHIFTS.contains(&shift))
                || usize::from(event.class) >= class::SLOTS,
            "a known hook, level, page size and class refused: {event:?}"
        );
        return None;
    };
    let has = |flag: u32| event.flags & flag != 0;
    assert_eq!(record.hook.id(), event.hook);
    assert_eq!(record.class.0, event.class);
    assert_eq!(record.level.raw(), u32::from(event.level));
    assert_eq!(u16::from(record.page_shift), event.page_shift);
    assert_eq!((record.pid, record.tgid), (event.pid, event.tgid));
    assert_eq!(record.pfn, has(abi::EVENT_PFN_KNOWN).then_some(event.pfn));
    assert_eq!(record.file.is_some(), has(abi::EVENT_FILE));
    assert_eq!(
        record.stack.len(),
        (event.stack_bytes as usize / 8).min(abi::STACK_DEPTH)
    );
    assert!(!record.comm.contains('\0'), "{:?}", record.comm);
    // What trace --json prints and record writes must read back the same.
    let json = match serde_json::to_string(&record) {
        Ok(json) => json,
        Err(e) => panic!("a record does not encode: {e}: {record:?}"),
    };
    match serde_json::from_str::<Record>(&json) {
        Ok(back) => assert_eq!(back, record, "JSON round trip changed the record: {json}"),
        Err(e) => panic!("a record's JSON does not read back: {e}: {json}"),
    }
    Some(record)
}

pub fn run_through_the_pipeline(records: Vec<Record>) {
    // A clock offset as on a host today (realtime - monotonic).
    let clock = Clock::with_offset(1_700_000_000_000_000_000);
    let rules = || {
        RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: true,
            },
        )
    };
    let opts = |format| ViewOptions {
        format,
        stack: true,
        filter: Filter::default(),
        count: None,
        dedup_window: Duration::from_secs(10),
        alerts_file: None,
        color: true,
    };
    let mut pipeline = Pipeline::new(
        rules(),
        Filter::default(),
        Hosts::Given,
        Duration::from_secs(10),
        clock,
    );
    let (mut text, mut json) = (Vec::new(), Vec::new());
    let mut text_view = View::new(&mut text, &opts(Format::Text), clock);
    let mut json_view = View::new(&mut json, &opts(Format::Json), clock);
    let mut tally = Tally::default();
    let fed = records.len() as u64;
    {
        let mut sinks: [&mut dyn Sink; 3] = [&mut text_view, &mut json_view, &mut tally];
        for record in records {
            if let Err(e) = pipeline.feed(record, None, &mut sinks) {
                panic!("the pipeline failed on a decoded record: {e:#}");
            }
        }
        if let Err(e) = pipeline.finish(&mut sinks) {
            panic!("the pipeline failed to finish: {e:#}");
        }
    }
    for view in [text_view.finish(0), json_view.finish(0)] {
        match view {
            Ok(summary) => assert_eq!(summary.records, fed),
            Err(e) => panic!("a view failed: {e:#}"),
        }
    }
    for line in String::from_utf8_lossy(&json).lines() {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
            panic!("trace --json printed a line that is not JSON ({e}): {line}");
        }
    }
    assert_eq!(tally.records, fed);
    let counts = Counts::default();
    let page = metrics::render(&Snapshot {
        kernel_release: "fuzz",
        start_time: 0.0,
        counts: &counts,
        programs: &[],
        program_stats: &[],
        stats_enabled: false,
        tally: &tally,
        undecodable: 0,
        ringbuf_bytes: abi::RINGBUF_BYTES,
        lookups: Default::default(),
    });
    let page = match page {
        Ok(page) => page,
        Err(e) => panic!("/metrics failed to render: {e:#}"),
    };
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let sample = line.rsplit_once(' ').and_then(|(name, value)| {
            let value: f64 = value.parse().ok()?;
            name.starts_with("pfnwatch_").then_some(value)
        });
        assert!(sample.is_some(), "not a sample line in /metrics: {line:?}");
    }
}
