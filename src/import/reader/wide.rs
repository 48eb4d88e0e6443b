//! A delimiter of more than one byte (`, `, `; `): the CSV parser reads
//! one byte, so the text is rewritten on its way to it, the delimiter
//! outside quotes becoming [`WIDE_DELIMITER_BYTE`]. A `,` alone stays data.
//! A quote opens a field only at its start (as the CSV parser reads it) and
//! a doubled quote inside stays inside. Newlines are kept, so the lines the
//! reader names are the file's.

use std::io::{self, Read};

use crate::config::WIDE_DELIMITER_BYTE;

/// The rewriting reader.
pub struct Wide<R> {
    inner: R,
    delimiter: Vec<u8>,
    quote: Option<u8>,
    /// Read from `inner`, not rewritten yet (a tail that may be the start
    /// of a delimiter or a doubled quote waits for more).
    input: Vec<u8>,
    /// Rewritten, not handed out yet.
    output: Vec<u8>,
    at_field_start: bool,
    in_quote: bool,
    eof: bool,
}

impl<R: Read> Wide<R> {
    /// `inner` with `delimiter` (at least two bytes) rewritten; `quote`
    /// `None` when quotes are data.
    pub fn new(inner: R, delimiter: &[u8], quote: Option<u8>) -> Wide<R> {
        Wide {
            inner,
            delimiter: delimiter.to_vec(),
            quote,
            input: Vec::new(),
            output: Vec::new(),
            at_field_start: true,
            in_quote: false,
            eof: false,
        }
    }

    /// Rewrites what can be decided in `input`.
    fn rewrite(&mut self) {
        let keep = if self.eof {
            0
        } else {
            self.delimiter.len().max(2) - 1
        };
        let mut i = 0;
        let end = self.input.len().saturating_sub(keep);
        while i < end {
            let b = self.input[i];
            if self.in_quote {
                if Some(b) == self.quote {
                    if self.input.get(i + 1) == Some(&b) {
                        self.output.extend_from_slice(&[b, b]);
                        i += 2;
                        continue;
                    }
                    self.in_quote = false;
                }
                self.output.push(b);
                i += 1;
                continue;
            }
            if self.input[i..].starts_with(&self.delimiter) {
                self.output.push(WIDE_DELIMITER_BYTE);
                self.at_field_start = true;
                i += self.delimiter.len();
                continue;
            }
            if self.at_field_start && Some(b) == self.quote {
                self.in_quote = true;
            }
            self.at_field_start = b == b'\n' || (b == b'\r' && self.at_field_start);
            self.output.push(b);
            i += 1;
        }
        self.input.drain(..i);
    }
}

impl<R: Read> Read for Wide<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.output.is_empty() && !(self.eof && self.input.is_empty()) {
            let mut chunk = [0u8; 64 * 1024];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                self.eof = true;
            }
            self.input.extend_from_slice(&chunk[..n]);
            self.rewrite();
        }
        let n = buf.len().min(self.output.len());
        buf[..n].copy_from_slice(&self.output[..n]);
        self.output.drain(..n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide(text: &str, d: &str, q: Option<u8>) -> String {
        let mut out = String::new();
        Wide::new(text.as_bytes(), d.as_bytes(), q)
            .read_to_string(&mut out)
            .unwrap();
        out.replace(char::from(WIDE_DELIMITER_BYTE), "|")
    }

    #[test]
    fn wide_delimiters_outside_quotes_only() {
        assert_eq!(
            wide("a, b, c\n1, 2, 3\n", ", ", Some(b'"')),
            "a|b|c\n1|2|3\n"
        );
        assert_eq!(
            wide("1, \"x, \"\"y\"\", z\", 2,5\n", ", ", Some(b'"')),
            "1|\"x, \"\"y\"\", z\"|2,5\n"
        );
        // A quote inside a field is data, as the CSV parser reads it.
        assert_eq!(
            wide("O'Brien; 'a; b'\n", "; ", Some(b'\'')),
            "O'Brien|'a; b'\n"
        );
        assert_eq!(wide("'a; b'\n", "; ", None), "'a|b'\n");
    }

    #[test]
    fn wide_delimiters_across_reads() {
        // One byte at a time: a delimiter or a doubled quote cut in two.
        struct OneByOne<'a>(&'a [u8]);
        impl Read for OneByOne<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut out = Vec::new();
        Wide::new(OneByOne(b"a, \"b, \"\"c\", d"), b", ", Some(b'"'))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"a\x1F\"b, \"\"c\"\x1Fd");
    }
}
