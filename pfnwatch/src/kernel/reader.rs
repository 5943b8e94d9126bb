//! The ring buffers' reader: a thread that only moves records out of the
//! kernel's ring buffers into memory, so a burst waits in a queue while the
//! pipeline formats, instead of filling the rings (a fork of a device
//! mapping sends a record per pte under `trace --all`, far faster than
//! lines can be printed).
//!
//! The queue is bounded ([`Reader::start`]'s `cap`): past it the thread
//! stops reading, the rings fill, and the kernel drops and counts what
//! does not fit, as it always did. So every loss stays in the kernel's drop
//! counters and none happens here.
//!
//! [`Reader::drain`] also reads what is in the rings at that moment itself,
//! so whoever drains (a scrape, the end of a trace) sees every record the
//! kernel committed before, whether the thread got to it or not.

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use std::collections::VecDeque;
use std::io::{PipeReader, PipeWriter, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc;

/// Records read in one go, one after the other, each behind its length.
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
}

impl Batch {
    fn push(&mut self, record: &[u8]) {
        let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_ne_bytes());
        self.bytes.extend_from_slice(record);
    }

    /// The records, in the order read.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_ne_bytes(*len)).ok()?;
            let (record, tail) = tail.split_at_checked(len)?;
            rest = tail;
            Some(record)
        })
    }
}

/// Bytes one batch holds at most before it is handed over: its buffer (at
/// most twice that) stays below the daemon's mmap threshold, so batches
/// reuse heap blocks rather than map and fault in fresh pages each time.
const BATCH_BYTES: usize = 64 << 10;

/// While the queue is full: how often the thread looks again.
const FULL_WAIT: Duration = Duration::from_millis(5);

/// The rings, urgent first. The thread holds the lock while it reads and
/// hands a batch over, so a drain that takes it sees the batches read
/// before in the channel already: records come out in the order read.
type Rings = Arc<Mutex<Vec<RingBuf<MapData>>>>;

