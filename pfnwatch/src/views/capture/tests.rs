//! The capture format's tests: what is written reads back, and every way
//! a file can be cut, damaged or foreign gives the whole entries before
//! the place, then an error naming it.

use super::*;
use crate::kernel::counters::Counts;
use std::io::Write as _;
use std::path::Path;

pub fn header() -> Header {
    Header {
        format: FORMAT.into(),
        version: VERSION,
        pfnwatch: "0.1.0".into(),
        kernel: "6.12.117+deb13-amd64".into(),
        arch: "x86_64".into(),
        pte_special: true,
        pte_special_source: "test".into(),
        page_shift: 12,
        clock_offset_ns: 1_700_000_000_000_000_000,
        recorded_at: "2023-11-14T22:13:20Z".into(),
        selection: Selection::All,
        args: vec!["record".into(), "x".into()],
        programs: Vec::new(),
    }
}

fn record(ts: u64) -> Record {
    Record {
        ts_ns: ts,
        stack: vec![0xffff_ffff_8100_0000],
        fault_fn: 0xffff_ffff_8200_0000,
        ..crate::kernel::decode::sample_remap()
    }
}

fn host() -> Enrichment {
    Enrichment {
        driver: Some("mem".into()),
        cgroup: Some("/system.slice/x.service".into()),
        stack: vec!["mmap_mem+0x9".to_owned(), "do_mmap+0x1".to_owned()].into(),
        ..Enrichment::default()
    }
}

/// Two records, a loss and the counters, as entries read back.
fn sample_entries() -> Vec<Entry> {
    vec![
        Entry::Record {
            record: Box::new(record(1).without_kernel_addresses()),
            host: host(),
        },
        Entry::Lost { lost: 2, total: 2 },
        Entry::Record {
            record: Box::new(record(2).without_kernel_addresses()),
            host: Enrichment::default(),
        },
        Entry::Counts {
            counts: Counts::default(),
        },
    ]
}

/// A complete capture of [`sample_entries`], written to a file as record
/// writes it.
pub fn sample() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("pfnwatch-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("sample-{:?}", std::thread::current().id()));
    let mut w = Writer::create(&path).unwrap();
    w.header(&header()).unwrap();
    w.record(&record(1), &host()).unwrap();
    w.entry(&Entry::Lost { lost: 2, total: 2 }).unwrap();
    w.record(&record(2), &Enrichment::default()).unwrap();
    w.entry(&Entry::Counts {
        counts: Counts::default(),
    })
    .unwrap();
    w.finish_file().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, MODE, "a capture is the owner's alone");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

/// `records` records whose comms are all different, in memory.
fn many(records: u64) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), "memory".into());
    w.header(&header()).unwrap();
    for i in 0..records {
        let r = Record {
            comm: format!("p{i}"),
            ..record(i)
        };
        w.record(&r, &host()).unwrap();
    }
    w.finish().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn err(bytes: &[u8]) -> String {
    format!("{:#}", parse(bytes).unwrap_err())
}

/// The entries a reader hands out before its error, and the error.
fn until_error(bytes: &[u8]) -> (Vec<Entry>, String) {
    let mut reader = match Reader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), format!("{e:#}")),
    };
    let mut entries = Vec::new();
    loop {
        match reader.next_entry() {
            Ok(Some(e)) => entries.push(e),
            Ok(None) => panic!("read to the end without an error"),
            Err(e) => {
                // Nothing more after an error.
                assert!(reader.next_entry().unwrap().is_none());
                return (entries, format!("{e:#}"));
            }
        }
    }
}

/// The header line's length.
fn header_len(bytes: &[u8]) -> usize {
    bytes.iter().position(|b| *b == b'\n').unwrap() + 1
}

