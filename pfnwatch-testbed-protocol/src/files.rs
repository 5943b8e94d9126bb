//! Files the guest sends over the console, as protocol lines:
//!
//! ```text
//! pfnwatch-vmtest: FILE <name> <index> <base64 of up to 512 bytes>
//! pfnwatch-vmtest: FILE <name> END <chunks> <bytes> <crc32 hex>
//! ```
//!
//! The serial console is the only way out of the guest. Chunks must come in
//! order; the END line's count, length and CRC tell a lost or garbled line
//! (a printk can land in the middle of one) from a good file. The guest
//! writes with [`encode`], the host reassembles with [`GuestFiles`].

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::checks::MARKER;

/// Raw bytes per FILE line: 684 base64 characters, well inside a console line.
pub const CHUNK: usize = 512;

/// The console lines that send `bytes` as file `name`.
pub fn encode(name: &str, bytes: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = bytes
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            let data = base64::engine::general_purpose::STANDARD.encode(chunk);
            format!("{MARKER}FILE {name} {i} {data}")
        })
        .collect();
    let chunks = lines.len();
    lines.push(format!(
        "{MARKER}FILE {name} END {chunks} {} {:08x}",
        bytes.len(),
        crc32fast::hash(bytes)
    ));
    lines
}

/// One parsed FILE line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileLine<'a> {
    Chunk {
        name: &'a str,
        index: usize,
        data: &'a str,
    },
    End {
        name: &'a str,
        chunks: usize,
        len: usize,
        crc: u32,
    },
}

/// Parses what follows `FILE `; `None` when it is not a well-formed FILE line.
pub fn parse(body: &str) -> Option<FileLine<'_>> {
    let mut words = body.split_whitespace();
    let name = words.next().filter(|name| valid_name(name))?;
    let line = match words.next()? {
        "END" => FileLine::End {
            name,
            chunks: words.next()?.parse().ok()?,
            len: words.next()?.parse().ok()?,
            crc: u32::from_str_radix(words.next()?, 16).ok()?,
        },
        index => FileLine::Chunk {
            name,
            index: index.parse().ok()?,
            data: words.next()?,
        },
    };
    words.next().is_none().then_some(line)
}

/// Names become file names on the host: no paths, nothing hidden.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[derive(Debug, Default)]
struct Assembly {
    data: Vec<u8>,
    chunks: usize,
    /// The first thing that went wrong; later lines are ignored.
    error: Option<String>,
    complete: bool,
}

/// Complete files by name.
pub type Received = BTreeMap<String, Vec<u8>>;

/// Every file the guest sent, complete or not.
#[derive(Debug, Default)]
pub struct GuestFiles {
    files: BTreeMap<String, Assembly>,
}

impl GuestFiles {
    /// Takes one FILE line; returns a line to show on the host (only when a
    /// file completes or breaks: chunks would flood the terminal).
    pub fn observe(&mut self, line: FileLine<'_>) -> Option<String> {
        let name = match &line {
            FileLine::Chunk { name, .. } | FileLine::End { name, .. } => *name,
        };
        let file = self.files.entry(name.to_owned()).or_default();
        if file.error.is_some() {
            return None;
        }
        let problem = match line {
            FileLine::Chunk { .. } if file.complete => Some("a chunk after END".to_owned()),
            FileLine::Chunk { index, .. } if index != file.chunks => Some(format!(
                "chunk {index} where chunk {} was due (a console line was lost)",
                file.chunks
            )),
            FileLine::Chunk { index, data, .. } => {
                match base64::engine::general_purpose::STANDARD.decode(data) {
                    Ok(bytes) => {
                        file.data.extend(bytes);
                        file.chunks += 1;
                        None
                    }
                    Err(err) => Some(format!("chunk {index} is not base64 ({err})")),
                }
            }
            FileLine::End {
                chunks, len, crc, ..
            } => {
                let got = crc32fast::hash(&file.data);
                if (chunks, len, crc) == (file.chunks, file.data.len(), got) {
                    file.complete = true;
                    return Some(format!("FILE {name}: {len} bytes received"));
                }
                Some(format!(
                    "END says {chunks} chunks, {len} bytes, crc {crc:08x}; received {} chunks, \
                     {} bytes, crc {got:08x}",
                    file.chunks,
                    file.data.len()
                ))
            }
        };
        let problem = problem?;
        file.error = Some(problem.clone());
        Some(format!("FILE {name}: broken: {problem}"))
    }

