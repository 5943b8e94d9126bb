//! The capture file `pfnwatch record` writes and `pfnwatch replay` reads
//! (docs/capture-format.md).
//!
//! A JSON header line (`head -1` shows what it is), then entries. Version
//! 2, written since streaming replay, frames them in binary with strings
//! sent once (frame.rs): `--all` on a busy host records hundreds of
//! thousands of records a second, which JSON could neither write nor read
//! at that rate. Version 1, JSON lines, is still read. Both are read as a
//! stream (reader.rs): a cut-off or damaged file gives every whole entry
//! before the damage, then an error naming where.
//!
//! Replay needs what the capture host knew and this one cannot recompute:
//! the kernel release, whether its architecture has pte_special, the clock
//! offset for wall-clock times, and per record the symbolised call path,
//! cgroup path and driver name.

mod frame;
mod input;
mod reader;
mod writer;

pub use frame::Limits;
pub use reader::Reader;
pub use writer::Writer;

use crate::enrich::Enrichment;
use crate::kernel::counters::Counts;
use crate::kernel::decode::Record;
use crate::kernel::loader::ProgramReport;
use crate::rules::Selection;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The header's `format`: what makes a file a pfnwatch capture.
pub const FORMAT: &str = "pfnwatch-capture";
/// The version this pfnwatch writes: binary frames. It changes when an
/// entry loses a field or a field changes meaning.
pub const VERSION: u32 = 2;
/// JSON lines, written until version 2; still read.
pub const VERSION_JSON_LINES: u32 = 1;
/// The versions this pfnwatch reads.
pub const READS: [u32; 2] = [VERSION_JSON_LINES, VERSION];

/// The first line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] of the writer.
    pub version: u32,
    /// The pfnwatch release that recorded.
    pub pfnwatch: String,
    /// The capture host's kernel release.
    pub kernel: String,
    pub arch: String,
    /// Whether the capture host's architecture keeps a special bit in its
    /// ptes (rule R7 depends on it), and how that was found out.
    pub pte_special: bool,
    pub pte_special_source: String,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC on the capture host, in ns: turns
    /// record times into wall-clock times.
    pub clock_offset_ns: i64,
    /// When recording started (RFC 3339).
    pub recorded_at: String,
    /// `rules` (rule candidates and pfn mappings created) or `all`.
    pub selection: Selection,
    /// The arguments `pfnwatch record` was given (for the reader's benefit).
    pub args: Vec<String>,
    /// What attached on the capture host.
    pub programs: Vec<ProgramReport>,
}

/// Every line after the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Entry {
    Record {
        #[serde(flatten)]
        record: Box<Record>,
        /// Host context, looked up on the capture host.
        #[serde(default)]
        host: Enrichment,
    },
    /// The kernel dropped records here (ring buffer full).
    Lost { lost: u64, total: u64 },
    /// The kernel's counters at this point (SIGUSR1, and at the end).
    Counts { counts: Counts },
    /// The last line of a complete capture.
    End { records: u64 },
}

/// A capture, read whole and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    pub header: Header,
    /// Without the end line.
    pub entries: Vec<Entry>,
}

/// The mode a new capture file gets.
pub const MODE: u32 = 0o600;

