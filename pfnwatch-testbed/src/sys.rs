//! Thin, checked wrappers over the syscalls the scenarios use.

use anyhow::{Context, Result, bail};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

pub const PAGE: usize = 4096;

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn open_rw(path: &str, extra: libc::c_int) -> Result<OwnedFd> {
    let c = CString::new(path)?;
    // SAFETY: c is a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC | extra) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("open {path}"));
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The errno behind an error from these wrappers, if there is one.
pub fn errno_of(err: &anyhow::Error) -> Option<i32> {
    err.downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::raw_os_error)
}

/// A mapping that is unmapped on drop (or explicitly, to time the munmap).
pub struct Map {
    pub addr: *mut u8,
    pub len: usize,
}

impl Map {
    pub fn file(fd: &OwnedFd, offset: u64, pages: usize, private: bool) -> Result<Map> {
        let flags = if private {
            libc::MAP_PRIVATE
        } else {
            libc::MAP_SHARED
        };
        Map::new(Some(fd.as_raw_fd()), offset, pages, flags)
    }

    /// `len` bytes of `fd` at `offset` with these protections and flags,
    /// for mappings that are not PAGES of read-write memory.
    pub fn with(
        fd: &OwnedFd,
        offset: u64,
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
    ) -> Result<Map> {
        Map::mmap(None, len, prot, flags, Some(fd.as_raw_fd()), offset)
            .with_context(|| format!("mmap {len:#x} bytes at offset {offset:#x}"))
    }

    pub fn anon(pages: usize) -> Result<Map> {
        Map::new(None, 0, pages, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
    }

    /// A shared mapping of `fd` at an address that is a multiple of `align`
    /// bytes (a power of two), for drivers that map huge entries: file
    /// mappings get pmd alignment at most from the kernel.
    pub fn file_aligned(fd: &OwnedFd, offset: u64, pages: usize, align: usize) -> Result<Map> {
        // Reserve room to slide in, place the mapping over it, and give the
        // rest of the reservation back.
        let len = pages * PAGE;
        let room = Map::reserve(len + align)?;
        let start = (room.start() as usize).next_multiple_of(align);
        let map = Map::place(Some(fd.as_raw_fd()), offset, len, libc::MAP_SHARED, start)?;
        let (room_start, room_end) = (room.start() as usize, room.end() as usize);
        std::mem::forget(room);
        for (from, to) in [(room_start, start), (start + len, room_end)] {
            // SAFETY: unmapping parts of our own reservation, outside `map`.
            if to > from && unsafe { libc::munmap(from as *mut libc::c_void, to - from) } != 0 {
                return Err(std::io::Error::last_os_error()).context("munmap of the reservation");
            }
        }
        Ok(map)
    }

    /// Address space only: PROT_NONE, never populated.
    fn reserve(len: usize) -> Result<Map> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        Map::mmap(None, len, libc::PROT_NONE, flags, None, 0)
            .with_context(|| format!("reserving {len:#x} bytes of address space"))
    }