    /// The complete files, and (`file/<name>`, what went wrong) for each
    /// one that is not.
    pub fn finish(self) -> (Received, Vec<(String, String)>) {
        let mut complete = BTreeMap::new();
        let mut failed = Vec::new();
        for (name, file) in self.files {
            let failure = match (file.error, file.complete) {
                (Some(error), _) => error,
                (None, false) => format!("no END line after {} chunks", file.chunks),
                (None, true) => {
                    complete.insert(name, file.data);
                    continue;
                }
            };
            failed.push((format!("file/{name}"), failure));
        }
        (complete, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What follows `FILE ` in the lines the guest prints for `bytes`.
    fn lines(name: &str, bytes: &[u8]) -> Vec<String> {
        let prefix = format!("{MARKER}FILE ");
        encode(name, bytes)
            .iter()
            .map(|l| l.strip_prefix(&prefix).unwrap().to_owned())
            .collect()
    }

    fn feed(files: &mut GuestFiles, lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| files.observe(parse(l).unwrap_or_else(|| panic!("{l}"))))
            .collect()
    }

    fn data() -> Vec<u8> {
        (0..1500u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn reassembles_files_in_chunks() {
        let mut files = GuestFiles::default();
        let echoes = feed(&mut files, &lines("capture.jsonl.gz", &data()));
        assert_eq!(echoes, ["FILE capture.jsonl.gz: 1500 bytes received"]);
        feed(&mut files, &lines("empty", b""));
        let (complete, failed) = files.finish();
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(complete["capture.jsonl.gz"], data());
        assert_eq!(complete["empty"], b"");
    }

    #[test]
    fn lost_garbled_and_unfinished_files_fail_by_name() {
        let good = lines("a", &data());
        // A lost chunk.
        let mut files = GuestFiles::default();
        let lost: Vec<String> = good
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| l.clone())
            .collect();
        let echoes = feed(&mut files, &lost);
        assert_eq!(echoes.len(), 1, "reported once: {echoes:?}");
        assert!(
            echoes[0].contains("chunk 2 where chunk 1 was due"),
            "{echoes:?}"
        );
        // A garbled chunk of valid base64: the CRC catches it.
        let garbled: Vec<String> = good
            .iter()
            .map(|l| l.replacen("a 0 A", "a 0 B", 1))
            .collect();
        let mut files2 = GuestFiles::default();
        let echoes = feed(&mut files2, &garbled);
        assert!(echoes[0].contains("crc"), "{echoes:?}");
        // Never finished.
        let mut files3 = GuestFiles::default();
        feed(&mut files3, &good[..2]);
        let (complete, failed) = files3.finish();
        assert!(complete.is_empty());
        assert_eq!(failed[0].0, "file/a");
        assert_eq!(failed[0].1, "no END line after 2 chunks");
        let (_, failed) = files.finish();
        assert_eq!(failed.len(), 1);
    }

    #[test]
    fn malformed_lines_and_unsafe_names_are_not_file_lines() {
        assert_eq!(
            parse("x 3 QUJD"),
            Some(FileLine::Chunk {
                name: "x",
                index: 3,
                data: "QUJD"
            })
        );
        assert_eq!(
            parse("x END 1 3 0000beef"),
            Some(FileLine::End {
                name: "x",
                chunks: 1,
                len: 3,
                crc: 0xbeef
            })
        );
        for bad in [
            "../x 0 QUJD",
            ".x 0 QUJD",
            "a/b 0 QUJD",
            "x QUJD",
            "x 0",
            "x 0 QUJD extra",
            "x END 1 3",
            "x END 1 3 zz",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        // Not base64.
        let mut files = GuestFiles::default();
        let echo = files.observe(FileLine::Chunk {
            name: "x",
            index: 0,
            data: "!!",
        });
        assert!(echo.is_some_and(|e| e.contains("not base64")));
    }
}
