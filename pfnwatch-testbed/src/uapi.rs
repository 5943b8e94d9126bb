//! The kernel interfaces the correct-driver scenarios map through, as real
//! programs use them: perf_event_open(2), io_uring_setup(2), bpf(2)'s ring
//! buffer maps and DRM's dumb-buffer ioctls. Structures are laid out as the
//! uapi headers declare them (only the fields used are named).

use anyhow::{Context, Result, ensure};
use std::os::fd::{FromRawFd, OwnedFd};

fn owned(fd: libc::c_long, what: &str) -> Result<OwnedFd> {
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_owned());
    }
    // SAFETY: the kernel just returned this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `struct perf_event_attr` up to `config1` (PERF_ATTR_SIZE_VER0).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bit 0: disabled.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// A disabled software dummy event on this process, any CPU: what perf
/// tools open for side-band records, and whose ring buffer they mmap.
pub fn perf_dummy_event() -> Result<OwnedFd> {
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_COUNT_SW_DUMMY: u64 = 9;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_DUMMY,
        flags: 1,
        ..PerfEventAttr::default()
    };
    // SAFETY: a valid attr of the size it says; pid 0, cpu -1, no group.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    owned(fd, "perf_event_open(software dummy)")
}

/// `data_tail` in `struct perf_event_mmap_page`: what the reader writes.
pub const PERF_DATA_TAIL: usize = 1032;

/// `struct io_sqring_offsets` / `io_cqring_offsets` (same size and layout
/// for what is read here: `array` and `cqes` are both the seventh and
/// sixth u32).
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct RingOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    /// sq: flags; cq: overflow.
    pub word4: u32,
    /// sq: dropped; cq: cqes.
    pub word5: u32,
    /// sq: array; cq: flags.
    pub word6: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `struct io_uring_params`.
#[repr(C)]
#[derive(Default)]
pub struct IoUringParams {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle: u32,
    pub features: u32,
    pub wq_fd: u32,
    pub resv: [u32; 3],
    pub sq_off: RingOffsets,
    pub cq_off: RingOffsets,
}

pub const IORING_OFF_SQ_RING: u64 = 0;
pub const IORING_OFF_CQ_RING: u64 = 0x800_0000;
pub const IORING_OFF_SQES: u64 = 0x1000_0000;
const SQE_SIZE: u64 = 64;
const CQE_SIZE: u64 = 16;
const SQ_ARRAY_ENTRY: u64 = 4;

/// A ring of `entries` submission entries; the params tell the sizes.
pub fn io_uring(entries: u32) -> Result<(OwnedFd, IoUringParams)> {
    let mut params = IoUringParams::default();
    // SAFETY: params is a valid io_uring_params for the kernel to fill.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            entries,
            &mut params as *mut IoUringParams,
        )
    };
    Ok((owned(fd, "io_uring_setup")?, params))
}

impl IoUringParams {
    /// Bytes to map at each offset, as liburing computes them.
    pub fn sizes(&self) -> [(u64, u64); 3] {
        [
            (
                IORING_OFF_SQ_RING,
                u64::from(self.sq_off.word6) + u64::from(self.sq_entries) * SQ_ARRAY_ENTRY,
            ),
            (
                IORING_OFF_CQ_RING,
                u64::from(self.cq_off.word5) + u64::from(self.cq_entries) * CQE_SIZE,
            ),
            (IORING_OFF_SQES, u64::from(self.sq_entries) * SQE_SIZE),
        ]
    }
}

/// `union bpf_attr` for BPF_MAP_CREATE, up to `map_flags` and padded with
/// zeroes (the kernel checks that what it does not know is zero).
#[repr(C)]
#[derive(Default)]
struct BpfMapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    rest: [u32; 11],
}

