//! Reads a capture as a stream: the header, then one entry at a time, so
//! memory stays bounded whatever the file's length (buffers, and version
//! 2's tables within [`Limits`]). Damage or a cut is an error naming the
//! byte (and line, for version 1) where it was found, after every whole
//! entry before it was handed out.

use super::frame::{
    self, AT_ENTRY, EXISTING, FORK, FREE_UNSEEN, Frame, Limits, WireRecord, ZERO_PAGE,
};
use super::input::{self, Input};
use super::{Entry, FORMAT, Header, READS, VERSION, VERSION_JSON_LINES};
use crate::enrich::Enrichment;
use crate::kernel::decode::{DevNum, MappedFile, Record};
use anyhow::{Result, anyhow, bail};
use pfnwatch_common::{Class, Hook, Level};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

/// The longest line of version 1 and header: a record line is a few KiB.
const MAX_LINE: usize = 1 << 20;

pub struct Reader<'a> {
    header: Header,
    input: Input<'a>,
    body: Body,
    /// Record entries handed out.
    records: u64,
    /// The end entry was read, or an error returned: nothing more.
    done: bool,
    /// A line or frame body; reused.
    buf: Vec<u8>,
    /// A record and host context handed back ([`Reader::recycle`]), whose
    /// strings the next record is copied into.
    spare: Option<(Record, Enrichment)>,
}

enum Body {
    /// Version 1: lines handed out so far (the header's included).
    Lines(usize),
    Frames(Box<Tables>),
}

/// Version 2's strings and call paths, within [`Limits`].
#[derive(Default)]
struct Tables {
    strings: Vec<Box<str>>,
    string_bytes: usize,
    /// Resolved, so that a record's path is a reference, not a copy.
    paths: Vec<Arc<[String]>>,
    path_frames: usize,
    path_bytes: usize,
    /// Names parsed once per string, by string index.
    hooks: Vec<Option<Hook>>,
    classes: Vec<Option<Class>>,
}

impl Reader<'_> {
    /// The most [`Reader::footprint`] can be: read-ahead, a line or entry
    /// (twice: a buffer grows by doubling), and full tables.
    pub const MAX_FOOTPRINT: usize = input::MAX_BUFFERED
        + 2 * if MAX_LINE > frame::MAX_BODY {
            MAX_LINE
        } else {
            frame::MAX_BODY
        }
        + Limits::STRING_BYTES
        + Limits::STRINGS * (16 + size_of::<Option<Hook>>() + size_of::<Option<Class>>())
        + Limits::PATH_BYTES
        + Limits::PATH_FRAMES * size_of::<String>()
        + Limits::PATHS * 16;
}

impl Reader<'static> {
    pub fn open(path: &Path) -> Result<Reader<'static>> {
        let file = File::open(path).map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
        Reader::new(file)
    }
}

