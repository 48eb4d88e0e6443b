//! Opening a file as a stream of UTF-8 CSV records: gzip, the file's
//! encoding, the UTF-8 BOM and the dialect options. Nothing here holds
//! more than a buffer of the file.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{Encoding, Limits, ResolvedOptions};

mod budget;
mod decode;
mod wide;

use budget::Inflated;
pub use budget::{exceeded, exceeded_io, Exceeded, Limit};
use decode::{Decode, Decoder};

const READ_BUF: usize = 256 * 1024;

/// The source's bytes decompressed (when its name says so), within the
/// decompression budgets; `read_bytes` counts the bytes read from the
/// source, `hash` (when given) hashes them. Every reader of a file's text
/// (the importer, the sniffer) starts here, so each inherits the budgets.
pub fn decompressed(
    source: &Source,
    limits: &Limits,
    read_bytes: Arc<AtomicU64>,
    hash: Option<StreamHash>,
) -> io::Result<Box<dyn Read + Send>> {
    let file = Counting {
        inner: source.open_raw()?,
        count: read_bytes.clone(),
        hash,
    };
    Ok(match source.compression() {
        Compression::None => Box::new(file),
        c => Box::new(BufReader::with_capacity(
            READ_BUF,
            Inflated::new(
                decompress(c, BufReader::with_capacity(READ_BUF, file))?,
                read_bytes,
                *limits,
            ),
        )),
    })
}

/// Where a file's bytes come from: a local file, or an object streamed
/// from its store (one GET per pass, never held in memory).
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on disk.
    File(PathBuf),
    /// An object in an `s3://` inbox.
    Object(crate::object_storage::Object),
}

impl From<PathBuf> for Source {
    fn from(p: PathBuf) -> Source {
        Source::File(p)
    }
}

impl Source {
    /// The bytes from the start, unbuffered.
    pub fn open_raw(&self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            Source::File(p) => Ok(Box::new(File::open(p)?)),
            Source::Object(o) => o.read(),
        }
    }

    /// How it is compressed, by its name (`.gz`, `.zst`).
    pub fn compression(&self) -> Compression {
        match self {
            Source::File(p) => compression(p),
            Source::Object(o) => compression(Path::new(&o.object.key)),
        }
    }

    /// Whether a read failed on the way (an object store's network or
    /// server error): the file was not judged, the job is tried again.
    pub fn read_failed(&self) -> bool {
        match self {
            Source::File(_) => false,
            Source::Object(o) => o.read_failed(),
        }
    }
}

/// sha256 (hex) and size of the file as it is on disk (compressed or not).
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    hash(&Source::File(path.to_path_buf()))
}

/// sha256 (hex) and size of the source's bytes (compressed or not).
pub fn hash(source: &Source) -> io::Result<(String, u64)> {
    let mut f = source.open_raw()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}

/// sha256 computed while the file streams (shared with the importer,
/// which finalizes it once the parser has read the file to its end).
pub type StreamHash = Arc<std::sync::Mutex<Sha256>>;

/// Counts the bytes read from the file (for progress: MB/s of the file),
/// and hashes them when asked to.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    hash: Option<StreamHash>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &self.hash {
            if let Ok(mut h) = h.lock() {
                h.update(&buf[..n]);
            }
        }
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A fresh hash, fed as the file is read.
pub fn new_stream_hash() -> StreamHash {
    Arc::new(std::sync::Mutex::new(Sha256::new()))
}

/// The hex digest of what went through the hash.
pub fn finish_stream_hash(h: &StreamHash) -> Option<String> {
    let h = h.lock().ok()?;
    Some(hex::encode(h.clone().finalize()))
}

/// Bytes of the text stream whose `\n`-ness is remembered: more than the
/// CSV reader's buffer, so the byte that ended the record just read is
/// always inside it.
const WINDOW: u64 = 4 * READ_BUF as u64;

/// Which of the last [`WINDOW`] bytes of the text stream were `\n` (a
/// ring of bits: constant memory whatever the file). Written by
/// [`Tracked`] under the CSV reader, read by [`Records`] on the same
/// thread; atomics only to be shareable.
struct Newlines {
    words: Box<[AtomicU64]>,
}