pub struct Reader {
    rings: Rings,
    /// Bytes [`Reader::drain`] reads itself at most, per ring.
    direct_limit: usize,
    batches: mpsc::UnboundedReceiver<Batch>,
    /// Batches received by [`Reader::recv`] and not yet handed out.
    pending: VecDeque<Batch>,
    queued: Arc<AtomicUsize>,
    stop: Option<PipeWriter>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    /// Starts the thread on `rings`, read in that order (urgent first), with
    /// at most `cap` bytes waiting in memory.
    pub fn start(rings: Vec<RingBuf<MapData>>, cap: usize) -> Result<Reader> {
        let fds: Vec<i32> = rings.iter().map(|r| r.as_fd().as_raw_fd()).collect();
        let rings: Rings = Arc::new(Mutex::new(rings));
        let (tx, batches) = mpsc::unbounded_channel();
        let (stop_rx, stop) = std::io::pipe().context("a pipe to stop the ring buffer reader")?;
        let queued = Arc::new(AtomicUsize::new(0));
        // A thread is born with its creator's capabilities: wait until it
        // has dropped them, so no moment of the daemon's life has a thread
        // holding more than the main one will (the scheduler may leave a
        // new thread unrun for a while on a busy host).
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("pfnwatch-rings".into())
            .spawn({
                let (rings, queued) = (rings.clone(), queued.clone());
                move || {
                    drop_privileges();
                    let _ = ready.send(());
                    read(&rings, &fds, &stop_rx, &tx, &queued, cap)
                }
            })
            .context("starting the ring buffer reader thread")?;
        started
            .recv()
            .context("the ring buffer reader thread ended as it started")?;
        Ok(Reader {
            rings,
            direct_limit: cap / 4,
            batches,
            pending: VecDeque::new(),
            queued,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Waits for records; an error if the thread is gone.
    pub async fn recv(&mut self) -> Result<()> {
        let batch = self
            .batches
            .recv()
            .await
            .context("the ring buffer reader thread stopped")?;
        self.pending.push_back(batch);
        Ok(())
    }

    /// Hands `f` every record read so far and every one in the rings now,
    /// oldest first; but no more than a ring's worth of those: a flood
    /// cannot keep the caller here.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) {
        {
            let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
            while let Ok(batch) = self.batches.try_recv() {
                self.pending.push_back(batch);
            }
            let batch = read_batch(&mut rings, self.direct_limit);
            if !batch.bytes.is_empty() {
                self.queued.fetch_add(batch.bytes.len(), Ordering::Relaxed);
                self.pending.push_back(batch);
            }
        }
        while let Some(batch) = self.pending.pop_front() {
            batch.records().for_each(&mut f);
            self.queued.fetch_sub(batch.bytes.len(), Ordering::Relaxed);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(mut stop) = self.stop.take() {
            // Wakes the thread's poll; closing the pipe would too.
            let _ = stop.write_all(&[1]);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: poll the rings and the stop pipe, move what is there.
fn read(
    rings: &Mutex<Vec<RingBuf<MapData>>>,
    ring_fds: &[i32],
    stop: &PipeReader,
    tx: &mpsc::UnboundedSender<Batch>,
    queued: &AtomicUsize,
    cap: usize,
) {
    let stop = stop.as_fd().as_raw_fd();
    let mut fds = ring_fds.to_vec();
    fds.push(stop);
    loop {
        if queued.load(Ordering::Relaxed) >= cap {
            // Full: leave the records in the rings until the pipeline
            // catches up; what no longer fits there the kernel counts.
            if wait(&[stop], FULL_WAIT).is_some() {
                return;
            }
            continue;
        }
        if wait(&fds, Duration::MAX) == Some(fds.len() - 1) {
            return;
        }
        while queued.load(Ordering::Relaxed) < cap {
            let mut rings = rings.lock().unwrap_or_else(PoisonError::into_inner);
            let batch = read_batch(&mut rings, BATCH_BYTES);
            if batch.bytes.is_empty() {
                break;
            }
            queued.fetch_add(batch.bytes.len(), Ordering::Relaxed);
            // Under the lock: see `Rings`.
            if tx.send(batch).is_err() {
                return;
            }
        }
    }
}

/// Up to about `limit` bytes of records from each ring, in ring order.
fn read_batch(rings: &mut [RingBuf<MapData>], limit: usize) -> Batch {
    let mut batch = Batch::default();
    for ring in rings {
        let until = batch.bytes.len() + limit;
        while batch.bytes.len() < until
            && let Some(item) = ring.next()
        {
            batch.push(&item);
        }
    }
    batch
}

/// poll(2) on `fds` for input: the index of the first ready one, None on
/// timeout or EINTR. Another error gives the last (the stop pipe's): the
/// thread ends, and the session with it, rather than spin.
fn wait(fds: &[i32], timeout: Duration) -> Option<usize> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(-1);
    let n = polls.len() as libc::nfds_t;
    // SAFETY: `polls` is a live array of `n` pollfds for the duration.
    let ready = unsafe { libc::poll(polls.as_mut_ptr(), n, ms) };
    let last = polls.len().saturating_sub(1);
    if ready < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return None;
        }
        tracing::error!("the ring buffer reader cannot poll: {e}");
        return Some(last);
    }
    if ready == 0 {
        return None;
    }
    // The stop pipe last in `fds` wins over records: check it first.
    if polls.get(last).is_some_and(|p| p.revents != 0) {
        return Some(last);
    }
    polls.iter().position(|p| p.revents != 0)
}

/// The thread reads mapped memory and needs no privilege: none stays with
/// it (capabilities are per thread, and `run` drops the main thread's).
fn drop_privileges() {
    use caps::{CapSet, CapsHashSet};
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        if let Err(e) = caps::set(None, set, &CapsHashSet::new()) {
            tracing::warn!("the ring buffer reader keeps its {set:?} capabilities: {e}");
        }
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        tracing::warn!(
            "the ring buffer reader could not set no_new_privs: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_its_records_in_order() {
        let mut b = Batch::default();
        b.push(b"first");
        b.push(b"");
        b.push(&[7u8; 300]);
        let got: Vec<&[u8]> = b.records().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], b"first");
        assert!(got[1].is_empty());
        assert_eq!(got[2], &[7u8; 300][..]);
    }

    #[test]
    fn a_torn_batch_stops_at_the_tear() {
        let mut b = Batch::default();
        b.push(b"whole");
        b.push(b"cut short");
        b.bytes.truncate(b.bytes.len() - 3);
        let got: Vec<&[u8]> = b.records().collect();
        assert_eq!(got, [&b"whole"[..]]);
    }
}