impl<'a> Reader<'a> {
    /// Reads and checks the header; the entries follow with [`Reader::next`].
    pub fn new(raw: impl Read + 'a) -> Result<Reader<'a>> {
        let mut input = Input::new(raw).map_err(|e| anyhow!("reading: {e}"))?;
        let mut buf = Vec::new();
        let n = input
            .line(&mut buf, MAX_LINE)
            .map_err(|e| input_error(&input, &e, 0))?;
        if n == 0 {
            bail!("the file is empty: expected a pfnwatch capture header on line 1");
        }
        let header = header(&buf)?;
        if !buf.ends_with(b"\n") {
            bail!(
                "line 1 (byte 0): the header has no newline: the file was cut off after byte {}",
                input.pos
            );
        }
        let body = if header.version == VERSION_JSON_LINES {
            Body::Lines(1)
        } else {
            Body::Frames(Box::default())
        };
        Ok(Reader {
            header,
            input,
            body,
            records: 0,
            done: false,
            buf,
            spare: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Record entries read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The next entry; `None` after the end entry (which is checked, not
    /// handed out). After an error, `None`.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        let next = match self.body {
            Body::Lines(_) => self.next_line(),
            Body::Frames(_) => self.next_frame(),
        };
        // Damage found in the decompressed data: say where in the file
        // too. The decompressor's own errors say so already.
        let next = next.map_err(|e| match self.input.compressed_pos() {
            Some(c) if e.downcast_ref::<InputError>().is_none() => e.context(format!(
                "in the gzip-compressed file ({c} bytes of it read; bytes and lines count \
                 the decompressed data)"
            )),
            _ => e,
        });
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next
    }

    /// Takes back a record the caller is done with: the next one is read
    /// into its buffers (a replay of a million records would otherwise
    /// allocate seven strings each).
    pub fn recycle(&mut self, record: Record, host: Enrichment) {
        self.spare = Some((record, host));
    }

    /// Bytes this reader holds, whatever the capture's length: its
    /// buffers and tables. For tests of the bound.
    pub fn footprint(&self) -> usize {
        let tables = match &self.body {
            Body::Lines(_) => 0,
            Body::Frames(t) => {
                t.string_bytes
                    + t.strings.capacity() * 16
                    + t.path_bytes
                    + t.path_frames * std::mem::size_of::<String>()
                    + t.paths.capacity() * 16
                    + t.hooks.capacity() * size_of::<Option<Hook>>()
                    + t.classes.capacity() * size_of::<Option<Class>>()
            }
        };
        self.input.buffered() + self.buf.capacity() + tables
    }

    fn next_line(&mut self) -> Result<Option<Entry>> {
        let start = self.input.pos;
        let n = self
            .input
            .line(&mut self.buf, MAX_LINE)
            .map_err(|e| input_error(&self.input, &e, start))?;
        let Body::Lines(line) = &mut self.body else {
            bail!("version 1 lines in a capture of frames");
        };
        if n == 0 {
            bail!(
                "the capture stops after line {line} (byte {start}), after record {}, without \
                 its end line: it was cut off (pfnwatch record was killed, or the copy is \
                 incomplete)",
                self.records
            );
        }
        *line += 1;
        let at = format!("line {line} (byte {start})");
        if !self.buf.ends_with(b"\n") {
            if n == MAX_LINE {
                bail!("{at}: longer than {MAX_LINE} bytes: the file is damaged or not a capture");
            }
            bail!(
                "{at}: the last line has no newline: the file was cut off after byte {}",
                self.input.pos
            );
        }
        let text = std::str::from_utf8(&self.buf[..n - 1]).map_err(|e| {
            anyhow!(
                "{at}: not UTF-8 text (bad byte at {}): the file is damaged or not a capture",
                start + e.valid_up_to() as u64
            )
        })?;
        let entry: Entry = serde_json::from_str(text).map_err(|e| {
            anyhow!(
                "{at}: expected a record, lost, counts or end entry (a JSON object with \
                 \"type\"): {e}"
            )
        })?;
        match entry {
            Entry::End { records } => {
                self.end(records, &at)?;
                Ok(None)
            }
            Entry::Record { ref record, .. } => {
                if !pfnwatch_common::pgtable::PAGE_SHIFTS.contains(&record.page_shift) {
                    bail!(
                        "{at}: page_shift {}: pages of 4, 16 or 64 KiB (12, 14 or 16) are \
                         the ones pfnwatch knows",
                        record.page_shift
                    );
                }
                self.records += 1;
                Ok(Some(entry))
            }
            Entry::Lost { .. } | Entry::Counts { .. } => Ok(Some(entry)),
        }
    }

    /// The end entry's count must be the file's, and nothing may follow.
    fn end(&mut self, want: u64, at: &str) -> Result<()> {
        if want != self.records {
            bail!(
                "{at}: the end entry counts {want} records, the file holds {}",
                self.records
            );
        }
        let pos = self.input.pos;
        let end = self
            .input
            .at_end()
            .map_err(|e| input_error(&self.input, &e, pos))?;
        if !end {
            bail!("byte {pos}: data after the end entry");
        }
        Ok(())
    }

    fn next_frame(&mut self) -> Result<Option<Entry>> {
        loop {
            let start = self.input.pos;
            // Formatted only for an error: this runs for every entry.
            let records = self.records;
            let at = || format!("byte {start} (after record {records})");
            let mut head = [0u8; frame::HEAD];
            let got = self
                .input
                .fill(&mut head)
                .map_err(|e| input_error(&self.input, &e, start))?;
            if got == 0 {
                bail!(
                    "the capture stops at byte {start}, after record {}, without its end \
                     entry: it was cut off (pfnwatch record was killed, or the copy is \
                     incomplete)",
                    self.records
                );
            }
            let cut = |pos: u64| {
                anyhow!(
                    "the capture is cut off at byte {pos}, inside the entry that starts at {}: \
                     pfnwatch record was killed mid-write, or the copy is incomplete",
                    at()
                )
            };
            if got < frame::HEAD {
                return Err(cut(self.input.pos));
            }
            let [l0, l1, l2, l3, c0, c1, c2, c3] = head;
            let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
            let crc = u32::from_le_bytes([c0, c1, c2, c3]);
            if len > frame::MAX_BODY {
                bail!(
                    "the entry at {} is damaged: it says it is {len} bytes long, more than \
                     an entry can be ({} bytes)",
                    at(),
                    frame::MAX_BODY
                );
            }
            self.buf.resize(len, 0);
            let got = self
                .input
                .fill(&mut self.buf)
                .map_err(|e| input_error(&self.input, &e, start))?;
            if got < len {
                return Err(cut(self.input.pos));
            }
            if crc32fast::hash(&self.buf) != crc {
                bail!(
                    "the entry at {} is damaged: its checksum does not match its data",
                    at()
                );
            }
            let Body::Frames(tables) = &mut self.body else {
                bail!("frames in a capture of version 1 lines");
            };
            let frame: Frame = postcard::from_bytes(&self.buf).map_err(|e| {
                anyhow!(
                    "the entry at {} is damaged or of a newer pfnwatch: {e}",
                    at()
                )
            })?;
            let entry = match frame {
                Frame::String(text) => {
                    tables
                        .string(text)
                        .map_err(|e| anyhow!("the entry at {}: {e}", at()))?;
                    continue;
                }
                Frame::Path(ids) => {
                    tables
                        .path(ids)
                        .map_err(|e| anyhow!("the entry at {}: {e}", at()))?;
                    continue;
                }
                Frame::Reset => {
                    **tables = Tables::default();
                    continue;
                }
                Frame::Record(wire) => {
                    let (mut record, host) = tables
                        .record(&wire, self.spare.take())
                        .map_err(|e| anyhow!("the record at {}: {e}", at()))?;
                    // Frames leave it out: one host, one page size.
                    record.page_shift = self.header.page_shift;
                    self.records += 1;
                    Entry::Record {
                        record: Box::new(record),
                        host,
                    }
                }
                Frame::Lost { lost, total } => Entry::Lost { lost, total },
                Frame::Counts(json) => Entry::Counts {
                    counts: serde_json::from_str(json)
                        .map_err(|e| anyhow!("the counters at {}: {e}", at()))?,
                },
                Frame::End { records } => {
                    self.end(records, &at())?;
                    return Ok(None);
                }
            };
            return Ok(Some(entry));
        }
    }
}

/// `dst` = `src`, in `dst`'s buffer.
fn set(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

impl Iterator for Reader<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        self.next_entry().transpose()
    }
}

/// A read error: the decompressor's, naming the byte of the compressed
/// file, or the system's.
#[derive(Debug)]
struct InputError(String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

fn input_error(input: &Input, e: &io::Error, start: u64) -> anyhow::Error {
    anyhow::Error::new(InputError(match input.compressed_pos() {
        Some(c) => format!(
            "the file is gzip-compressed, and the compressed data is damaged or cut off: found \
             at byte {c} of the file ({} bytes decompressed before it; the entry there starts \
             at byte {start}): {e}",
            input.pos
        ),
        None => format!("reading at byte {start}: {e}"),
    }))
}

fn header(line: &[u8]) -> Result<Header> {
    let foreign = || {
        format!(
            "line 1 (byte 0): not a pfnwatch capture: expected a JSON header with \"format\": \
             \"{FORMAT}\""
        )
    };
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| anyhow!("{} ({e})", foreign()))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        bail!("{}", foreign());
    }
    // The version first: a newer header may lack fields this one needs.
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if READS.iter().any(|r| u64::from(*r) == v) => {}
        Some(v) => bail!(
            "line 1 (byte 0): capture format version {v}; this pfnwatch reads versions \
             {VERSION_JSON_LINES} and {VERSION} (replay it with the pfnwatch release that \
             recorded it, or a newer one)"
        ),
        None => bail!("line 1 (byte 0): the header has no format version"),
    }
    let header: Header = serde_json::from_value(value)
        .map_err(|e| anyhow!("line 1 (byte 0): bad capture header: {e}"))?;
    if !pfnwatch_common::pgtable::PAGE_SHIFTS.contains(&header.page_shift) {
        bail!(
            "line 1 (byte 0): page_shift {} in the header: pages of 4, 16 or 64 KiB              (12, 14 or 16) are the ones pfnwatch knows",
            header.page_shift
        );
    }
    Ok(header)
}