impl Newlines {
    fn new() -> Newlines {
        Newlines {
            words: (0..WINDOW / 64).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn word(&self, offset: u64) -> &AtomicU64 {
        &self.words[((offset / 64) % (WINDOW / 64)) as usize]
    }

    /// Notes the bytes `chunk` read at stream offset `start`.
    fn note(&self, start: u64, chunk: &[u8]) {
        let end = start + chunk.len() as u64;
        let from = start.max(end.saturating_sub(WINDOW));
        let mut off = from;
        while off < end {
            let bit = off % 64;
            let n = (64 - bit).min(end - off);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            self.word(off).fetch_and(!mask, Ordering::Relaxed);
            off += n;
        }
        let skip = (from - start) as usize;
        for i in memchr::memchr_iter(b'\n', &chunk[skip..]) {
            let o = from + i as u64;
            self.word(o).fetch_or(1 << (o % 64), Ordering::Relaxed);
        }
    }

    fn is_newline(&self, offset: u64) -> bool {
        self.word(offset).load(Ordering::Relaxed) & (1 << (offset % 64)) != 0
    }
}

/// Where the record being read started in the text stream: set by
/// [`Records`] after each record, read by [`Tracked`] under the CSV
/// reader (same thread; an atomic only to be shareable).
struct RecordStart(AtomicU64);

/// The text stream as the CSV reader sees it, its `\n` bytes noted, and
/// the record being read held to `max_record_bytes` *while* it is read:
/// the CSV reader grows its record buffer until the record ends, so a
/// 5 GB record would be buffered whole before any check after it.
struct Tracked {
    inner: Box<dyn Read + Send>,
    newlines: Arc<Newlines>,
    offset: u64,
    start: Arc<RecordStart>,
    max_record: u64,
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The CSV reader holds at most its buffer of bytes read but not
        // parsed, so beyond the record's start plus the budget plus that
        // buffer the record itself is over the budget.
        let pending = self.offset - self.start.0.load(Ordering::Relaxed);
        if pending > self.max_record + READ_BUF as u64 {
            return Err(record_too_big(self.max_record).into_io());
        }
        let n = self.inner.read(buf)?;
        self.newlines.note(self.offset, &buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }
}

/// The sniffer's first line is over `max_record_bytes` (it is the first
/// record, or longer than it).
pub fn first_line_too_big(limit: u64) -> io::Error {
    let mut e = record_too_big(limit);
    e.line = 1;
    e.into_io()
}

fn record_too_big(limit: u64) -> Exceeded {
    Exceeded::new(
        Limit::RecordBytes,
        limit,
        format!("a record of more than {limit} bytes"),
    )
}

/// The file's records as UTF-8 bytes (validated per field later), each
/// record's position naming the file line it starts on.
///
/// The CSV reader's own position is the line where it *started looking*
/// for the record: in a CRLF file the `\n` of the previous record's `\r\n`
/// is still unread there, and blank lines before a record are skipped
/// after it, so a record on line 4 says 3. The line is computed instead
/// from where the record *ended*: the `\n` bytes read so far, less those
/// inside its fields and its own terminating `\n`.
///
/// Every record and field is held to the import's budgets
/// (`max_record_bytes`, `max_field_bytes`): the one place they are
/// checked, whoever reads records.
pub struct Records {
    csv: csv::Reader<Box<dyn Read + Send>>,
    newlines: Arc<Newlines>,
    start: Arc<RecordStart>,
    /// The line the next record starts on (at least), for an error
    /// raised before that record is whole.
    next_line: u64,
    max_record: u64,
    max_field: u64,
}

impl Records {
    /// Records of `text`, read as `builder` says, within the default budgets.
    pub fn new(text: Box<dyn Read + Send>, builder: &csv::ReaderBuilder) -> Records {
        Records::with_limits(text, builder, &Limits::default())
    }

    /// Records of `text`, read as `builder` says, within `limits`.
    pub fn with_limits(
        text: Box<dyn Read + Send>,
        builder: &csv::ReaderBuilder,
        limits: &Limits,
    ) -> Records {
        let newlines = Arc::new(Newlines::new());
        let start = Arc::new(RecordStart(AtomicU64::new(0)));
        let tracked = Tracked {
            inner: text,
            newlines: newlines.clone(),
            offset: 0,
            start: start.clone(),
            max_record: limits.max_record_bytes,
        };
        let text: Box<dyn Read + Send> = Box::new(tracked);
        Records {
            csv: builder.from_reader(text),
            newlines,
            start,
            next_line: 1,
            max_record: limits.max_record_bytes,
            max_field: limits.max_field_bytes,
        }
    }

    /// The next record (false at the end); its position's line is the
    /// file line it starts on.
    pub fn read_byte_record(&mut self, record: &mut csv::ByteRecord) -> csv::Result<bool> {
        let got = self
            .csv
            .read_byte_record(record)
            .map_err(|e| self.located(e))?;
        if got {
            let line = self.start_line(record.as_slice());
            record.set_position(Some(position_at(record.position(), line)));
            self.within_budget(record.as_slice().len(), || record.iter(), line)?;
        }
        Ok(got)
    }

    /// [`Records::read_byte_record`] as text (the CSV reader checks UTF-8).
    pub fn read_record(&mut self, record: &mut csv::StringRecord) -> csv::Result<bool> {
        let got = self.csv.read_record(record).map_err(|e| self.located(e))?;
        if got {
            let line = self.start_line(record.as_slice().as_bytes());
            record.set_position(Some(position_at(record.position(), line)));
            let fields = || record.iter().map(str::as_bytes);
            self.within_budget(record.as_slice().len(), fields, line)?;
        }
        Ok(got)
    }

    /// Checks the record just read against the budgets, and notes where
    /// the next one starts. One comparison per record on the hot path: a
    /// field is never longer than its record.
    fn within_budget<'r, I: Iterator<Item = &'r [u8]>>(
        &mut self,
        len: usize,
        fields: impl FnOnce() -> I,
        line: u64,
    ) -> csv::Result<()> {
        let end = self.csv.position();
        self.start.0.store(end.byte(), Ordering::Relaxed);
        // As in `start_line`: a `\n` not read yet is the next line's start.
        let own = end.byte() > 0 && self.newlines.is_newline(end.byte() - 1);
        self.next_line = (end.line() + u64::from(!own)).max(line + 1);
        let len = len as u64;
        // The bytes of the fields, not counting delimiters and quotes:
        // the record's own length is checked with those while it is read.
        if len > self.max_record {
            return Err(self.at(record_too_big(self.max_record), line));
        }
        if len > self.max_field {
            if let Some((i, f)) = fields()
                .enumerate()
                .find(|(_, f)| f.len() as u64 > self.max_field)
            {
                let e = Exceeded::new(
                    Limit::FieldBytes,
                    self.max_field,
                    format!(
                        "field {} is {} bytes, more than {}",
                        i + 1,
                        f.len(),
                        self.max_field
                    ),
                );
                return Err(self.at(e, line));
            }
        }
        Ok(())
    }

    fn at(&self, mut e: Exceeded, line: u64) -> csv::Error {
        e.line = line;
        csv::Error::from(e.into_io())
    }

    /// A budget error raised under the CSV reader, given the line of the
    /// record it stopped.
    fn located(&self, e: csv::Error) -> csv::Error {
        match exceeded(&e) {
            Some(x) if x.line == 0 => self.at(x.clone(), self.next_line),
            _ => e,
        }
    }

    /// The line the record just read starts on.
    fn start_line(&self, fields: &[u8]) -> u64 {
        let end = self.csv.position();
        let inside = memchr::memchr_iter(b'\n', fields).count() as u64;
        let own = (end.byte() > 0 && self.newlines.is_newline(end.byte() - 1)) as u64;
        end.line().saturating_sub(inside + own).max(1)
    }
}

/// Opens `source` per the options. `read_bytes` counts bytes read from
/// disk; `hash`, when given, hashes them.
pub fn open(
    source: &Source,
    o: &ResolvedOptions,
    read_bytes: Arc<AtomicU64>,
    hash: Option<StreamHash>,
) -> io::Result<Records> {
    let raw = decompressed(source, &o.limits, read_bytes, hash)?;
    let text: Box<dyn Read + Send> = match o.encoding {
        // `auto` is decided before the file is opened (import::sniff).
        Encoding::Utf8 | Encoding::Auto => Box::new(skip_bom(raw)?),
        Encoding::Latin1 => Box::new(Decode::new(raw, Decoder::Latin1, READ_BUF)),
        Encoding::Windows1252 => Box::new(Decode::new(
            raw,
            Decoder::Other(encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling()),
            READ_BUF,
        )),
    };
    let text: Box<dyn Read + Send> = match &o.wide_delimiter {
        Some(d) => Box::new(wide::Wide::new(text, d, o.quoting.then_some(o.quote))),
        None => text,
    };
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false)
        .flexible(true)
        .delimiter(o.delimiter)
        .quoting(o.quoting)
        .quote(o.quote)
        .escape(o.escape)
        .comment(o.comment)
        .buffer_capacity(READ_BUF);
    Ok(Records::with_limits(text, &b, &o.limits))
}

/// `p` with its line replaced.
fn position_at(p: Option<&csv::Position>, line: u64) -> csv::Position {
    let mut p = p.cloned().unwrap_or_else(csv::Position::new);
    p.set_line(line);
    p
}

/// How a file is compressed, known by its name: `.gz` is gzip, `.zst`
/// zstd, under any name (`x.csv.gz`, `x.tsv.zst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Read as it is.
    None,
    /// gzip (several members read one after the other).
    Gzip,
    /// Zstandard (several frames read one after the other).
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// The file's compression, by its extension (any case).
pub fn compression(path: &Path) -> Compression {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("gz") => Compression::Gzip,
        Some(e) if e.eq_ignore_ascii_case("zst") => Compression::Zstd,
        _ => Compression::None,
    }
}