    /// MAP_FIXED at `at`, which must lie in address space we reserved.
    fn place(
        fd: Option<i32>,
        offset: u64,
        len: usize,
        flags: libc::c_int,
        at: usize,
    ) -> Result<Map> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        Map::mmap(Some(at), len, prot, flags | libc::MAP_FIXED, fd, offset)
            .with_context(|| format!("mmap {len:#x} bytes at {at:#x}"))
    }

    fn new(fd: Option<i32>, offset: u64, pages: usize, flags: libc::c_int) -> Result<Map> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        Map::mmap(None, pages * PAGE, prot, flags, fd, offset)
            .with_context(|| format!("mmap {pages} pages at offset {offset:#x}"))
    }

    fn mmap(
        at: Option<usize>,
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
        fd: Option<i32>,
        offset: u64,
    ) -> std::io::Result<Map> {
        // SAFETY: a kernel-chosen address, or (MAP_FIXED) one inside our own
        // reservation: nothing else of ours is replaced.
        let addr = unsafe {
            libc::mmap(
                at.unwrap_or(0) as *mut libc::c_void,
                len,
                prot,
                flags,
                fd.unwrap_or(-1),
                offset as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Map {
            addr: addr.cast(),
            len,
        })
    }

    pub fn start(&self) -> u64 {
        self.addr as u64
    }

    pub fn end(&self) -> u64 {
        self.addr as u64 + self.len as u64
    }

    pub fn pages(&self) -> usize {
        self.len / PAGE
    }

    pub fn page(&self, index: usize) -> *mut u8 {
        // SAFETY: callers pass index < pages(); stays inside the mapping.
        unsafe { self.addr.add(index * PAGE) }
    }

    /// Reads one byte of every page.
    pub fn touch_all(&self) -> u64 {
        (0..self.pages())
            // SAFETY: each address is inside the mapping and readable.
            .map(|i| u64::from(unsafe { std::ptr::read_volatile(self.page(i)) }))
            .sum()
    }

    /// Reads one byte of page `index`.
    pub fn touch(&self, index: usize) -> u8 {
        assert!(index < self.pages(), "page {index} outside the mapping");
        // SAFETY: inside the mapping (checked above), readable.
        unsafe { std::ptr::read_volatile(self.page(index)) }
    }

    pub fn write(&self, index: usize) {
        // SAFETY: inside the mapping, mapped writable.
        unsafe {
            let p = self.page(index);
            std::ptr::write_volatile(p, std::ptr::read_volatile(p));
        }
    }

    /// Reads the u64 at `offset` bytes into the mapping.
    pub fn read_u64(&self, offset: usize) -> u64 {
        assert!(
            offset + 8 <= self.len,
            "offset {offset:#x} outside the mapping"
        );
        // SAFETY: inside the mapping (checked above), readable; callers
        // pass 8-byte aligned offsets.
        unsafe { std::ptr::read_volatile(self.addr.add(offset).cast::<u64>()) }
    }

    /// Writes the u64 at `offset` bytes into the mapping.
    pub fn write_u64(&self, offset: usize, value: u64) {
        assert!(
            offset + 8 <= self.len,
            "offset {offset:#x} outside the mapping"
        );
        // SAFETY: inside the mapping (checked above), mapped writable.
        unsafe { std::ptr::write_volatile(self.addr.add(offset).cast::<u64>(), value) }
    }

    /// Reads the u32 at `offset` bytes into the mapping (MMIO registers
    /// that take only 4-byte accesses).
    pub fn read_u32(&self, offset: usize) -> u32 {
        assert!(
            offset + 4 <= self.len,
            "offset {offset:#x} outside the mapping"
        );
        // SAFETY: inside the mapping (checked above), readable, aligned.
        unsafe { std::ptr::read_volatile(self.addr.add(offset).cast::<u32>()) }
    }

    /// A copy of the whole mapping, read byte by byte.
    pub fn bytes(&self) -> Vec<u8> {
        (0..self.len)
            // SAFETY: each address is inside the mapping and readable.
            .map(|i| unsafe { std::ptr::read_volatile(self.addr.add(i)) })
            .collect()
    }

    pub fn protect(&self, prot: libc::c_int) -> Result<()> {
        // SAFETY: exactly our own mapping.
        if unsafe { libc::mprotect(self.addr.cast(), self.len, prot) } != 0 {
            return Err(std::io::Error::last_os_error()).context("mprotect");
        }
        Ok(())
    }

    pub fn unmap(mut self) -> Result<()> {
        let (addr, len) = (self.addr, self.len);
        self.len = 0;
        // SAFETY: unmapping exactly what mmap returned.
        if unsafe { libc::munmap(addr.cast(), len) } != 0 {
            return Err(std::io::Error::last_os_error()).context("munmap");
        }
        Ok(())
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly what mmap returned.
            unsafe { libc::munmap(self.addr.cast(), self.len) };
        }
    }
}

/// pread(2) of `len` bytes at `offset`; what it returned.
pub fn pread(fd: &OwnedFd, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    // SAFETY: buf has len writable bytes.
    let n = unsafe {
        libc::pread(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            len,
            offset as libc::off_t,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error()).context("pread");
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// statx(2)'s `stx_attributes` of `path`.
pub fn statx_attributes(path: &str) -> Result<u64> {
    let c = CString::new(path)?;
    // SAFETY: statx is plain data; zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a statx to fill.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("statx {path}"));
    }
    Ok(stx.stx_attributes)
}

/// Forks a child that runs `child` and exits; waits for it. Returns its pid.
pub fn fork_and_wait(child: impl FnOnce()) -> Result<u32> {
    // SAFETY: the trigger is single-threaded, so the child may run Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        child();
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(std::io::Error::last_os_error()).context("waitpid");
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("child {pid} failed (status {status:#x})");
    }
    Ok(pid as u32)
}

/// move_pages(2) on every page of `map`; `node` None asks for status only.
pub fn move_pages(map: &Map, node: Option<i32>) -> Result<Vec<i32>> {
    let pages: Vec<*mut u8> = (0..map.pages()).map(|i| map.page(i)).collect();
    move_pages_at(&pages, node)
}

/// move_pages(2) on our own process at these addresses.
pub fn move_pages_at(addrs: &[*mut u8], node: Option<i32>) -> Result<Vec<i32>> {
    let pages: Vec<*mut libc::c_void> = addrs.iter().map(|a| a.cast()).collect();
    let nodes = vec![node.unwrap_or(0); pages.len()];
    let mut status = vec![i32::MIN; pages.len()];
    let nodes_ptr = if node.is_some() {
        nodes.as_ptr()
    } else {
        std::ptr::null()
    };
    const MPOL_MF_MOVE: libc::c_long = 1 << 1;
    // SAFETY: arrays of pages.len() entries, pid 0 = this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0,
            pages.len() as libc::c_ulong,
            pages.as_ptr(),
            nodes_ptr,
            status.as_mut_ptr(),
            if node.is_some() { MPOL_MF_MOVE } else { 0 },
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("move_pages");
    }
    Ok(status)
}

/// The address ranges of this process's vmas named `name` in /proc/self/maps.
pub fn named_vmas(name: &str) -> Result<Vec<(u64, u64)>> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("reading /proc/self/maps")?;
    maps.lines()
        .filter(|l| l.split_whitespace().nth(5) == Some(name))
        .map(|l| {
            let range = l.split_whitespace().next().unwrap_or_default();
            let (a, b) = range.split_once('-').context("bad maps line")?;
            Ok((u64::from_str_radix(a, 16)?, u64::from_str_radix(b, 16)?))
        })
        .collect()
}
