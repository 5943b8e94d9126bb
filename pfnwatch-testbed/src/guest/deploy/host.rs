//! Running the guest's own programs (apt, systemctl, journalctl, podman),
//! plain HTTP on loopback, and waiting for a condition.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// `program args...`'s stdout; an error with its status and stderr unless it
/// exited 0.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = output(program, args)?;
    if !out.status.success() {
        bail!(
            "{program} {} exited {}: {}",
            args.join(" "),
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 6)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn output(program: &str, args: &[&str]) -> Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C")
        .env("SYSTEMD_PAGER", "")
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))
}

/// `systemctl ARGS`'s first line of output, whatever its exit status
/// (`is-active` exits 3 for "inactive").
pub fn systemctl(args: &[&str]) -> String {
    output("systemctl", args)
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|e| format!("{e:#}"))
}

/// The last `n` lines of `text`, on one line.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// GET http://127.0.0.1:PORT/PATH with HTTP/1.0 (the server closes):
/// the status code and the body.
pub fn get(port: u16, path: &str) -> Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .with_context(|| format!("reading the reply of {addr}{path}"))?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .context("a reply without headers")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status in {:?}", head.lines().next()))?;
    Ok((code, body.to_owned()))
}

/// Polls `probe` every half second until it returns `Some` or `limit`
/// passes; the value and how long it took.
pub fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some((value, start.elapsed()));
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_joins_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b | c");
        assert_eq!(tail("", 2), "");
    }
}
