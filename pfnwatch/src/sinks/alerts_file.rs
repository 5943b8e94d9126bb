//! Every alert as one JSON object per line (`--alerts-file`), flushed line
//! by line; reopened on reload, so logrotate can move it.

use crate::pipeline::Sink;
use crate::pipeline::alert::Alert;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The mode a new alerts file gets (an existing file keeps its own).
pub const MODE: u32 = 0o640;

pub struct AlertsFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl AlertsFile {
    /// Opens `path` for appending; `None` when no file was asked for.
    pub fn open(path: Option<&Path>) -> Result<Option<AlertsFile>> {
        let Some(path) = path else { return Ok(None) };
        // Alerts name processes, files and call paths: the owner writes,
        // its group (a log shipper) reads, nobody else.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(MODE)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_file_is_the_owner_s_and_its_group_s() {
        let path = std::env::temp_dir().join(format!("pfnwatch-alerts-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let file = AlertsFile::open(Some(&path)).unwrap();
        assert!(file.is_some());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, MODE);
        std::fs::remove_file(&path).unwrap();
        assert!(AlertsFile::open(None).unwrap().is_none());
    }
}
