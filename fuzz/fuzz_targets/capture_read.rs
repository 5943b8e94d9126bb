//! The capture reader, on any file `pfnwatch replay` could be handed: the
//! input as it is (plain, or gzip when it starts with gzip's magic), and
//! the input gzip-compressed (so the decompressor's output, not only its
//! refusals, is hostile too). A capture that reads is replayed, in text
//! and JSON, as `replay` does.
//!
//! Properties, beyond "never panics": an error names where (a line and
//! its byte, or the byte the compressed data broke at); compressing a
//! file changes nothing in what is read; a capture read and written back
//! reads back the same; replay of a capture that reads succeeds, and
//! every JSON line it prints is JSON. `cargo xtask fuzz` runs it under
//! -malloc_limit_mb, so a tiny file cannot make the reader allocate
//! without bound.

#![no_main]

use flate2::Compression;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use pfnwatch::commands::replay::replay_capture;
use pfnwatch::pipeline::filter::Filter;
use pfnwatch::rules::RuleConfig;
use pfnwatch::views::ViewOptions;
use pfnwatch::views::capture::{self, Capture, Entry};
use pfnwatch::views::line::Format;
use std::io::Write;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let plain = read(data);
    let gz = gzip(data);
    let zipped = read(&gz);
    if !data.starts_with(&[0x1f, 0x8b]) {
        // Compression is transparent: the same capture, or an error too.
        match (&plain, &zipped) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "gzip changed what was read"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!(
                "plain and gzip disagree: plain {:?}, gzip {:?}",
                a.as_ref().map(|_| "ok"),
                b.as_ref().map(|_| "ok")
            ),
        }
    }
    if let Ok(cap) = plain {
        round_trip(&cap);
        replay(cap);
    }
});

/// `capture::parse`, with its error checked for a place.
fn read(bytes: &[u8]) -> Result<Capture, String> {
    capture::parse(bytes).map_err(|e| {
        let message = format!("{e:#}");
        assert!(
            names_a_place(&message),
            "the error says not where: {message}"
        );
        message
    })
}

/// "line N (byte B)", or the byte of the compressed data; an empty file
/// has no place to name.
fn names_a_place(message: &str) -> bool {
    (message.contains("line ") && message.contains("byte "))
        || message.contains("at byte ")
        || message.contains("the file is empty")
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

/// Written back as `pfnwatch record` writes (one JSON value per line, the
/// end line last), a capture reads back the same.
fn round_trip(cap: &Capture) {
    let mut text = String::new();
    let mut line = |value: serde_json::Result<String>| match value {
        Ok(json) => {
            text.push_str(&json);
            text.push('\n');
        }
        Err(e) => panic!("a capture that was read does not encode: {e}"),
    };
    line(serde_json::to_string(&cap.header));
    let mut records = 0;
    for entry in &cap.entries {
        records += u64::from(matches!(entry, Entry::Record { .. }));
        line(serde_json::to_string(entry));
    }
    line(serde_json::to_string(&Entry::End { records }));
    match capture::parse(text.as_bytes()) {
        Ok(back) => assert_eq!(&back, cap, "written back, the capture reads differently"),
        Err(e) => panic!("written back, the capture does not read: {e:#}\n{text}"),
    }
}

fn replay(cap: Capture) {
    for format in [Format::Text, Format::Json] {
        let opts = ViewOptions {
            format,
            stack: true,
            filter: Filter::default(),
            count: None,
            dedup_window: Duration::from_secs(10),
            alerts_file: None,
        };
        let mut out = Vec::new();
        if let Err(e) = replay_capture(cap.clone(), RuleConfig::default(), opts, &mut out) {
            panic!("a capture that reads does not replay: {e:#}");
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
