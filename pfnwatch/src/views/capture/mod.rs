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
pub use writer::{Staged, Writer};

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
    /// log2 of the capture host's page size (records' page offsets).
    /// Captures from before arm64 have none: x86-64's 12.
    #[serde(default = "page_shift_default")]
    pub page_shift: u8,
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

fn page_shift_default() -> u8 {
    pfnwatch_common::pgtable::PAGE_SHIFT_DEFAULT
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
pub(crate) mod tests;
