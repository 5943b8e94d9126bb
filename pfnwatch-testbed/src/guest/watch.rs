//! A `pfnwatch trace --all --format json` child, read line by line, with
//! SIGUSR1 snapshots that close a window of records.

use crate::judge::Window;
use anyhow::{Context, Result, bail};
use pfnwatch::kernel::counters::Counts;
use pfnwatch::views::line::Line;
use std::io::{BufRead, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Reads `pipe` line by line on a thread, so the caller can wait with a timeout.
pub fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub struct Watch {
    child: Child,
    lines: Receiver<String>,
    last: Counts,
}

impl Watch {
    /// Starts pfnwatch and waits for its ready line.
    pub fn start(args: &[&str], timeout: Duration) -> Result<(Watch, Line)> {
        let mut child = Command::new("/bin/pfnwatch")
            .args(args)
            .args(super::lookups::always_unless_given(args))
            .stdout(Stdio::piped())
            .spawn()
            .context("starting /bin/pfnwatch")?;
        let stdout = child.stdout.take().context("pfnwatch stdout")?;
        let mut watch = Watch {
            child,
            lines: lines_of(stdout),
            last: Counts::default(),
        };
        let deadline = Instant::now() + timeout;
        match watch.next_line(deadline)? {
            ready @ Line::Ready { .. } => Ok((watch, ready)),
            other => bail!("pfnwatch printed {other:?} before it was ready"),
        }
    }

    fn next_line(&mut self, deadline: Instant) -> Result<Line> {
        let left = deadline.saturating_duration_since(Instant::now());
        let text = match self.lines.recv_timeout(left) {
            Ok(text) => text,
            Err(RecvTimeoutError::Timeout) => bail!("pfnwatch said nothing for too long"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                bail!("pfnwatch exited ({status:?})");
            }
        };
        serde_json::from_str(&text).with_context(|| format!("pfnwatch printed {text:?}"))
    }

    /// Asks pfnwatch for its counters; everything printed before them is
    /// the window since the previous snapshot.
    pub fn snapshot(&mut self, timeout: Duration) -> Result<Window> {
        self.signal(libc::SIGUSR1)?;
        let deadline = Instant::now() + timeout;
        let mut window = Window::default();
        loop {
            match self.next_line(deadline)? {
                Line::Record {
                    record,
                    rules,
                    view,
                } => {
                    window.records.push(*record);
                    window.rules.push(rules);
                    window.drivers.push(view.host.driver);
                }
                Line::Counts { counts } => {
                    window.counts = counts.since(&self.last);
                    self.last = counts;
                    return Ok(window);
                }
                Line::Ready { .. } => bail!("pfnwatch printed a second ready line"),
                // Alerts and losses are judged elsewhere (the counters
                // check sees drops; trace_checks.rs the alerts).
                Line::Alert { .. } | Line::Lost { .. } => {}
                Line::Summary { .. } => bail!("pfnwatch printed its summary before it stopped"),
            }
        }
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        // SAFETY: signalling our own child.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, sig) } != 0 {
            return Err(std::io::Error::last_os_error()).context("signalling pfnwatch");
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (none: pfnwatch is to stop by itself) and reads every
    /// line up to its exit; the lines and how it exited.
    pub fn collect(
        mut self,
        signal: Option<libc::c_int>,
        timeout: Duration,
    ) -> Result<(ExitStatus, Vec<Line>)> {
        if let Some(sig) = signal {
            self.signal(sig)?;
        }
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(text) => lines.push(
                    serde_json::from_str(&text)
                        .with_context(|| format!("pfnwatch printed {text:?}"))?,
                ),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    bail!(
                        "pfnwatch did not exit within {timeout:?} (it printed {} lines)",
                        lines.len()
                    );
                }
            }
        }
        Ok((self.child.wait()?, lines))
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("pfnwatch did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
