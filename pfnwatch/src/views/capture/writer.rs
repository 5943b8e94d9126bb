//! Writes version 2 (frame.rs): the JSON header line, then frames.

use super::frame::{
    self, AT_ENTRY, EXISTING, FORK, FREE_UNSEEN, Frame, Limits, WireFile, WireRecord, ZERO_PAGE,
};
use super::{Entry, Header, MODE};
use crate::enrich::Enrichment;
use crate::kernel::counters::Counts;
use crate::kernel::decode::Record;
use crate::pipeline::{Outcome, Sink};
use anyhow::{Context, Result};
use pfnwatch_common::Class;
// foldhash: a dozen lookups a record; SipHash's strength is not needed
// against names the kernel reports, and foldhash is seeded per process.
use foldhash::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

/// Writes a capture: [`Writer::header`] first, [`Writer::finish`] adds the
/// end entry. Frames are buffered: [`Writer::flush`] after each batch of
/// records (trace does, after each ring-buffer drain), so a recorder killed
/// outright leaves every batch before the last whole, and the missing end
/// entry says the rest was cut.
pub struct Writer<W: Write> {
    /// What errors name: the file's path.
    name: String,
    out: W,
    tables: Tables,
    /// One frame, encoded; reused.
    buf: Vec<u8>,
    records: u64,
}

/// The string and call-path indexes sent since the last reset.
#[derive(Default)]
struct Tables {
    strings: HashMap<Box<str>, u32>,
    string_bytes: usize,
    /// By the symbols themselves: one lookup a record, not one a frame.
    paths: HashMap<Arc<[String]>, u32>,
    path_frames: usize,
    path_bytes: usize,
    /// Class names, so a record's class is not formatted every time.
    classes: HashMap<Class, u32>,
}

impl Writer<BufWriter<File>> {
    /// Creates (or truncates) `path`, before anything is attached: a path
    /// that cannot be written fails at once.
    pub fn create(path: &Path) -> Result<Writer<BufWriter<File>>> {
        // Owner only: a capture holds every process's mappings and call paths.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(MODE)
            .open(path)
            .with_context(|| format!("creating the capture file {}", path.display()))?;
        Ok(Writer::new(
            BufWriter::with_capacity(256 << 10, file),
            path.display().to_string(),
        ))
    }

    /// Like [`Writer::create`], but under a hidden name beside `path`
    /// until [`Staged::commit`]: a `record` that fails to start leaves
    /// `path` as it was (an earlier capture there is not lost) and nothing
    /// else behind.
    pub fn stage(path: &Path) -> Result<(Writer<BufWriter<File>>, Staged)> {
        let name = path
            .file_name()
            .with_context(|| format!("the capture path {} names no file", path.display()))?;
        let mut hidden = std::ffi::OsString::from(".");
        hidden.push(name);
        hidden.push(".partial");
        let tmp = path.with_file_name(hidden);
        let writer = Writer::create(&tmp)
            .with_context(|| format!("creating the capture file {}", path.display()))?;
        let writer = Writer::new(writer.out, path.display().to_string());
        let staged = Staged {
            tmp,
            dest: path.to_owned(),
            committed: false,
        };
        Ok((writer, staged))
    }

    /// The end entry, then the file on disk.
    pub fn finish_file(self) -> Result<()> {
        let name = self.name.clone();
        let out = self.finish()?;
        out.get_ref()
            .sync_all()
            .with_context(|| format!("syncing {name}"))
    }
}

/// A capture file under its hidden name until committed; dropped
/// uncommitted, the file goes.
#[derive(Debug)]
pub struct Staged {
    tmp: std::path::PathBuf,
    dest: std::path::PathBuf,
    committed: bool,
}