/// The decompressed stream of `r`. Its errors say what is wrong: a corrupt
/// or truncated `.csv.gz` reads "not a valid gzip file", not as a CSV
/// problem at some line (the same for zstd).
pub fn decompress<R: io::BufRead + Send + 'static>(
    c: Compression,
    r: R,
) -> io::Result<Box<dyn Read + Send>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(Named(flate2::read::MultiGzDecoder::new(r), c)),
        Compression::Zstd => Box::new(Named(
            zstd::stream::read::Decoder::with_buffer(r)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?,
            c,
        )),
    })
}

/// A decoder whose errors name the format.
struct Named<R>(R, Compression);

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a valid {} file: {e}", self.1.name()),
            )
        })
    }
}

/// For a compressed file, why it is not a valid stream (decompressed to
/// the end, checksums checked); `None` for a valid one or a plain file.
/// Called only when an import failed, so the happy path reads once.
/// It reads the source again (an object: a GET): call it off the runtime.
/// Within the decompression budgets: a bomb is not decompressed to its
/// end to judge it (over a budget, the stream is not the problem).
pub fn compression_problem(source: &Source, limits: &Limits) -> Option<String> {
    if source.compression() == Compression::None {
        return None;
    }
    let mut r = match decompressed(source, limits, Arc::new(AtomicU64::new(0)), None) {
        Ok(r) => r,
        Err(e) => return Some(e.to_string()),
    };
    io::copy(&mut r, &mut io::sink())
        .err()
        .filter(|e| exceeded_io(e).is_none())
        .map(|e| e.to_string())
}

/// Drops a leading UTF-8 byte order mark.
fn skip_bom<R: Read + Send + 'static>(mut r: R) -> io::Result<impl Read + Send> {
    let mut head = Vec::with_capacity(3);
    (&mut r).take(3).read_to_end(&mut head)?;
    if head == b"\xEF\xBB\xBF" {
        head.clear();
    }
    Ok(io::Cursor::new(head).chain(r))
}

#[cfg(test)]
mod tests;
