//! The capture reader, on any file `pfnwatch replay` could be handed: the
//! input as it is (plain, or gzip when it starts with gzip's magic), and
//! the input gzip-compressed (so the decompressor's output, not only its
//! refusals, is hostile too). Whatever reads is replayed, in text and
//! JSON, as `replay` does: streaming, up to the damage.
//!
//! Properties, beyond "never panics": an error names where (a byte, and
//! a line for version 1), after the whole entries before it; compressing
//! a file changes nothing in what is read; entries read and written back
//! (as version 2, whatever they were read from) read back the same, less
//! the kernel addresses version 1 could hold; replay
//! of what reads succeeds as far as the reader does, and every JSON line
//! it prints is JSON. `cargo xtask fuzz` runs it under -malloc_limit_mb,
//! so a tiny file cannot make the reader allocate without bound.

#![no_main]

use flate2::Compression;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use pfnwatch::commands::replay::replay_from;
use pfnwatch::pipeline::filter::Filter;
use pfnwatch::rules::RuleConfig;
use pfnwatch::views::ViewOptions;
use pfnwatch::views::capture::{Entry, Header, Reader, Writer};
use pfnwatch::views::line::Format;
use std::io::Write;
use std::time::Duration;

/// What a reader made of a file: the header, the entries it handed out,
/// and its error, if any.
struct Read {
    header: Option<Header>,
    entries: Vec<Entry>,
    error: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    let plain = read(data);
    let gz = gzip(data);
    let zipped = read(&gz);
    if !data.starts_with(&[0x1f, 0x8b]) {
        // Compression is transparent: the same entries, and an error in
        // both or neither.
        assert_eq!(plain.header, zipped.header, "gzip changed the header");
        assert!(plain.entries == zipped.entries, "gzip changed the entries");
        assert_eq!(
            plain.error.is_some(),
            zipped.error.is_some(),
            "plain and gzip disagree: plain {:?}, gzip {:?}",
            plain.error,
            zipped.error
        );
    }
    if let Some(header) = &plain.header {
        if plain.error.is_none() {
            round_trip(header, &plain.entries);
        }
        replay(data, plain.entries.len(), plain.error.is_some());
    }
});

/// The reader's entries up to its error, the error checked for a place.
fn read(bytes: &[u8]) -> Read {
    let mut reader = match Reader::new(bytes) {
        Ok(r) => r,
        Err(e) => {
            return Read {
                header: None,
                entries: Vec::new(),
                error: Some(checked(&e)),
            };
        }
    };
    let mut entries = Vec::new();
    let error = loop {
        match reader.next_entry() {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => break None,
            Err(e) => break Some(checked(&e)),
        }
    };
    // Nothing more after the end or an error.
    assert!(matches!(reader.next_entry(), Ok(None)));
    Read {
        header: Some(reader.header().clone()),
        entries,
        error,
    }
}

/// An error says where: a byte (and line), unless the file is empty.
fn checked(e: &anyhow::Error) -> String {
    let message = format!("{e:#}");
    assert!(
        message.contains("byte ") || message.contains("the file is empty"),
        "the error says not where: {message}"
    );
    message
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    // Writing into a Vec cannot fail; an error here is the encoder's bug.
    if let Err(e) = enc.write_all(data) {
        panic!("gzip into memory failed: {e}");
    }
    match enc.finish() {
        Ok(gz) => gz,
        Err(e) => panic!("gzip into memory failed: {e}"),
    }
}

/// Written back as `pfnwatch record` writes (version 2), the entries read
/// back the same.
fn round_trip(header: &Header, entries: &[Entry]) {
    let mut w = Writer::new(Vec::new(), "memory".into());
    let written = std::iter::once(w.header(header))
        .chain(entries.iter().map(|e| w.entry(e)))
        .collect::<anyhow::Result<Vec<()>>>();
    if let Err(e) = written {
        panic!("entries that were read do not write: {e:#}");
    }
    let bytes = match w.finish() {
        Ok(bytes) => bytes,
        Err(e) => panic!("entries that were read do not write: {e:#}"),
    };
    let back = read(&bytes);
    assert!(
        back.error.is_none(),
        "written back, the capture does not read: {:?}",
        back.error
    );
    let same_header = back.header.as_ref().map(|h| Header {
        version: header.version,
        ..h.clone()
    });
    assert!(same_header.as_ref() == Some(header), "written back, the header differs");
    // Version 1 captures could hold kernel addresses; version 2 has no
    // place for them (replay never shows them).
    let want: Vec<Entry> = entries.iter().map(without_kernel_addresses).collect();
    assert!(back.entries == want, "written back, the entries differ");
}

fn without_kernel_addresses(entry: &Entry) -> Entry {
    match entry {
        Entry::Record { record, host } => Entry::Record {
            record: Box::new(record.without_kernel_addresses()),
            host: host.clone(),
        },
        other => other.clone(),
    }
}

/// Replays as `pfnwatch replay` does: the entries the reader handed out
/// are shown, and it fails only where the reader did.
fn replay(data: &[u8], entries: usize, damaged: bool) {
    for format in [Format::Text, Format::Json] {
        let opts = ViewOptions {
            format,
            stack: true,
            filter: Filter::default(),
            count: None,
            dedup_window: Duration::from_secs(10),
            alerts_file: None,
            color: format == Format::Text,
        };
        let reader = match Reader::new(data) {
            Ok(r) => r,
            Err(e) => panic!("the header read once and not twice: {e:#}"),
        };
        let mut out = Vec::new();
        let result = replay_from(reader, RuleConfig::default(), opts, &mut out);
        assert_eq!(
            result.is_err(),
            damaged,
            "replay and the reader disagree on the file: {:?}",
            result.err().map(|e| format!("{e:#}"))
        );
        if let Ok(summary) = &result {
            let records = usize::try_from(summary.records + summary.filtered).unwrap_or(usize::MAX);
            assert!(records <= entries, "replay showed more records than were read");
        }
        if format == Format::Json {
            for line in String::from_utf8_lossy(&out).lines() {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
                    panic!("replay --json printed a line that is not JSON ({e}): {line}");
                }
            }
        }
    }
}