/// A BPF ring buffer map of `bytes` (a power of two, a page or more), as
/// any BPF tool's user space reads its events from.
pub fn bpf_ringbuf(bytes: u32) -> Result<OwnedFd> {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_RINGBUF: u32 = 27;
    let attr = BpfMapCreate {
        map_type: BPF_MAP_TYPE_RINGBUF,
        max_entries: bytes,
        ..BpfMapCreate::default()
    };
    // SAFETY: a valid, zero-padded attr of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const BpfMapCreate,
            std::mem::size_of::<BpfMapCreate>() as u32,
        )
    };
    owned(fd, "bpf(BPF_MAP_CREATE, ringbuf)")
}

/// `struct drm_mode_create_dumb`.
#[repr(C)]
#[derive(Default)]
struct CreateDumb {
    height: u32,
    width: u32,
    bpp: u32,
    flags: u32,
    handle: u32,
    pitch: u32,
    size: u64,
}

/// `struct drm_mode_map_dumb`.
#[repr(C)]
#[derive(Default)]
struct MapDumb {
    handle: u32,
    pad: u32,
    offset: u64,
}

// _IOWR('d', 0xB2..0xB4, struct): DRM's dumb-buffer ioctls.
const DRM_IOCTL_MODE_CREATE_DUMB: libc::c_ulong = 0xC020_64B2;
const DRM_IOCTL_MODE_MAP_DUMB: libc::c_ulong = 0xC010_64B3;
const DRM_IOCTL_MODE_DESTROY_DUMB: libc::c_ulong = 0xC004_64B4;

/// A dumb buffer: what a plain KMS client (a boot splash, a simple
/// compositor) draws into.
pub struct DumbBuffer {
    pub handle: u32,
    pub size: u64,
    /// The fake offset to mmap the card at.
    pub offset: u64,
}

fn ioctl<T>(fd: i32, request: libc::c_ulong, arg: &mut T, what: &str) -> Result<()> {
    // SAFETY: arg is the structure this request reads and writes.
    if unsafe { libc::ioctl(fd, request, arg as *mut T) } != 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_owned());
    }
    Ok(())
}

/// Creates an XRGB8888 buffer of `width` x `height` and asks for its offset.
pub fn dumb_buffer(card: i32, width: u32, height: u32) -> Result<DumbBuffer> {
    let mut create = CreateDumb {
        width,
        height,
        bpp: 32,
        ..CreateDumb::default()
    };
    ioctl(
        card,
        DRM_IOCTL_MODE_CREATE_DUMB,
        &mut create,
        "DRM_IOCTL_MODE_CREATE_DUMB",
    )?;
    let mut map = MapDumb {
        handle: create.handle,
        ..MapDumb::default()
    };
    ioctl(
        card,
        DRM_IOCTL_MODE_MAP_DUMB,
        &mut map,
        "DRM_IOCTL_MODE_MAP_DUMB",
    )?;
    ensure!(
        create.pitch >= width * 4,
        "pitch {} for width {width}",
        create.pitch
    );
    Ok(DumbBuffer {
        handle: create.handle,
        size: create.size,
        offset: map.offset,
    })
}

pub fn destroy_dumb(card: i32, handle: u32) -> Result<()> {
    let mut handle = handle;
    ioctl(
        card,
        DRM_IOCTL_MODE_DESTROY_DUMB,
        &mut handle,
        "DRM_IOCTL_MODE_DESTROY_DUMB",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_have_their_uapi_sizes() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 64);
        assert_eq!(std::mem::size_of::<RingOffsets>(), 40);
        assert_eq!(std::mem::size_of::<IoUringParams>(), 120);
        assert_eq!(std::mem::size_of::<CreateDumb>(), 32);
        assert_eq!(std::mem::size_of::<MapDumb>(), 16);
        // The ioctl numbers carry those sizes.
        assert_eq!((DRM_IOCTL_MODE_CREATE_DUMB >> 16) & 0x3fff, 32);
        assert_eq!((DRM_IOCTL_MODE_MAP_DUMB >> 16) & 0x3fff, 16);
        assert_eq!((DRM_IOCTL_MODE_DESTROY_DUMB >> 16) & 0x3fff, 4);
    }
}