#[test]
fn writes_and_reads_back_everything() {
    let bytes = sample();
    let first = std::str::from_utf8(&bytes[..header_len(&bytes)]).unwrap();
    assert!(first.starts_with("{\"format\":\"pfnwatch-capture\",\"version\":2,"));
    let cap = parse(&bytes).unwrap();
    assert_eq!(cap.header, header());
    assert_eq!(cap.entries, sample_entries());
    // No kernel address is written: the call path goes by symbol.
    let Entry::Record { record: r, .. } = &cap.entries[0] else {
        panic!("{:?}", cap.entries[0]);
    };
    assert!(r.stack.is_empty() && r.fault_fn == 0);
    let raw = 0xffff_ffff_8100_0000u64.to_le_bytes();
    assert!(!bytes.windows(8).any(|w| w == raw));
    // Compact: strings once, numbers as varints.
    assert!(bytes.len() < first.len() + 400, "{} bytes", bytes.len());
}

#[test]
fn an_unwritable_path_fails_naming_it() {
    let err = Writer::create(Path::new("/nonexistent/dir/c"))
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("creating the capture file /nonexistent/dir/c"));
}

#[test]
fn reads_gzip_compressed_captures() {
    let gz = gzip(&sample());
    assert_eq!(parse(&gz).unwrap(), parse(&sample()).unwrap());
}

#[test]
fn a_cut_gzip_stream_gives_what_it_holds_then_the_byte() {
    let plain = many(20_000);
    let all = parse(&plain).unwrap().entries;
    let gz = gzip(&plain);
    let cut = &gz[..gz.len() / 2];
    let (entries, e) = until_error(cut);
    assert!(entries.len() > 1000, "{} entries", entries.len());
    assert_eq!(entries[..], all[..entries.len()]);
    assert!(
        e.contains("gzip-compressed") && e.contains(&format!("at byte {} of the file", cut.len())),
        "{e}"
    );
    // A wrong checksum in the trailer: every entry, then the error.
    let mut bad_crc = gzip(&sample());
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0xff;
    let (entries, e) = until_error(&bad_crc);
    assert_eq!(entries, sample_entries());
    assert!(
        e.contains("gzip-compressed") && e.contains("damaged"),
        "{e}"
    );
}

#[test]
fn a_cut_anywhere_gives_every_whole_entry_then_the_place() {
    let bytes = sample();
    let all = sample_entries();
    let body = header_len(&bytes);
    for cut in 1..bytes.len() {
        let (entries, e) = until_error(&bytes[..cut]);
        assert_eq!(entries[..], all[..entries.len()], "cut at {cut}");
        if cut < body {
            assert!(
                e.contains("not a pfnwatch capture") || e.contains("cut off"),
                "cut at {cut}: {e}"
            );
        } else {
            assert!(
                e.contains("cut off") && e.contains(&format!("byte {cut}")),
                "cut at {cut}: {e}"
            );
        }
    }
    // Cut between entries: no end entry.
    let (entries, e) = until_error(&bytes[..body]);
    assert!(entries.is_empty());
    assert!(
        e.contains(&format!(
            "stops at byte {body}, after record 0, without its end entry"
        )),
        "{e}"
    );
    // Cut inside the first record's frame (after its strings): the record
    // is not handed out, the place is.
    let (entries, e) = until_error(&bytes[..bytes.len() - 30]);
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(e.contains("inside the entry that starts at byte"), "{e}");
    assert!(e.contains("after record 2"), "{e}");
}

#[test]
fn a_damaged_entry_is_named_after_every_entry_before_it() {
    let bytes = sample();
    let all = sample_entries();
    // Flip a byte in the last frame (the end entry).
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let (entries, e) = until_error(&bad);
    assert_eq!(entries, all);
    assert!(
        e.contains("is damaged: its checksum does not match") && e.contains("after record 2"),
        "{e}"
    );
    // A length past any entry's: refused before anything is allocated.
    let mut huge = bytes[..header_len(&bytes)].to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&[0; 4]);
    let e = err(&huge);
    assert!(
        e.contains(&format!(
            "the entry at byte {} (after record 0) is damaged: it says it is 4294967295 bytes long",
            header_len(&bytes)
        )),
        "{e}"
    );
}

