//! Single-byte encodings (ISO-8859-1, windows-1252) decoded to UTF-8 as
//! the file streams.

use std::io::{self, Read};

/// How a single-byte encoding becomes UTF-8.
pub(crate) enum Decoder {
    /// ISO-8859-1 is the identity on code points. (encoding_rs maps the
    /// `latin1` label to windows-1252, which differs in 0x80..0x9F, so it
    /// is done here.)
    Latin1,
    Other(encoding_rs::Decoder),
}

/// A streaming decoder to UTF-8 with its own output buffer, so any read
/// size works.
pub(crate) struct Decode<R> {
    inner: R,
    decoder: Decoder,
    input: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    out: Vec<u8>,
    out_pos: usize,
    out_len: usize,
    eof: bool,
    done: bool,
}

impl<R: Read> Decode<R> {
    pub(crate) fn new(inner: R, decoder: Decoder, size: usize) -> Self {
        Decode {
            inner,
            decoder,
            input: vec![0; size],
            in_pos: 0,
            in_len: 0,
            // Every byte of these encodings is at most 3 bytes of UTF-8.
            out: vec![0; size * 3 + 16],
            out_pos: 0,
            out_len: 0,
            eof: false,
            done: false,
        }
    }
}

impl<R: Read> Read for Decode<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_pos < self.out_len {
                let n = buf.len().min(self.out_len - self.out_pos);
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            if self.in_pos == self.in_len && !self.eof {
                self.in_len = self.inner.read(&mut self.input)?;
                self.in_pos = 0;
                self.eof = self.in_len == 0;
            }
            let src = &self.input[self.in_pos..self.in_len];
            self.out_pos = 0;
            match &mut self.decoder {
                Decoder::Latin1 => {
                    let mut w = 0;
                    for &b in src {
                        if b < 0x80 {
                            self.out[w] = b;
                            w += 1;
                        } else {
                            self.out[w] = 0xC0 | (b >> 6);
                            self.out[w + 1] = 0x80 | (b & 0x3F);
                            w += 2;
                        }
                    }
                    self.in_pos = self.in_len;
                    self.out_len = w;
                    self.done = self.eof;
                }
                Decoder::Other(d) => {
                    let (result, read, written, _) = d.decode_to_utf8(src, &mut self.out, self.eof);
                    self.in_pos += read;
                    self.out_len = written;
                    self.done = self.eof && result == encoding_rs::CoderResult::InputEmpty;
                }
            }
        }
    }
}
