//! Version 2's body: after the JSON header line, one frame per entry.
//!
//! A frame is its body's length (u32, little-endian), the body's CRC-32
//! (u32, little-endian), then the body: a [`Frame`] in postcard's encoding
//! (varints; the variant's index first, so variants are only ever added at
//! the end). The length lets a reader tell a frame cut off mid-write from a
//! whole one; the CRC tells damage from data.
//!
//! Strings (hook and class names, comms, file names, cgroups, drivers,
//! call-path symbols) are sent once, as [`Frame::String`], and records name
//! them by index; call paths likewise by [`Frame::Path`]. Names, not the
//! kernel ABI's ids, so a capture survives a renumbering of hooks, as
//! version 1's JSON did. The tables are bounded ([`Limits`]): a writer whose
//! table is full sends [`Frame::Reset`] and starts over, so a reader never
//! holds more than the limits whatever the capture's length.

use serde::{Deserialize, Serialize};

/// Length and CRC before each body.
pub const HEAD: usize = 8;
/// A longer body is damage (a record is about 100 bytes): refused before
/// anything is allocated for it.
pub const MAX_BODY: usize = 1 << 20;

/// What a reader's tables may hold; a writer resets its tables before a
/// record could take them past these.
pub struct Limits;

impl Limits {
    pub const STRINGS: usize = 1 << 16;
    pub const STRING_BYTES: usize = 8 << 20;
    /// One string's bytes: longer ones are cut by the writer (a cgroup path
    /// is at most PATH_MAX, a symbol a few hundred bytes).
    pub const STRING_LEN: usize = 64 << 10;
    pub const PATHS: usize = 1 << 14;
    /// Frames of every call path held, together, and their bytes: a reader
    /// holds each path's symbols with it, ready to hand out.
    pub const PATH_FRAMES: usize = 1 << 18;
    pub const PATH_BYTES: usize = 16 << 20;
    /// Frames of one call path.
    pub const PATH_LEN: usize = 256;
}

// A record inline, not boxed: decoded once per frame on the stack, where a
// box would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame<'a> {
    /// Defines the next string index (0, 1, ... since the start or the
    /// last reset).
    String(&'a str),
    /// Defines the next call path index: its symbols' string indexes,
    /// innermost first.
    Path(Vec<u32>),
    Record(WireRecord),
    Lost {
        lost: u64,
        total: u64,
    },
    /// The kernel's counters, as the JSON object of version 1 and trace
    /// --json: rare, and their own schema.
    Counts(&'a str),
    End {
        records: u64,
    },
    /// Every string and path index is forgotten.
    Reset,
}

/// [`crate::kernel::decode::Record`] with its host context, strings by
/// index. No kernel addresses: captures carry symbols (the host context).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRecord {
    pub ts_ns: u64,
    /// The hooked function's name.
    pub hook: u32,
    /// The class as Display writes it ("pfnmap+cow").
    pub class: u32,
    pub pid: u32,
    pub tgid: u32,
    pub comm: u32,
    pub cgroup_id: u64,
    pub vm_flags: u64,
    pub vm_start: u64,
    pub vm_end: u64,
    pub vm_pgoff: u64,
    pub pgoff_before: Option<u64>,
    pub addr: u64,
    pub pfn: Option<u64>,
    pub size: u64,
    pub entry: u64,
    pub ret: i64,
    pub level: u8,
    pub file: Option<WireFile>,
    pub vma_id: u64,
    /// [`AT_ENTRY`], [`ZERO_PAGE`], [`FORK`], [`EXISTING`], [`FREE_UNSEEN`].
    pub flags: u8,
    pub cgroup: Option<u32>,
    pub container: Option<u32>,
    pub driver: Option<u32>,
    pub handlers: Option<u32>,
    pub call_path: Option<u32>,
}

pub const AT_ENTRY: u8 = 1;
pub const ZERO_PAGE: u8 = 2;
pub const FORK: u8 = 4;
pub const EXISTING: u8 = 8;
pub const FREE_UNSEEN: u8 = 16;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireFile {
    pub name: u32,
    pub parent: u32,
    pub ino: u64,
    /// major, minor
    pub rdev: (u32, u32),
    pub sdev: (u32, u32),
    pub module: Option<u32>,
}
