//! Where alerts go: the log (tracing; journald-friendly key=value lines)
//! and, optionally, a JSON lines file.

use crate::alert::Alert;
use crate::rules::Severity;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct Sinks {
    file: Option<(PathBuf, BufWriter<File>)>,
    /// Alerts below this severity are not logged (still written and counted).
    pub log_min: Severity,
    /// False when the caller shows alerts itself (trace prints them on stdout).
    pub log: bool,
}

impl Sinks {
    pub fn new(alerts_file: Option<&Path>, log_min: Severity) -> Result<Sinks> {
        let file = match alerts_file {
            Some(path) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening the alerts file {}", path.display()))?;
                Some((path.to_path_buf(), BufWriter::new(f)))
            }
            None => None,
        };
        Ok(Sinks {
            file,
            log_min,
            log: true,
        })
    }

    pub fn emit(&mut self, alert: &Alert) -> Result<()> {
        if self.log && alert.severity >= self.log_min {
            let line = alert.summary();
            let stack = alert.stack.join(" <- ");
            match alert.severity {
                Severity::Critical | Severity::Warning => tracing::warn!(
                    rule = %alert.rule, severity = %alert.severity, pid = alert.tgid,
                    comm = %alert.comm, count = alert.count, stack = %stack, "{line}"
                ),
                Severity::Info => tracing::info!(
                    rule = %alert.rule, severity = %alert.severity, pid = alert.tgid,
                    comm = %alert.comm, count = alert.count, stack = %stack, "{line}"
                ),
            }
        }
        if let Some((path, w)) = &mut self.file {
            let json = serde_json::to_string(alert).context("encoding an alert")?;
            writeln!(w, "{json}")
                .and_then(|()| w.flush())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}