impl Tables {
    fn string(&mut self, text: &str) -> Result<(), String> {
        if self.strings.len() >= Limits::STRINGS
            || self.string_bytes + text.len() > Limits::STRING_BYTES
            || text.len() > Limits::STRING_LEN
        {
            return Err(format!(
                "the string table is full ({} strings, {} bytes; no writer sends more than {} \
                 and {} without a reset): damaged",
                self.strings.len(),
                self.string_bytes,
                Limits::STRINGS,
                Limits::STRING_BYTES
            ));
        }
        self.string_bytes += text.len();
        self.strings.push(text.into());
        self.hooks.push(None);
        self.classes.push(None);
        Ok(())
    }

    fn path(&mut self, ids: Vec<u32>) -> Result<(), String> {
        let frames = ids
            .iter()
            .map(|id| self.text(*id).map(str::to_owned))
            .collect::<Result<Arc<[String]>, String>>()
            .map_err(|e| format!("a call path names {e}"))?;
        let bytes = frames.iter().map(String::len).sum::<usize>();
        if self.paths.len() >= Limits::PATHS
            || ids.len() > Limits::PATH_LEN
            || self.path_frames + ids.len() > Limits::PATH_FRAMES
            || self.path_bytes + bytes > Limits::PATH_BYTES
        {
            return Err(format!(
                "the call path table is full ({} paths of {} frames, {} bytes): damaged",
                self.paths.len(),
                self.path_frames,
                self.path_bytes
            ));
        }
        self.path_frames += ids.len();
        self.path_bytes += bytes;
        self.paths.push(frames);
        Ok(())
    }

