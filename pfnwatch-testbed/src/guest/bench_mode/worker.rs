//! The process the workloads run in. PID 1 forks it before it loads
//! anything: later PID 1 holds the kernel's parsed BTF (tens of MiB), and
//! every fork of PID 1 would copy those ptes too. The worker holds the
//! workloads' memory and little else, and does what PID 1 asks over a pipe,
//! one line each way:
//!
//! `prepare anon|pfnmap` -> `ok <ptes>`, `forks <n>` -> `ok <ns> ...`,
//! `finish anon|pfnmap` -> `ok`, `quit`; any failure -> `err <why>`.

use super::workload::{self, Anon, Kind};
use crate::sys::Map;
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};

pub struct Worker {
    pid: libc::pid_t,
    /// The anonymous memory's pte count.
    pub anon_pages: usize,
    to: File,
    from: BufReader<File>,
}

impl Worker {
    /// Forks the worker. Call it while PID 1 has one thread: the child
    /// runs Rust code (allocates) after the fork.
    pub fn spawn() -> Result<Worker> {
        let (cmd_read, cmd_write) = pipe()?;
        let (reply_read, reply_write) = pipe()?;
        // SAFETY: single-threaded here (see above), so the child may run Rust code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            drop(cmd_write);
            drop(reply_read);
            serve(File::from(cmd_read), File::from(reply_write));
        }
        drop(cmd_read);
        drop(reply_write);
        let mut worker = Worker {
            pid,
            anon_pages: 0,
            to: File::from(cmd_write),
            from: BufReader::new(File::from(reply_read)),
        };
        // The first reply says the anonymous memory is written.
        let pages = worker.reply().context("the bench worker did not start")?;
        worker.anon_pages = pages.parse().with_context(|| format!("pages {pages:?}"))?;
        Ok(worker)
    }

    fn ask(&mut self, command: &str) -> Result<String> {
        writeln!(self.to, "{command}").context("writing to the bench worker")?;
        self.reply()
            .with_context(|| format!("bench worker: {command}"))
    }

    fn reply(&mut self) -> Result<String> {
        let mut line = String::new();
        if self
            .from
            .read_line(&mut line)
            .context("reading the bench worker")?
            == 0
        {
            bail!("the bench worker exited");
        }
        let line = line.trim_end();
        match line.split_once(' ').unwrap_or((line, "")) {
            ("ok", rest) => Ok(rest.to_owned()),
            ("err", why) => bail!("{why}"),
            _ => bail!("the bench worker said {line:?}"),
        }
    }

    /// Makes `kind` the memory the next forks copy; its pte count.
    pub fn prepare(&mut self, kind: Kind) -> Result<usize> {
        let pages = self.ask(&format!("prepare {}", kind.name()))?;
        pages.parse().with_context(|| format!("pages {pages:?}"))
    }

    /// `n` fork+exit cycles; each one's wall time in ns.
    pub fn forks(&mut self, n: u32) -> Result<Vec<u64>> {
        let text = self.ask(&format!("forks {n}"))?;
        text.split_whitespace()
            .map(|v| v.parse().with_context(|| format!("fork time {v:?}")))
            .collect()
    }

    pub fn finish(&mut self, kind: Kind) -> Result<()> {
        self.ask(&format!("finish {}", kind.name())).map(drop)
    }

    pub fn stop(mut self) -> Result<()> {
        writeln!(self.to, "quit").context("writing to the bench worker")?;
        let mut status = 0;
        // SAFETY: waiting for our own child.
        if unsafe { libc::waitpid(self.pid, &mut status, 0) } != self.pid {
            return Err(std::io::Error::last_os_error()).context("waitpid bench worker");
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!("the bench worker failed (status {status:#x})");
        }
        Ok(())
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe2");
    }
    // SAFETY: both were just returned by pipe2 and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Back to the plain state: no BAR mapped, the anonymous memory copied by forks.
fn reset(anon: &Anon, bar: &mut Option<Map>) -> Result<()> {
    if let Some(map) = bar.take() {
        map.unmap()?;
    }
    anon.copied_by_fork(true)
}

/// The worker's side; never returns.
fn serve(commands: File, mut reply: File) -> ! {
    let served = (|| -> Result<()> {
        let anon = Anon::new()?;
        writeln!(reply, "ok {}", anon.pages())?;
        let mut bar: Option<Map> = None;
        for line in BufReader::new(commands).lines() {
            let line = line?;
            let words: Vec<&str> = line.split_whitespace().collect();
            let answer = match words.as_slice() {
                ["quit"] => return Ok(()),
                // Each prepare starts from the plain state, so one that
                // failed half-way leaves nothing mapped for the next.
                ["prepare", "anon-fork"] => {
                    reset(&anon, &mut bar).map(|()| anon.pages().to_string())
                }
                ["prepare", "pfnmap-fork"] => reset(&anon, &mut bar)
                    // Only the BAR's ptes: the anonymous memory stays out.
                    .and_then(|()| anon.copied_by_fork(false))
                    .and_then(|()| workload::map_bar())
                    .map(|map| {
                        let pages = map.pages().to_string();
                        bar = Some(map);
                        pages
                    }),
                ["forks", n] => n
                    .parse()
                    .context("fork count")
                    .and_then(workload::fork_exit)
                    .map(|ns| ns.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")),
                ["finish", "anon-fork" | "pfnmap-fork"] => {
                    reset(&anon, &mut bar).map(|()| String::new())
                }
                _ => Err(anyhow::anyhow!("unknown command {line:?}")),
            };
            match answer {
                Ok(text) => writeln!(reply, "ok {text}")?,
                Err(e) => writeln!(reply, "err {e:#}")?,
            }
        }
        Ok(())
    })();
    if let Err(e) = &served {
        let _ = writeln!(reply, "err {e:#}");
    }
    // SAFETY: leave without running PID 1's destructors.
    unsafe { libc::_exit(i32::from(served.is_err())) }
}
