//! The capture file `pfnwatch record` writes and `pfnwatch replay` reads
//! (docs/capture-format.md).
//!
//! JSON lines: a header line, then one entry per line, then an end line.
//! Records are rare (rule hits and pfn mappings created, unless --all), so
//! size matters less than what text gives: a capture can be read, grepped
//! and diffed; hooks and classes go by name, so it survives changes to the
//! kernel ABI's ids; a damaged line is found by number and the others are
//! still readable; a cut-off file lacks its end line, which says so.
//!
//! Replay needs what the capture host knew and this one cannot recompute:
//! the kernel release, whether its architecture has pte_special, the clock
//! offset for wall-clock times, and per record the symbolised call path,
//! cgroup path and driver name.

use crate::enrich::Enrichment;
use crate::kernel::counters::Counts;
use crate::kernel::decode::Record;
use crate::kernel::loader::ProgramReport;
use crate::pipeline::{Outcome, Sink};
use crate::rules::Selection;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The header's `format`: what makes a file a pfnwatch capture.
pub const FORMAT: &str = "pfnwatch-capture";
/// The version this pfnwatch writes and reads. It changes when an entry
/// loses a field or a field changes meaning; fields may be added without.
pub const VERSION: u32 = 1;

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

/// Writes a capture: [`Writer::header`] first, [`Writer::finish`] adds the
/// end line.
pub struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    records: u64,
}

impl Writer {
    /// Creates (or truncates) `path`, before anything is attached: a path
    /// that cannot be written fails at once.
    pub fn create(path: &Path) -> Result<Writer> {
        // Owner only: a capture holds every process's mappings and call paths.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(MODE)
            .open(path)
            .with_context(|| format!("creating the capture file {}", path.display()))?;
        Ok(Writer {
            path: path.to_owned(),
            out: BufWriter::new(file),
            records: 0,
        })
    }

    /// The first line, once the programs are attached.
    pub fn header(&mut self, header: &Header) -> Result<()> {
        self.line(header)
    }