/// Reads every entry of an in-memory capture; the first error fails it.
/// For tests and the fuzz targets: replay streams with [`Reader`].
pub fn parse(bytes: &[u8]) -> Result<Capture> {
    let mut reader = Reader::new(bytes)?;
    let entries = reader.by_ref().collect::<Result<Vec<Entry>>>()?;
    Ok(Capture {
        header: reader.header().clone(),
        entries,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn header() -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            pfnwatch: "0.1.0".into(),
            kernel: "6.12.117+deb13-amd64".into(),
            arch: "x86_64".into(),
            pte_special: true,
            pte_special_source: "test".into(),
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
            ..crate::kernel::decode::sample_remap()
        }
    }

    /// A complete capture of two records, a loss and the counters.
    pub fn sample() -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("pfnwatch-cap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("sample-{:?}", std::thread::current().id()));
        let mut w = Writer::create(&path).unwrap();
        w.header(&header()).unwrap();
        let host = Enrichment {
            driver: Some("mem".into()),
            stack: vec!["mmap_mem+0x9".into()],
            ..Enrichment::default()
        };
        w.record(&record(1), &host).unwrap();
        w.entry(&Entry::Lost { lost: 2, total: 2 }).unwrap();
        w.record(&record(2), &Enrichment::default()).unwrap();
        w.entry(&Entry::Counts {
            counts: Counts::default(),
        })
        .unwrap();
        w.finish().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, MODE, "a capture is the owner's alone");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        bytes
    }

    fn err(bytes: &[u8]) -> String {
        format!("{:#}", parse(bytes).unwrap_err())
    }

    #[test]
    fn writes_and_reads_back_everything() {
        let bytes = sample();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(text.lines().count(), 6);
        assert!(text.starts_with("{\"format\":\"pfnwatch-capture\",\"version\":1,"));
        assert!(text.ends_with("{\"type\":\"end\",\"records\":2}\n"));
        let cap = parse(&bytes).unwrap();
        assert_eq!(cap.header, header());
        assert_eq!(cap.entries.len(), 4);
        let Entry::Record { record: r, host } = &cap.entries[0] else {
            panic!("{:?}", cap.entries[0]);
        };
        // The call path by symbol only: no kernel address is written.
        assert_eq!(**r, record(1).without_kernel_addresses());
        assert!(r.stack.is_empty() && !text.contains("18446744"));
        assert_eq!(host.driver.as_deref(), Some("mem"));
        assert_eq!(host.stack, ["mmap_mem+0x9"]);
        assert_eq!(cap.entries[1], Entry::Lost { lost: 2, total: 2 });
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
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&sample()).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(parse(&gz).unwrap(), parse(&sample()).unwrap());
        let e = err(&gz[..gz.len() / 2]);
        assert!(e.contains("gzip-compressed"), "{e}");
    }

    #[test]
    fn damaged_gzip_is_an_error_naming_the_byte() {
        // Found by fuzzing (fuzz/corpus/capture_read/crash-1a0fe428...):
        // a damaged gzip file was refused without saying where.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&sample()).unwrap();
        let gz = enc.finish().unwrap();
        let cut = &gz[..gz.len() / 2];
        let e = err(cut);
        assert!(
            e.contains(&format!(
                "damaged: found at byte {} of {}",
                cut.len(),
                cut.len()
            )),
            "{e}"
        );
        // A wrong checksum: the trailer's 8 bytes end the file.
        let mut bad_crc = gz.clone();
        let at = gz.len() - 8;
        bad_crc[at] ^= 0xff;
        let e = err(&bad_crc);
        assert!(
            e.contains(&format!("found at byte {} of {}", gz.len(), gz.len())),
            "{e}"
        );
        assert!(e.contains("bytes decompressed before it"), "{e}");
    }

    #[test]
    fn truncation_anywhere_is_an_error_naming_the_place() {
        let bytes = sample();
        for cut in 1..bytes.len() {
            let e = err(&bytes[..cut]);
            assert!(
                e.contains("cut off") || e.contains("not a pfnwatch capture"),
                "cut at {cut}: {e}"
            );
        }
        // Cut after a whole line: the end line is missing.
        let text = std::str::from_utf8(&bytes).unwrap();
        let two_lines = text
            .lines()
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        let e = err(two_lines.as_bytes());
        assert!(
            e.contains(&format!(
                "stops after line 2 (byte {}) without its end line",
                two_lines.len()
            )),
            "{e}"
        );
        // Cut inside the third line.
        let e = err(&bytes[..two_lines.len() + 10]);
        assert!(
            e.contains(&format!(
                "line 3 (byte {}): the last line has no newline",
                two_lines.len()
            )),
            "{e}"
        );
    }

    #[test]
    fn damaged_lines_are_named_by_line_and_byte() {
        let text = String::from_utf8(sample()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let offset = |n: usize| lines[..n].iter().map(|l| l.len() + 1).sum::<usize>();
        let with = |n: usize, new: &str| {
            let mut l = lines.clone();
            l[n] = new;
            l.iter().map(|l| format!("{l}\n")).collect::<String>()
        };
        // A record with a bad hook name.
        let bad = lines[1].replace("remap_pfn_range", "remap_pfn_rang");
        let e = err(with(1, &bad).as_bytes());
        assert!(
            e.contains(&format!("line 2 (byte {}): expected a record", offset(1))),
            "{e}"
        );
        assert!(e.contains("unknown hook \"remap_pfn_rang\""), "{e}");
        // A line of garbage bytes.
        let mut bytes = with(2, "").into_bytes();
        let at = offset(2);
        bytes.splice(at..at, [0xff, 0xfe, b'x']);
        let e = err(&bytes);
        assert!(e.contains(&format!("line 3 (byte {at}): not UTF-8")), "{e}");
        // An unknown entry type.
        let e = err(with(3, r#"{"type":"wat"}"#).as_bytes());
        assert!(
            e.contains("line 4") && e.contains("unknown variant `wat`"),
            "{e}"
        );
        // The end line's count disagrees.
        let e = err(with(5, r#"{"type":"end","records":3}"#).as_bytes());
        assert!(
            e.contains("line 6") && e.contains("counts 3 records, the file holds 2"),
            "{e}"
        );
        // Anything after the end line.
        let e = err(format!("{text}{{}}\n").as_bytes());
        assert!(
            e.contains("line 7") && e.contains("after the end line"),
            "{e}"
        );
    }

    #[test]
    fn foreign_and_wrong_version_files_are_refused_up_front() {
        assert!(err(b"").contains("empty"));
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
        let text = String::from_utf8(sample()).unwrap();
        let newer = text.replacen("\"version\":1,", "\"version\":2,\"more\":{},", 1);
        let e = err(newer.as_bytes());
        assert!(
            e.contains("line 1 (byte 0): capture format version 2; this pfnwatch reads version 1"),
            "{e}"
        );
        let no_kernel = text.replacen("\"kernel\":", "\"kernal\":", 1);
        let e = err(no_kernel.as_bytes());
        assert!(
            e.contains("bad capture header") && e.contains("missing field `kernel`"),
            "{e}"
        );
    }
}
