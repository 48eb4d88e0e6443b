//! `encoding: auto`, and the sample `delimiter: auto` is chosen on
//! ([`score`](super::score)): decisions taken from the file's bytes before
//! it is read as CSV. The rules are pure; [`sniff`] reads the file
//! (decompressed, within the reader's budgets) once.

use std::io::{self, Read};

use crate::config::{Encoding, ResolvedOptions, WIDE_DELIMITER_BYTE};
use crate::import::score::{choose, QUOTES};

/// The encoding: a UTF-8 BOM, or bytes that are valid UTF-8 throughout,
/// are UTF-8; anything else is windows-1252 (which maps every byte).
pub fn encoding(has_bom: bool, valid_utf8: bool) -> (Encoding, &'static str) {
    if has_bom {
        (Encoding::Utf8, "utf-8 (byte order mark)")
    } else if valid_utf8 {
        (Encoding::Utf8, "utf-8 (the whole file is valid UTF-8)")
    } else {
        (
            Encoding::Windows1252,
            "windows-1252 (the file is not valid UTF-8)",
        )
    }
}

/// The options with `encoding: auto`, `delimiter: auto` and `quote:
/// auto` decided from what [`sniff`] found, and each decision for the job
/// and `cpi infer` (`delimiter: auto → ", "`). Pure.
pub fn decide(s: &Sniffed, o: &ResolvedOptions) -> (ResolvedOptions, Vec<String>) {
    let mut c = o.clone();
    let mut notes = Vec::new();
    if o.encoding == Encoding::Auto {
        let (enc, why) = encoding(s.bom, s.valid_utf8);
        c.encoding = enc;
        notes.push(format!("encoding: auto → {why}"));
    }
    if !o.delimiter_auto {
        return (c, notes);
    }
    let given = [o.quoting.then_some(o.quote)];
    let quotes = if o.quote_auto { QUOTES } else { &given[..] };
    // `quote: auto` chooses the escape too, unless one is given.
    let escapes = o.quote_auto && o.escape.is_none();
    let choice = choose(&s.sample, quotes, escapes);
    let d = &choice.delimiter;
    match d.as_slice() {
        [one] => {
            c.delimiter = *one;
            c.wide_delimiter = None;
        }
        _ => {
            c.delimiter = WIDE_DELIMITER_BYTE;
            c.wide_delimiter = Some(d.clone());
        }
    }
    let shown = String::from_utf8_lossy(d).escape_default().to_string();
    tracing::debug!(
        score = choice.score,
        next_best = choice.next,
        "delimiter scores"
    );
    notes.push(format!("delimiter: auto → {shown:?}"));
    if o.quote_auto {
        c.quoting = choice.quote.is_some();
        c.quote = choice.quote.unwrap_or(b'"');
        let q = match choice.quote {
            Some(q) => format!("{:?}", char::from(q).to_string()),
            None => "none".into(),
        };
        notes.push(format!("quote: auto → {q}"));
        if escapes && choice.quote.is_some() {
            c.escape = choice.escape;
            notes.push(match choice.escape {
                Some(_) => "escape: auto → \"\\\\\" (a backslash before a quote inside quotes reads the rows better than a doubled quote)".to_string(),
                None => "escape: auto → the quote doubled".to_string(),
            });
        }
    }
    (c, notes)
}

/// What [`sniff`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    /// Starts with a UTF-8 BOM.
    pub bom: bool,
    /// Every byte is valid UTF-8.
    pub valid_utf8: bool,
    /// The first line, BOM removed.
    pub first_line: Vec<u8>,
    /// The first [`SAMPLE_BYTES`] (or the whole file), BOM removed: what
    /// [`choose`] scores dialects on.
    pub sample: Vec<u8>,
}

/// Bytes of the file the dialect is chosen on.
pub const SAMPLE_BYTES: usize = 64 * 1024;

/// Reads the (decompressed) file once: BOM, UTF-8 validity, first line.
/// `full` false stops after the first line (only the delimiter is wanted).
/// Within the import's budgets: the decompression ones (the reader's),
/// and a first line of at most `max_record_bytes`.
pub fn sniff(
    source: &super::reader::Source,
    full: bool,
    limits: &crate::config::Limits,
) -> io::Result<Sniffed> {
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut r: Box<dyn Read> = super::reader::decompressed(source, limits, counted, None)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let mut s = Sniffed {
        bom: false,
        valid_utf8: true,
        first_line: Vec::new(),
        sample: Vec::new(),
    };
    let mut first = true;
    let mut line_done = false;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if first {
            first = false;
            if chunk.starts_with(b"\xEF\xBB\xBF") {
                s.bom = true;
                chunk = &chunk[3..];
            }
        }
        if s.sample.len() < SAMPLE_BYTES {
            let room = SAMPLE_BYTES - s.sample.len();
            s.sample.extend_from_slice(&chunk[..room.min(chunk.len())]);
        }
        if !line_done {
            match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    s.first_line.extend_from_slice(&chunk[..i]);
                    line_done = true;
                }
                None => s.first_line.extend_from_slice(chunk),
            }
            if s.first_line.len() as u64 > limits.max_record_bytes {
                return Err(super::reader::first_line_too_big(limits.max_record_bytes));
            }
            if line_done && !full && s.sample.len() >= SAMPLE_BYTES {
                return Ok(s);
            }
        }
        if line_done && !full && s.sample.len() >= SAMPLE_BYTES {
            return Ok(s);
        }
        if s.valid_utf8 && full {
            carry.extend_from_slice(chunk);
            match std::str::from_utf8(&carry) {
                Ok(_) => carry.clear(),
                // A sequence cut at the chunk's end: keep it for the next.
                Err(e) if e.error_len().is_none() => {
                    carry.drain(..e.valid_up_to());
                }
                Err(_) => s.valid_utf8 = false,
            }
        }
    }
    if !carry.is_empty() {
        s.valid_utf8 = false;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(encoding(true, false).0, Encoding::Utf8);
        assert_eq!(encoding(false, true).0, Encoding::Utf8);
        assert_eq!(encoding(false, false).0, Encoding::Windows1252);
    }

    #[test]
    fn sniffed_decisions_are_noted() {
        let mut o = crate::config::ProjectConfig::default()
            .options_for("a.csv")
            .unwrap();
        o.encoding = Encoding::Auto;
        o.delimiter_auto = true;
        o.quote_auto = true;
        let s = Sniffed {
            bom: false,
            valid_utf8: true,
            first_line: b"id; name".to_vec(),
            sample: b"id; name\n1; 'a; b'\n2; 'c'\n".to_vec(),
        };
        let (d, notes) = decide(&s, &o);
        assert_eq!(d.wide_delimiter.as_deref(), Some(&b"; "[..]));
        assert_eq!((d.quote, d.quoting), (b'\'', true));
        assert_eq!(
            notes,
            [
                "encoding: auto → utf-8 (the whole file is valid UTF-8)",
                "delimiter: auto → \"; \"",
                "quote: auto → \"'\"",
                "escape: auto → the quote doubled",
            ]
        );
    }

    #[test]
    fn sniffs_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, b"\xEF\xBB\xBFid;name\n1;Jos\xE9\n").unwrap();
        let s = sniff(&p.clone().into(), true, &Default::default()).unwrap();
        assert_eq!((s.bom, s.valid_utf8), (true, false));
        assert_eq!(s.first_line, b"id;name");
        std::fs::write(&p, "id,name\n1,José\n").unwrap();
        assert!(
            sniff(&p.clone().into(), true, &Default::default())
                .unwrap()
                .valid_utf8
        );
    }
}
