//! Every alert as one JSON object per line (`--alerts-file`), flushed line
//! by line; reopened on reload, so logrotate can move it.

use crate::pipeline::Sink;
use crate::pipeline::alert::Alert;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct AlertsFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl AlertsFile {
    /// Opens `path` for appending; `None` when no file was asked for.
    pub fn open(path: Option<&Path>) -> Result<Option<AlertsFile>> {
        let Some(path) = path else { return Ok(None) };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the alerts file {}", path.display()))?;
        Ok(Some(AlertsFile {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        }))
    }
}

impl Sink for AlertsFile {
    fn alert(&mut self, alert: &Alert) -> Result<()> {
        let json = serde_json::to_string(alert).context("encoding an alert")?;
        writeln!(self.out, "{json}")
            .and_then(|()| self.out.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}