    fn text(&self, id: u32) -> Result<&str, String> {
        self.strings
            .get(id as usize)
            .map(|s| &**s)
            .ok_or_else(|| format!("string {id} is never defined"))
    }

    fn hook(&mut self, id: u32) -> Result<Hook, String> {
        if let Some(Some(hook)) = self.hooks.get(id as usize) {
            return Ok(*hook);
        }
        let name = self.text(id)?;
        let hook = Hook::from_function(name).ok_or_else(|| format!("unknown hook {name:?}"))?;
        self.hooks[id as usize] = Some(hook);
        Ok(hook)
    }

    fn class(&mut self, id: u32) -> Result<Class, String> {
        if let Some(Some(class)) = self.classes.get(id as usize) {
            return Ok(*class);
        }
        let class = Class::parse(self.text(id)?)?;
        self.classes[id as usize] = Some(class);
        Ok(class)
    }

    /// The record `w` stands for, in `spare`'s buffers: its strings are
    /// copied into the ones a record replayed before held, not allocated.
    fn record(
        &mut self,
        w: &WireRecord,
        spare: Option<(Record, Enrichment)>,
    ) -> Result<(Record, Enrichment), String> {
        let (mut r, mut host) = spare.unwrap_or_else(|| {
            (
                Record::new(Hook::RemapPfnRange, Class(0)),
                Enrichment::default(),
            )
        });
        r.file = match (&w.file, r.file.take()) {
            (None, _) => None,
            (Some(f), old) => {
                let mut file = old.unwrap_or_else(|| MappedFile {
                    name: String::new(),
                    parent: String::new(),
                    ino: 0,
                    rdev: DevNum { major: 0, minor: 0 },
                    sdev: DevNum { major: 0, minor: 0 },
                    module: None,
                    mmap_fn: 0,
                });
                set(&mut file.name, self.text(f.name)?);
                set(&mut file.parent, self.text(f.parent)?);
                file.ino = f.ino;
                file.rdev = DevNum {
                    major: f.rdev.0,
                    minor: f.rdev.1,
                };
                file.sdev = DevNum {
                    major: f.sdev.0,
                    minor: f.sdev.1,
                };
                self.set_some(&mut file.module, f.module)?;
                file.mmap_fn = 0;
                Some(file)
            }
        };
        r.ts_ns = w.ts_ns;
        r.hook = self.hook(w.hook)?;
        r.class = self.class(w.class)?;
        r.pid = w.pid;
        r.tgid = w.tgid;
        set(&mut r.comm, self.text(w.comm)?);
        r.cgroup_id = w.cgroup_id;
        r.vm_flags = w.vm_flags;
        r.vm_start = w.vm_start;
        r.vm_end = w.vm_end;
        r.vm_pgoff = w.vm_pgoff;
        r.pgoff_before = w.pgoff_before;
        r.addr = w.addr;
        r.pfn = w.pfn;
        r.size = w.size;
        r.entry = w.entry;
        r.ret = w.ret;
        r.level = Level::from_raw(u32::from(w.level))
            .ok_or_else(|| format!("unknown page-table level {} (0 pte, 1 pmd, 2 pud)", w.level))?;
        r.fault_fn = 0;
        r.vma_id = w.vma_id;
        r.at_entry = w.flags & AT_ENTRY != 0;
        r.zero_page = w.flags & ZERO_PAGE != 0;
        r.fork = w.flags & FORK != 0;
        r.existing = w.flags & EXISTING != 0;
        r.free_unseen = w.flags & FREE_UNSEEN != 0;
        r.stack.clear();
        host.stack = match w.call_path {
            None => Arc::default(),
            Some(id) => Arc::clone(
                self.paths
                    .get(id as usize)
                    .ok_or_else(|| format!("call path {id} is never defined"))?,
            ),
        };
        self.set_some(&mut host.cgroup, w.cgroup)?;
        self.set_some(&mut host.container, w.container)?;
        self.set_some(&mut host.driver, w.driver)?;
        self.set_some(&mut host.handlers, w.handlers)?;
        Ok((r, host))
    }

    fn set_some(&self, dst: &mut Option<String>, id: Option<u32>) -> Result<(), String> {
        match (dst.as_mut(), id) {
            (_, None) => *dst = None,
            (Some(d), Some(id)) => set(d, self.text(id)?),
            (None, Some(id)) => *dst = Some(self.text(id)?.to_owned()),
        }
        Ok(())
    }
}