impl Staged {
    /// Gives the file its name (replacing a file there).
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.dest).with_context(|| {
            format!("renaming {} to {}", self.tmp.display(), self.dest.display())
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, name: String) -> Writer<W> {
        Writer {
            name,
            out,
            tables: Tables::default(),
            buf: Vec::with_capacity(4096),
            records: 0,
        }
    }

    /// The first line, once the programs are attached; written at once.
    /// Its version is the one this writer writes, whatever `header` says.
    pub fn header(&mut self, header: &Header) -> Result<()> {
        let header = Header {
            version: super::VERSION,
            ..header.clone()
        };
        let json = serde_json::to_string(&header).context("encoding the capture header")?;
        writeln!(self.out, "{json}").with_context(|| format!("writing {}", self.name))?;
        self.flush()
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.name))
    }

    pub fn record(&mut self, record: &Record, host: &Enrichment) -> Result<()> {
        self.make_room(record, host)?;
        let file = match &record.file {
            Some(f) => Some(WireFile {
                name: self.string(&f.name)?,
                parent: self.string(&f.parent)?,
                ino: f.ino,
                rdev: (f.rdev.major, f.rdev.minor),
                sdev: (f.sdev.major, f.sdev.minor),
                module: self.some_string(f.module.as_deref())?,
            }),
            None => None,
        };
        let class = match self.tables.classes.get(&record.class) {
            Some(id) => *id,
            None => {
                let id = self.string(&record.class.to_string())?;
                self.tables.classes.insert(record.class, id);
                id
            }
        };
        let flags = [
            (record.at_entry, AT_ENTRY),
            (record.zero_page, ZERO_PAGE),
            (record.fork, FORK),
            (record.existing, EXISTING),
            (record.free_unseen, FREE_UNSEEN),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |all, (_, bit)| all | bit);
        let wire = WireRecord {
            ts_ns: record.ts_ns,
            hook: self.string(record.hook.function())?,
            class,
            pid: record.pid,
            tgid: record.tgid,
            comm: self.string(&record.comm)?,
            cgroup_id: record.cgroup_id,
            vm_flags: record.vm_flags,
            vm_start: record.vm_start,
            vm_end: record.vm_end,
            vm_pgoff: record.vm_pgoff,
            pgoff_before: record.pgoff_before,
            addr: record.addr,
            pfn: record.pfn,
            size: record.size,
            entry: record.entry,
            ret: record.ret,
            // Level's numbers are 0..=2.
            level: u8::try_from(record.level.raw()).unwrap_or(u8::MAX),
            file,
            vma_id: record.vma_id,
            flags,
            cgroup: self.some_string(host.cgroup.as_deref())?,
            container: self.some_string(host.container.as_deref())?,
            driver: self.some_string(host.driver.as_deref())?,
            handlers: self.some_string(host.handlers.as_deref())?,
            call_path: self.path(&host.stack)?,
        };
        self.records += 1;
        self.frame(&Frame::Record(wire))
    }

    pub fn entry(&mut self, entry: &Entry) -> Result<()> {
        match entry {
            Entry::Record { record, host } => self.record(record, host),
            Entry::Lost { lost, total } => self.frame(&Frame::Lost {
                lost: *lost,
                total: *total,
            }),
            Entry::Counts { counts } => {
                let json = serde_json::to_string(counts).context("encoding counters")?;
                self.frame(&Frame::Counts(&json))
            }
            // The end entry is finish's, with the true count.
            Entry::End { .. } => Ok(()),
        }
    }

    /// The end entry, flushed; the output back.
    pub fn finish(mut self) -> Result<W> {
        self.frame(&Frame::End {
            records: self.records,
        })?;
        self.flush()?;
        Ok(self.out)
    }

    /// Resets the tables when this record's strings could overflow them,
    /// so that no index a record uses is forgotten halfway through it.
    fn make_room(&mut self, r: &Record, host: &Enrichment) -> Result<()> {
        let file = r.file.as_ref();
        let texts = [
            Some(r.comm.as_str()),
            file.map(|f| f.name.as_str()),
            file.map(|f| f.parent.as_str()),
            file.and_then(|f| f.module.as_deref()),
            host.cgroup.as_deref(),
            host.container.as_deref(),
            host.driver.as_deref(),
            host.handlers.as_deref(),
        ];
        // Hook and class names: short, but strings too.
        let count = texts.len() + 2 + host.stack.len();
        let path_bytes = host.stack.iter().map(String::len).sum::<usize>();
        let bytes = texts.iter().flatten().map(|t| t.len()).sum::<usize>() + path_bytes + 256;
        let t = &self.tables;
        if t.strings.len() + count > Limits::STRINGS
            || t.string_bytes + bytes > Limits::STRING_BYTES
            || t.paths.len() + 1 > Limits::PATHS
            || t.path_frames + host.stack.len() > Limits::PATH_FRAMES
            || t.path_bytes + path_bytes > Limits::PATH_BYTES
        {
            self.tables = Tables::default();
            self.frame(&Frame::Reset)?;
        }
        Ok(())
    }

    fn string(&mut self, text: &str) -> Result<u32> {
        let text = cut(text, Limits::STRING_LEN);
        if let Some(id) = self.tables.strings.get(text) {
            return Ok(*id);
        }
        let id = u32::try_from(self.tables.strings.len()).unwrap_or(u32::MAX);
        self.frame(&Frame::String(text))?;
        self.tables.strings.insert(text.into(), id);
        self.tables.string_bytes += text.len();
        Ok(id)
    }

    fn some_string(&mut self, text: Option<&str>) -> Result<Option<u32>> {
        text.map(|t| self.string(t)).transpose()
    }

    fn path(&mut self, stack: &Arc<[String]>) -> Result<Option<u32>> {
        if stack.is_empty() {
            return Ok(None);
        }
        if let Some(id) = self.tables.paths.get(stack) {
            return Ok(Some(*id));
        }
        let frames = &stack[..stack.len().min(Limits::PATH_LEN)];
        let ids = frames
            .iter()
            .map(|s| self.string(s))
            .collect::<Result<Vec<u32>>>()?;
        let id = u32::try_from(self.tables.paths.len()).unwrap_or(u32::MAX);
        self.tables.path_frames += ids.len();
        self.tables.path_bytes += frames
            .iter()
            .map(|s| cut(s, Limits::STRING_LEN).len())
            .sum::<usize>();
        self.frame(&Frame::Path(ids))?;
        self.tables.paths.insert(Arc::clone(stack), id);
        Ok(Some(id))
    }

    fn frame(&mut self, frame: &Frame) -> Result<()> {
        self.buf.clear();
        self.buf.resize(frame::HEAD, 0);
        let buf = std::mem::take(&mut self.buf);
        let mut buf = postcard::to_extend(frame, buf).context("encoding a capture entry")?;
        let body = buf.len() - frame::HEAD;
        let len = u32::try_from(body).unwrap_or(u32::MAX);
        let crc = crc32fast::hash(&buf[frame::HEAD..]);
        buf[..4].copy_from_slice(&len.to_le_bytes());
        buf[4..frame::HEAD].copy_from_slice(&crc.to_le_bytes());
        let written = self
            .out
            .write_all(&buf)
            .with_context(|| format!("writing {}", self.name));
        self.buf = buf;
        written
    }
}

/// `text`'s first `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let end = (0..=max)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    &text[..end]
}

/// A capture holds every record shown, with its host context, and the
/// losses and counter snapshots between them.
impl<W: Write> Sink for Writer<W> {
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