/// A frame as the writer makes it, for entries a writer would not write.
fn frame(f: &frame::Frame) -> Vec<u8> {
    let body = postcard::to_allocvec(f).unwrap();
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[test]
fn frames_that_name_what_was_never_sent_are_refused() {
    let bytes = sample();
    let head = &bytes[..header_len(&bytes)];
    let with = |frames: &[frame::Frame]| {
        let mut b = head.to_vec();
        for f in frames {
            b.extend(frame(f));
        }
        err(&b)
    };
    let wire = frame::WireRecord {
        hook: 7,
        ..frame::WireRecord::default()
    };
    let e = with(&[frame::Frame::Record(wire.clone())]);
    assert!(
        e.contains("the record at byte") && e.contains("string 7 is never defined"),
        "{e}"
    );
    let e = with(&[
        frame::Frame::String("remap_pfn_rang"),
        frame::Frame::Record(frame::WireRecord {
            hook: 0,
            ..wire.clone()
        }),
    ]);
    assert!(e.contains("unknown hook \"remap_pfn_rang\""), "{e}");
    let e = with(&[frame::Frame::Path(vec![3])]);
    assert!(
        e.contains("a call path names string 3 is never defined"),
        "{e}"
    );
    // A reset forgets every string.
    let e = with(&[
        frame::Frame::String("vm_normal_page"),
        frame::Frame::Reset,
        frame::Frame::Record(frame::WireRecord { hook: 0, ..wire }),
    ]);
    assert!(e.contains("string 0 is never defined"), "{e}");
    // The end entry's count is checked, and nothing may follow it.
    let e = with(&[frame::Frame::End { records: 3 }]);
    assert!(
        e.contains("the end entry counts 3 records, the file holds 0"),
        "{e}"
    );
    let mut after = bytes.clone();
    after.push(0);
    let e = err(&after);
    assert!(
        e.contains(&format!("byte {}: data after the end entry", bytes.len())),
        "{e}"
    );
}

#[test]
fn memory_stays_bounded_whatever_the_length() {
    // More distinct strings than the table holds: the writer resets it
    // and the reader's footprint never passes the bound.
    let n = Limits::STRINGS as u64 + 5000;
    let bytes = many(n);
    let mut reader = Reader::new(&bytes[..]).unwrap();
    let mut most = 0;
    let mut read = 0u64;
    while let Some(entry) = reader.next_entry().unwrap() {
        assert!(matches!(entry, Entry::Record { .. }));
        read += 1;
        most = most.max(reader.footprint());
    }
    assert_eq!(read, n);
    assert!(most <= Reader::MAX_FOOTPRINT, "{most}");
    // The bound itself leaves the rest of replay room under 64 MiB.
    const { assert!(Reader::MAX_FOOTPRINT < 40 << 20) };
    // Each entry is handed out and forgotten: the reader holds none.
    let small = many(10);
    let mut reader = Reader::new(&small[..]).unwrap();
    let first = reader.next_entry().unwrap();
    let footprint = reader.footprint();
    drop(first);
    assert_eq!(reader.footprint(), footprint);
}

/// Version 1: a JSON header of version 1, one JSON entry per line.
fn v1(entries: &[Entry]) -> String {
    let mut h = serde_json::to_value(header()).unwrap();
    h["version"] = 1.into();
    let mut text = format!("{h}\n");
    for e in entries {
        text.push_str(&serde_json::to_string(e).unwrap());
        text.push('\n');
    }
    text
}

#[test]
fn version_1_json_lines_still_read() {
    let entries = sample_entries();
    let text = v1(&entries) + "{\"type\":\"end\",\"records\":2}\n";
    let cap = parse(text.as_bytes()).unwrap();
    assert_eq!(cap.header.version, 1);
    assert_eq!(cap.entries, entries);
    assert_eq!(parse(&gzip(text.as_bytes())).unwrap(), cap);
    // Cut: the whole lines, then the line and byte of the cut.
    let lines: Vec<&str> = text.lines().collect();
    let two = lines[0].len() + lines[1].len() + 2;
    let (got, e) = until_error(&text.as_bytes()[..two + 10]);
    assert_eq!(got, entries[..1]);
    assert!(
        e.contains(&format!(
            "line 3 (byte {two}): the last line has no newline"
        )),
        "{e}"
    );
    let (got, e) = until_error(v1(&entries).as_bytes());
    assert_eq!(got, entries);
    assert!(
        e.contains("stops after line 5") && e.contains("without its end line"),
        "{e}"
    );
    // A damaged line is named by line and byte.
    let bad = text.replacen("remap_pfn_range", "remap_pfn_rang", 1);
    let (got, e) = until_error(bad.as_bytes());
    assert!(got.is_empty());
    assert!(
        e.contains(&format!(
            "line 2 (byte {}): expected a record",
            lines[0].len() + 1
        )) && e.contains("unknown hook \"remap_pfn_rang\""),
        "{e}"
    );
    let mut garbage = text.clone().into_bytes();
    garbage.splice(two..two, [0xff, 0xfe, b'\n']);
    let (_, e) = until_error(&garbage);
    assert!(
        e.contains(&format!("line 3 (byte {two}): not UTF-8")),
        "{e}"
    );
}

#[test]
fn foreign_and_unknown_version_files_are_refused_up_front() {
    assert!(err(b"").contains("empty"));
    assert!(err(&gzip(b"")).contains("empty"));
    for foreign in [
        &b"\x7fELF\x02\x01\x01\0\0\0\n"[..],
        b"hello\n",
        b"{\"type\":\"ready\",\"version\":1}\n",
        b"[1,2]\n",
    ] {
        let e = err(foreign);
        assert!(
            e.contains("line 1 (byte 0)") && e.contains("not a pfnwatch capture"),
            "{e}"
        );
    }
    let bytes = sample();
    let body = &bytes[header_len(&bytes)..];
    let text = std::str::from_utf8(&bytes[..header_len(&bytes)]).unwrap();
    let newer = text.replacen("\"version\":2,", "\"version\":3,\"more\":{},", 1);
    let e = err(&[newer.as_bytes(), body].concat());
    assert!(
        e.contains(
            "line 1 (byte 0): capture format version 3; this pfnwatch reads versions 1 and 2"
        ),
        "{e}"
    );
    let no_kernel = text.replacen("\"kernel\":", "\"kernal\":", 1);
    let e = err(&[no_kernel.as_bytes(), body].concat());
    assert!(
        e.contains("bad capture header") && e.contains("missing field `kernel`"),
        "{e}"
    );
}

#[test]
fn recycled_buffers_change_nothing_read() {
    // Records with and without a file, module, driver and call path, one
    // after the other, each read into the buffers of the one before.
    let mut w = Writer::new(Vec::new(), "memory".into());
    w.header(&header()).unwrap();
    let mut with_module = record(3);
    if let Some(f) = with_module.file.as_mut() {
        f.module = Some("bochs".into());
    }
    let no_file = Record {
        file: None,
        comm: "a-much-longer-comm".into(),
        ..record(4)
    };
    let records = [
        (with_module, host()),
        (no_file, Enrichment::default()),
        (record(5), host()),
    ];
    for (r, h) in &records {
        w.record(r, h).unwrap();
    }
    let bytes = w.finish().unwrap();
    let mut reader = Reader::new(&bytes[..]).unwrap();
    let mut n = 0;
    while let Some(entry) = reader.next_entry().unwrap() {
        let Entry::Record { record, host } = entry else {
            panic!("{entry:?}");
        };
        let (want, want_host) = &records[n];
        assert_eq!(*record, want.without_kernel_addresses());
        assert_eq!(&host, want_host);
        reader.recycle(*record, host);
        n += 1;
    }
    assert_eq!(n, records.len());
}

#[test]
fn every_record_flag_reads_back() {
    let flagged = [
        Record {
            at_entry: true,
            ..record(1)
        },
        Record {
            zero_page: true,
            ..record(2)
        },
        Record {
            fork: true,
            ..record(3)
        },
        Record {
            existing: true,
            ..record(4)
        },
        Record {
            free_unseen: true,
            ..record(5)
        },
    ];
    let mut w = Writer::new(Vec::new(), "memory".into());
    w.header(&header()).unwrap();
    for r in &flagged {
        w.record(r, &Enrichment::default()).unwrap();
    }
    let cap = parse(&w.finish().unwrap()).unwrap();
    let read: Vec<Record> = cap
        .entries
        .into_iter()
        .filter_map(|e| match e {
            Entry::Record { record, .. } => Some(*record),
            _ => None,
        })
        .collect();
    let want: Vec<Record> = flagged
        .iter()
        .map(Record::without_kernel_addresses)
        .collect();
    assert_eq!(read, want);
}

#[test]
fn a_staged_capture_is_named_on_commit_and_gone_if_dropped() {
    let dir = std::env::temp_dir().join(format!("pfnwatch-staged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c");
    // An earlier capture there survives a start that fails.
    std::fs::write(&path, b"earlier").unwrap();
    let (w, staged) = Writer::stage(&path).unwrap();
    drop(w);
    drop(staged);
    assert_eq!(std::fs::read(&path).unwrap(), b"earlier");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing else left"
    );
    // Committed, the new capture takes the name.
    let (mut w, staged) = Writer::stage(&path).unwrap();
    w.header(&header()).unwrap();
    staged.commit().unwrap();
    w.finish_file().unwrap();
    let cap = parse(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(cap.header, header());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The page size travels with a capture: arm64 hosts may have 16 or 64 KiB
/// pages. Captures from before say nothing and mean 4 KiB; a page size
/// pfnwatch does not know is refused where it is written.
#[test]
fn page_sizes_are_read_and_unknown_ones_refused() {
    let capture = |h: &Header| {
        let mut w = Writer::new(Vec::new(), "memory".into());
        w.header(h).unwrap();
        w.record(&record(1), &host()).unwrap();
        w.finish().unwrap()
    };
    let mut h = header();
    h.page_shift = 16;
    let cap = parse(&capture(&h)).unwrap();
    assert_eq!(cap.header.page_shift, 16);
    let Some(Entry::Record { record, .. }) = cap.entries.first() else {
        panic!("no record");
    };
    assert_eq!(record.page_shift, 16);

    // A header from before arm64 has no page_shift: 4 KiB.
    let bytes = capture(&header());
    let at = header_len(&bytes);
    let mut old: serde_json::Value = serde_json::from_slice(&bytes[..at]).unwrap();
    old.as_object_mut().unwrap().remove("page_shift");
    let bytes = [format!("{old}\n").as_bytes(), &bytes[at..]].concat();
    assert_eq!(parse(&bytes).unwrap().header.page_shift, 12);

    let mut bad = serde_json::to_value(header()).unwrap();
    bad["page_shift"] = 13.into();
    let e = err(format!("{bad}\n").as_bytes());
    assert!(e.contains("line 1 (byte 0): page_shift 13"), "{e}");

    // Version 1: each record line carries its own (or means 12).
    let mut line = serde_json::to_value(&sample_entries()[0]).unwrap();
    line["page_shift"] = 11.into();
    let text = v1(&[]) + &format!("{line}\n");
    let (_, e) = until_error(text.as_bytes());
    assert!(
        e.contains("line 2 (byte") && e.contains("page_shift 11"),
        "{e}"
    );
}
