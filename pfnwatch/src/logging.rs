//! Where the log goes: the journal, natively, when systemd started us with
//! stderr connected to it; stderr otherwise (a terminal, a pipe, podman).
//!
//! In the journal, alerts (target [`ALERT_TARGET`], `sinks/alert_log.rs`)
//! are entries of their own with `PFNWATCH_*` fields and a PRIORITY from
//! their severity; the rest of the log keeps tracing's level mapping.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// The tracing target of alert events.
pub const ALERT_TARGET: &str = "pfnwatch::alert";

static TO_JOURNAL: AtomicBool = AtomicBool::new(false);

/// Whether log lines go to the journal (set once by [`init`]).
pub fn to_journal() -> bool {
    TO_JOURNAL.load(Ordering::Relaxed)
}

/// Installs the global subscriber. `RUST_LOG` filters either way.
pub fn init() {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref()) {
        // The socket may still be refused (a journald stopped under us):
        // stderr reaches the journal then, as plain lines.
        if let (Ok(alerts), Ok(rest)) = (tracing_journald::layer(), tracing_journald::layer()) {
            let alerts = alerts
                .with_field_prefix(None)
                .with_priority_mappings(alert_priorities())
                .with_filter(filter_fn(|meta| meta.target() == ALERT_TARGET));
            let rest = rest.with_filter(filter_fn(|meta| meta.target() != ALERT_TARGET));
            Registry::default()
                .with(filter())
                .with(alerts)
                .with(rest)
                .init();
            TO_JOURNAL.store(true, Ordering::Relaxed);
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        // Colour only for people: pipes get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Alerts are logged at ERROR (critical), WARN (warning) and INFO (info)
/// (`alert_log::level`): in the journal those become crit (2), warning (4)
/// and info (6).
pub fn alert_priorities() -> PriorityMappings {
    PriorityMappings {
        error: Priority::Critical,
        warn: Priority::Warning,
        info: Priority::Informational,
        ..PriorityMappings::new()
    }
}

/// systemd sets `JOURNAL_STREAM=<dev>:<inode>` of the stream it connected
/// stdout/stderr to; it is ours only if fd 2 is still that stream (not a
/// child's inherited variable with stderr redirected).
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(parse_stream) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert_eq!(parse_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_stream("8"), None);
        assert_eq!(parse_stream("x:1"), None);
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("garbage")));
        // Whatever the test's stderr is, it is not inode 0.
        assert!(!stderr_is_journal(Some("0:0")));
        let fd2 = std::fs::metadata("/proc/self/fd/2").unwrap();
        assert!(stderr_is_journal(Some(&format!(
            "{}:{}",
            fd2.dev(),
            fd2.ino()
        ))));
    }
}