    fn line(&mut self, value: &impl Serialize) -> Result<()> {
        let json = serde_json::to_string(value).context("encoding a capture line")?;
        // Flushed line by line: a recorder killed outright leaves every
        // complete line readable, and the missing end line says the rest.
        writeln!(self.out, "{json}")
            .and_then(|()| self.out.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    pub fn record(&mut self, record: &Record, host: &Enrichment) -> Result<()> {
        self.records += 1;
        self.line(&Entry::Record {
            record: Box::new(record.without_kernel_addresses()),
            host: host.clone(),
        })
    }

    pub fn entry(&mut self, entry: &Entry) -> Result<()> {
        self.line(entry)
    }

    pub fn finish(mut self) -> Result<()> {
        let end = Entry::End {
            records: self.records,
        };
        self.line(&end)?;
        self.out
            .get_ref()
            .sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

/// A capture holds every record shown, with its host context, and the
/// losses and counter snapshots between them.
impl Sink for Writer {
    fn outcome(&mut self, o: &Outcome) -> Result<()> {
        self.record(&o.record, &o.host)
    }

    fn lost(&mut self, lost: u64, total: u64) -> Result<()> {
        self.entry(&Entry::Lost { lost, total })
    }

    fn counts(&mut self, counts: &Counts) -> Result<()> {
        self.entry(&Entry::Counts {
            counts: counts.clone(),
        })
    }
}

/// Reads and checks a whole capture before anything is replayed: a
/// damaged file is refused, never half-applied.
pub fn read(path: &Path) -> Result<Capture> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{} is not a usable capture", path.display()))
}

/// gzip's magic number: captures are often compressed to be sent.
const GZIP: [u8; 2] = [0x1f, 0x8b];

pub fn parse(bytes: &[u8]) -> Result<Capture> {
    if bytes.starts_with(&GZIP) {
        return parse_lines(&gunzip(bytes)?)
            .context("(in the gzip-compressed file; lines and bytes count the decompressed data)");
    }
    parse_lines(bytes)
}

/// Decompresses every gzip member; damage is an error naming the byte of
/// the compressed file where it was found, like any other damage.
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>> {
    // The bufread decoder takes from the slice only what it decoded, so
    // what is left says where it stopped.
    let mut decoder = flate2::bufread::MultiGzDecoder::new(bytes);
    let mut plain = Vec::new();
    match decoder.read_to_end(&mut plain) {
        Ok(_) => Ok(plain),
        Err(e) => bail!(
            "the file is gzip-compressed, and the compressed data is damaged: found at byte {} \
             of {} ({} bytes decompressed before it): {e}",
            bytes.len() - decoder.get_ref().len(),
            bytes.len(),
            plain.len()
        ),
    }
}

/// Where a line starts, for error messages.
struct At {
    line: usize,
    byte: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} (byte {})", self.line, self.byte)
    }
}

fn parse_lines(bytes: &[u8]) -> Result<Capture> {
    if bytes.is_empty() {
        bail!("the file is empty: expected a pfnwatch capture header on line 1");
    }
    let mut lines = Lines {
        bytes,
        pos: 0,
        n: 0,
    };
    let (at, first) = lines.next_line().context("no first line")?;
    let header = header(&at, first)?;
    let mut entries = Vec::new();
    let mut records = 0u64;
    loop {
        let Some((at, text)) = lines.next_line() else {
            bail!(
                "the capture stops after line {} (byte {}) without its end line: it was cut \
                 off (pfnwatch record was killed, or the copy is incomplete)",
                lines.n,
                bytes.len()
            );
        };
        let text = text.map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        let entry: Entry = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{at}: expected a record, lost, counts or end entry (a JSON object with \
                 \"type\"): {e}"
            )
        })?;
        match entry {
            Entry::End { records: want } => {
                if want != records {
                    bail!("{at}: the end line counts {want} records, the file holds {records}");
                }
                if let Some((after, _)) = lines.next_line() {
                    bail!("{after}: data after the end line");
                }
                return Ok(Capture { header, entries });
            }
            Entry::Record { .. } => records += 1,
            Entry::Lost { .. } | Entry::Counts { .. } => {}
        }
        entries.push(entry);
    }
}

fn header(at: &At, text: Result<&str, String>) -> Result<Header> {
    let foreign = || {
        format!(
            "{at}: not a pfnwatch capture: expected a JSON header with \"format\": \"{FORMAT}\""
        )
    };
    let text = text.map_err(|e| anyhow::anyhow!("{}: {e}", foreign()))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{} ({e})", foreign()))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        bail!("{}", foreign());
    }
    // The version first: a newer header may lack fields this one needs.
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => bail!(
            "{at}: capture format version {v}; this pfnwatch reads version {VERSION} \
             (replay it with the pfnwatch release that recorded it, or a newer one)"
        ),
        None => bail!("{at}: the header has no format version"),
    }
    serde_json::from_value(value).map_err(|e| anyhow::anyhow!("{at}: bad capture header: {e}"))
}

/// Lines with where they start; each must end with a newline (a last line
/// without one was cut off mid-write).
struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Lines handed out so far.
    n: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<(At, Result<&'a str, String>)> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        self.n += 1;
        let at = At {
            line: self.n,
            byte: self.pos,
        };
        let rest = &self.bytes[self.pos..];
        let text = match rest.iter().position(|b| *b == b'\n') {
            Some(end) => {
                self.pos += end + 1;
                std::str::from_utf8(&rest[..end]).map_err(|e| {
                    format!(
                        "not UTF-8 text (bad byte at {}): the file is damaged or not a capture",
                        at.byte + e.valid_up_to()
                    )
                })
            }
            None => {
                self.pos = self.bytes.len();
                Err(format!(
                    "the last line has no newline: the file was cut off after byte {}",
                    self.bytes.len()
                ))
            }
        };
        Some((at, text))
    }
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
