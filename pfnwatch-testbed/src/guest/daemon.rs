//! `pfnwatch run` as a child of the guest, its log read on a thread, and
//! its `/metrics` scraped and parsed: what the daemon checks share.

use super::watch::lines_of;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A series' labels, sorted by name.
pub type Labels = Vec<(String, String)>;

/// Under TCG a load takes seconds; leave room.
const READY: Duration = Duration::from_secs(90);
const LOG_WAIT: Duration = Duration::from_secs(30);

/// One `/metrics` body, parsed: (family, sorted labels) -> value.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub text: String,
    pub samples: BTreeMap<(String, Labels), f64>,
}

impl Scrape {
    pub fn parse(text: String) -> Result<Scrape> {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').context("a sample without a value")?;
            let value: f64 = value
                .parse()
                .with_context(|| format!("value of {line:?}"))?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (
                    name,
                    parse_labels(rest.strip_suffix('}').context("unclosed labels")?)?,
                ),
                None => (series, Vec::new()),
            };
            samples.insert((name.to_owned(), labels), value);
        }
        Ok(Scrape { text, samples })
    }

    /// `later - self` for every series of `later` (a new series counts from 0).
    pub fn delta(&self, later: &Scrape) -> Scrape {
        let samples = later
            .samples
            .iter()
            .map(|(key, v)| {
                (
                    key.clone(),
                    v - self.samples.get(key).copied().unwrap_or(0.0),
                )
            })
            .collect();
        Scrape {
            text: String::new(),
            samples,
        }
    }

    pub fn family(&self, name: &str) -> BTreeMap<Labels, f64> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), v)| (labels.clone(), *v))
            .collect()
    }

    /// The sum over the series of `name` that carry all of `labels`
    /// (None when there is no such series).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }
}

/// `a="x",b="y\"z"` -> sorted pairs (the text format's escapes undone).
pub fn parse_labels(text: &str) -> Result<Labels> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .with_context(|| format!("labels {text:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("labels {text:?} end in an escape"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => bail!("labels {text:?}: an unclosed value"),
            }
        };
        out.push((name.to_owned(), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    out.sort();
    Ok(out)
}

/// GET /metrics with a blocking socket; HTTP/1.0, so the server closes.
pub fn scrape(port: u16) -> Result<Scrape> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .with_context(|| format!("reading the reply from {addr}"))?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .context("a reply without headers")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET http://{addr}/metrics: {}",
            head.lines().next().unwrap_or("")
        );
    }
    if !head
        .to_ascii_lowercase()
        .contains("content-type: text/plain; version=0.0.4")
    {
        bail!("GET http://{addr}/metrics: not the text format: {head}");
    }
    Scrape::parse(body.to_owned())
}

/// `pfnwatch run`, its log read on a thread.
pub struct Daemon {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Daemon {
    /// `pfnwatch run ARGS`, once it logs that it runs.
    pub fn start(args: &[&str]) -> Result<Daemon> {
        let mut child = Command::new("/bin/pfnwatch")
            .arg("run")
            .args(args)
            .args(super::lookups::always_unless_given(args))
            .stderr(Stdio::piped())
            .spawn()
            .context("starting pfnwatch run")?;
        let stderr = child.stderr.take().context("pfnwatch run's stderr")?;
        let mut daemon = Daemon {
            child,
            lines: lines_of(stderr),
            log: Vec::new(),
        };
        if let Err(e) = daemon.wait_log_for("pfnwatch running", READY) {
            let _ = daemon.child.kill();
            return Err(e);
        }
        Ok(daemon)
    }

    pub fn signal(&self, sig: libc::c_int) -> Result<()> {
        // SAFETY: signalling our own child.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, sig) } != 0 {
            return Err(std::io::Error::last_os_error()).context("signalling pfnwatch run");
        }
        Ok(())
    }

    /// The log lines so far, up to and including one that contains `text`.
    pub fn wait_log(&mut self, text: &str) -> Result<Vec<String>> {
        self.wait_log_for(text, LOG_WAIT)
    }

    pub fn wait_log_for(&mut self, text: &str, limit: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(text);
                    seen.push(line.clone());
                    self.log.push(line);
                    if done {
                        return Ok(seen);
                    }
                }
                Err(_) => bail!("pfnwatch run logged no {text:?}: {}", seen.join(" | ")),
            }
        }
    }

    /// What the log said since the last look, without waiting.
    pub fn drain_log(&mut self) -> Vec<String> {
        let new: Vec<String> = self.lines.try_iter().collect();
        self.log.extend(new.iter().cloned());
        new
    }
    /// Every line logged so far.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` and waits up to `limit` for the exit; the rest of the
    /// log is read.
    pub fn stop(mut self, sig: libc::c_int, limit: Duration) -> Result<(ExitStatus, Vec<String>)> {
        self.signal(sig)?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.drain_log();
                return Ok((status, self.log));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("pfnwatch run did not exit within {limit:?} of signal {sig}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let s = Scrape::parse(
            "# HELP a_total x\n# TYPE a_total counter\na_total{b=\"1\",a=\"q\\\"x\\\\\"} 3\nc 4.5\n".to_owned(),
        )
        .unwrap();
        assert_eq!(s.get("a_total", &[("a", "q\"x\\")]), Some(3.0));
        assert_eq!(s.get("a_total", &[("b", "1")]), Some(3.0));
        assert_eq!(s.get("c", &[]), Some(4.5));
        assert_eq!(s.get("a_total", &[("b", "2")]), None);
        let later =
            Scrape::parse("a_total{a=\"q\\\"x\\\\\",b=\"1\"} 5\nc 4.5\nd 1\n".to_owned()).unwrap();
        let d = s.delta(&later);
        assert_eq!(d.get("a_total", &[]), Some(2.0));
        assert_eq!(d.get("c", &[]), Some(0.0));
        assert_eq!(d.get("d", &[]), Some(1.0));
        assert!(Scrape::parse("x{a=\"1} 2\n".to_owned()).is_err());
    }
}
