//! The correct-driver scenarios: pfn mappings that real hosts make every
//! day through drivers and syscalls that follow the kernel's rules. pfnwatch
//! must count them exactly and raise no warning or critical alert.

use crate::devices;
use crate::report::{Mapping, Report};
use crate::scenario::{DEVMEM, DEVMEM_OFFSET, PAGES, WRITTEN, fork_reader, record_map};
use crate::sys::{self, Map, PAGE};
use crate::uapi;
use anyhow::{Context, Result, bail, ensure};
use std::os::fd::AsRawFd;

/// drm-dumb-buffer: the buffer is 1024 x 4 pixels of 4 bytes: four pages.
const DUMB_WIDTH: u32 = 1024;
const DUMB_HEIGHT: u32 = 4;
/// perf-ring: the user page and 2^3 data pages.
pub const PERF_PAGES: usize = 1 + 8;
/// io-uring: entries of the submission queue; every region fits a page.
const URING_ENTRIES: u32 = 8;
/// bpf-ringbuf: one page of data, which the producer mapping shows twice.
const RINGBUF_BYTES: u32 = 4096;

pub fn drm_dumb_buffer(r: &mut Report) -> Result<()> {
    let (card, _) = devices::drm_card()?;
    let path = card.to_string_lossy().into_owned();
    let fd = sys::open_rw(&path, 0)?;
    let dumb = uapi::dumb_buffer(fd.as_raw_fd(), DUMB_WIDTH, DUMB_HEIGHT)?;
    ensure!(
        dumb.size == (PAGES * PAGE) as u64,
        "the dumb buffer is {} bytes, not {PAGES} pages",
        dumb.size
    );
    // Shared and read-only: a private mapping of a writable fd is a COW
    // mapping, which TTM and GEM shmem refuse (EINVAL).
    let map = Map::with(
        &fd,
        dumb.offset,
        PAGES * PAGE,
        libc::PROT_READ,
        libc::MAP_SHARED,
    )?;
    record_map(r, &path, &map, &[]);
    // Page 0 first: on 6.x its fault prefaults the rest of the buffer.
    map.touch_all();
    fork_reader(r, &map)?;
    map.unmap()?;
    uapi::destroy_dumb(fd.as_raw_fd(), dumb.handle)
}

pub fn uio_bar(r: &mut Report) -> Result<()> {
    let (node, size, _) = devices::uio_device()?;
    ensure!(
        size >= (PAGES * PAGE) as u64,
        "edu's map0 is {size:#x} bytes, less than {PAGES} pages"
    );
    let path = node.to_string_lossy().into_owned();
    let fd = sys::open_rw(&path, 0)?;
    // Offset 0: map0, edu's BAR 0.
    let map = Map::file(&fd, 0, PAGES, false)?;
    record_map(r, &path, &map, &[]);
    // edu takes only 4-byte accesses; its register 0 says who it is.
    let id = map.read_u32(0);
    if id != devices::EDU_ID {
        bail!("edu's register 0 reads {id:#x}, not {:#x}", devices::EDU_ID);
    }
    for page in 1..PAGES {
        map.read_u32(page * PAGE);
    }
    // The child only exits: its copy of the ptes is zapped.
    r.children.push(sys::fork_and_wait(|| {})?);
    map.unmap()
}

pub fn perf_ring(r: &mut Report) -> Result<()> {
    let fd = uapi::perf_dummy_event()?;
    let map = Map::with(
        &fd,
        0,
        PERF_PAGES * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
    )?;
    // The vma keeps the event; perf tools close the fd too.
    drop(fd);
    record_map(r, "[perf_event]", &map, &[]);
    map.touch_all();
    // What a reader does after consuming: the user page's data_tail.
    map.write_u64(uapi::PERF_DATA_TAIL, 0);
    // VM_DONTCOPY: the child has no such mapping (touching it would fault).
    r.children.push(sys::fork_and_wait(|| {})?);
    map.unmap()
}

pub fn io_uring(r: &mut Report) -> Result<()> {
    let (fd, params) = uapi::io_uring(URING_ENTRIES)?;
    let mut maps = Vec::new();
    for (offset, bytes) in params.sizes() {
        ensure!(
            bytes as usize <= PAGE,
            "io_uring region at {offset:#x} is {bytes} bytes, more than a page"
        );
        let map = Map::with(
            &fd,
            offset,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )?;
        record_map(r, &format!("io_uring {offset:#x}"), &map, &[]);
        map.touch_all();
        maps.push(map);
    }
    let child = sys::fork_and_wait(|| {
        for map in &maps {
            map.touch_all();
        }
    })?;
    r.children.push(child);
    for map in maps {
        map.unmap()?;
    }
    Ok(())
}

