//! The bytes of a capture as the reader takes them: plain, or gzip
//! decompressed on the fly, with the place reached in both, for errors.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

/// gzip's magic number: captures are often compressed to be sent.
const GZIP: [u8; 2] = [0x1f, 0x8b];
/// Read-ahead of the file and of the decompressed data.
const BUFFER: usize = 64 << 10;
/// [`Input::buffered`] at most.
pub const MAX_BUFFERED: usize = 2 * BUFFER + (64 << 10);

pub struct Input<'a> {
    inner: Box<dyn BufRead + 'a>,
    /// Bytes of the capture (decompressed) consumed.
    pub pos: u64,
    /// Bytes of the compressed file the decompressor consumed, when gzip.
    compressed: Option<Rc<Cell<u64>>>,
}

impl<'a> Input<'a> {
    /// Looks at the first bytes: gzip is decompressed as it is read.
    pub fn new(raw: impl Read + 'a) -> io::Result<Input<'a>> {
        let mut raw = BufReader::with_capacity(BUFFER, raw);
        let gzip = raw.fill_buf()?.starts_with(&GZIP);
        Ok(if gzip {
            let consumed = Rc::new(Cell::new(0));
            let counted = Counted {
                inner: raw,
                consumed: Rc::clone(&consumed),
            };
            Input {
                inner: Box::new(BufReader::with_capacity(
                    BUFFER,
                    flate2::bufread::MultiGzDecoder::new(counted),
                )),
                pos: 0,
                compressed: Some(consumed),
            }
        } else {
            Input {
                inner: Box::new(raw),
                pos: 0,
                compressed: None,
            }
        })
    }

    pub fn is_gzip(&self) -> bool {
        self.compressed.is_some()
    }

    /// Bytes of the compressed file read so far (gzip only).
    pub fn compressed_pos(&self) -> Option<u64> {
        self.compressed.as_ref().map(|c| c.get())
    }

    /// Reads up to and with the next newline, at most `max` bytes, into
    /// `buf` (cleared first); the bytes read.
    pub fn line(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        buf.clear();
        let n = (&mut self.inner)
            .take(u64::try_from(max).unwrap_or(u64::MAX))
            .read_until(b'\n', buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    /// Fills `buf` from the input; fewer bytes than its length only at the
    /// end of the data (an error of the decompressor is an error).
    pub fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    /// Whether the data has ended.
    pub fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.inner.fill_buf()?.is_empty())
    }

    /// Bytes held for reading ahead, for the reader's footprint.
    pub fn buffered(&self) -> usize {
        // Two buffers for gzip (the file's and the decompressed data's),
        // and the decompressor's window (32 KiB) and state.
        if self.is_gzip() { MAX_BUFFERED } else { BUFFER }
    }
}

/// Counts what the decompressor consumed of the file.
struct Counted<R> {
    inner: R,
    consumed: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.set(self.consumed.get() + n as u64);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.consumed.set(self.consumed.get() + amt as u64);
        self.inner.consume(amt);
    }
}