pub fn bpf_ringbuf(r: &mut Report) -> Result<()> {
    let fd = uapi::bpf_ringbuf(RINGBUF_BYTES)?;
    // The consumer position, the one page a reader may write.
    let consumer = Map::with(
        &fd,
        0,
        PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
    )?;
    // The producer position and the data, mapped twice over so records
    // can wrap; read-only (the kernel refuses anything else).
    let pages = 1 + 2 * RINGBUF_BYTES as usize / PAGE;
    let producer = Map::with(
        &fd,
        PAGE as u64,
        pages * PAGE,
        libc::PROT_READ,
        libc::MAP_SHARED,
    )?;
    record_map(r, "bpf-ringbuf consumer", &consumer, &[]);
    record_map(r, "bpf-ringbuf producer", &producer, &[]);
    let produced = producer.read_u64(0);
    consumer.write_u64(0, produced);
    producer.touch_all();
    fork_reader(r, &producer)?;
    producer.unmap()?;
    consumer.unmap()
}

pub fn dax_private(r: &mut Report) -> Result<()> {
    devices::dax_file(PAGES)?;
    let fd = sys::open_rw(devices::DAX_FILE, 0)?;
    let map = Map::file(&fd, 0, PAGES, true)?;
    record_map(r, devices::DAX_FILE, &map, &[WRITTEN]);
    // Each first read faults the file's pmem page in.
    for page in 0..PAGES {
        let mark = map.read_u64(page * PAGE);
        ensure!(
            mark == devices::DAX_MARK | page as u64,
            "page {page} of {} reads {mark:#x}",
            devices::DAX_FILE
        );
    }
    map.write(WRITTEN);
    map.write_u64(WRITTEN * PAGE, 0);
    // A private copy: the file keeps its data.
    let on_file = sys::pread(&fd, (WRITTEN * PAGE) as u64, 8)?;
    ensure!(
        on_file == (devices::DAX_MARK | WRITTEN as u64).to_ne_bytes(),
        "the write to a MAP_PRIVATE page reached the file: {on_file:?}"
    );
    fork_reader(r, &map)?;
    map.unmap()
}

/// vvar-move-pages: the status of every page of the vDSO's data mappings,
/// then an attempt to move them; `move_pages_status` holds both, in turn.
pub fn vvar_move_pages(r: &mut Report) -> Result<()> {
    // The first vDSO clock read faults [vvar]'s time page in.
    if sys::monotonic_ns() == 0 {
        bail!("CLOCK_MONOTONIC read 0");
    }
    let mut pages = Vec::new();
    for name in ["[vvar]", "[vvar_vclock]"] {
        for (start, end) in sys::named_vmas(name)? {
            r.mappings.push(Mapping {
                label: name.to_owned(),
                start,
                end,
                written_pages: Vec::new(),
            });
            pages.extend((start..end).step_by(PAGE).map(|a| a as *mut u8));
        }
    }
    ensure!(!pages.is_empty(), "no [vvar] mapping in /proc/self/maps");
    let mut status = sys::move_pages_at(&pages, None)?;
    status.extend(sys::move_pages_at(&pages, Some(0))?);
    r.move_pages_status = Some(status);
    Ok(())
}

pub fn devmem_protnone(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(DEVMEM, 0)?;
    let map = Map::file(&fd, DEVMEM_OFFSET, PAGES, true)?;
    record_map(r, DEVMEM, &map, &[WRITTEN]);
    map.touch_all();
    map.write(WRITTEN);
    // A guard: the device ptes and the COW copy stay, made PROT_NONE.
    map.protect(libc::PROT_NONE)?;
    map.unmap()
}

pub fn proc_mem(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(DEVMEM, libc::O_SYNC)?;
    let map = Map::file(&fd, DEVMEM_OFFSET, PAGES, false)?;
    record_map(r, DEVMEM, &map, &[]);
    let direct = map.bytes();
    // What a debugger's PEEKDATA or a core dumper reads: GUP refuses the
    // VM_IO|VM_PFNMAP vma, so the kernel asks its vm_ops->access.
    let mem = std::fs::File::open("/proc/self/mem").context("opening /proc/self/mem")?;
    let through = sys::pread(&mem.into(), map.start(), PAGES * PAGE)?;
    ensure!(
        through.len() == PAGES * PAGE,
        "/proc/self/mem gave {} bytes of the mapping, not {}",
        through.len(),
        PAGES * PAGE
    );
    ensure!(
        through == direct,
        "/proc/self/mem and the mapping disagree about the BIOS area"
    );
    map.unmap()
}
