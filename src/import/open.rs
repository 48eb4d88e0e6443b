//! Opening the file for one pass: the options decided from its bytes
//! (`encoding: auto`, `delimiter: auto`), its reader and header, the
//! counters and hash of the pass, and the file's sha256 at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::ResolvedOptions;
use crate::import::context::Ctx;
use crate::import::failure::Failure;
use crate::import::{header, mapping, pipeline, reader};

/// Why the file cannot be read as CSV: the file is rejected.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file (or its decompression) does not open.
    #[error("{file}: cannot open: {source}")]
    Open {
        /// The file's name.
        file: String,
        /// What opening it said.
        #[source]
        source: std::io::Error,
    },
    /// The compressed file is corrupt (its decompressor's verdict).
    #[error("{file}: {message}")]
    Compression {
        /// The file's name.
        file: String,
        /// The gzip or zstd verdict.
        message: String,
    },
    /// A record is not CSV as the options read it.
    #[error("{}", pipeline::csv_error(.file, .source))]
    Csv {
        /// The file's name.
        file: String,
        /// The CSV reader's error (it knows the line).
        #[source]
        source: csv::Error,
    },
    /// A header was expected and there is nothing.
    #[error("{file}: the file is empty (a header was expected)")]
    Empty {
        /// The file's name.
        file: String,
    },
    /// The header has more fields than a table may have columns; refused
    /// before any per-column work.
    #[error("{file}:{line}: the header has {found} columns, more than the {limit} of `limits.max_header_columns` (at most 1600, PostgreSQL's limit); no column of it is read")]
    HeaderTooWide {
        /// The file's name.
        file: String,
        /// The header's line.
        line: u64,
        /// How many fields the header has.
        found: usize,
        /// `limits.max_header_columns` (at most [`mapping::MAX_HEADER_COLUMNS`]).
        limit: usize,
    },
    /// The header's names are not UTF-8.
    #[error("{file}:1: the header is not valid UTF-8")]
    HeaderNotUtf8 {
        /// The file's name.
        file: String,
    },
}

/// The opened file and its first record(s).
pub(super) struct Opened {
    pub records: reader::Records,
    pub header: Option<Vec<String>>,
    /// The decisions taken opening it (`skip_lines: auto`, the header's
    /// names changed to be column names), for the job.
    pub notes: Vec<String>,
    pub first: Option<csv::ByteRecord>,
    pub width: usize,
}

/// Opens the file and reads its header (or, without one, its first
/// record, to know the width).
pub(super) fn open_file(
    source: &reader::Source,
    file: &str,
    o: &ResolvedOptions,
    bytes: Arc<AtomicU64>,
    hash: Option<reader::StreamHash>,
) -> Result<Opened, ReadError> {
    let csv_error = |e: csv::Error| {
        let problem = match reader::exceeded(&e) {
            Some(_) => None,
            None => reader::compression_problem(source, &o.limits),
        };
        match problem {
            Some(message) => ReadError::Compression {
                file: file.to_string(),
                message,
            },
            None => ReadError::Csv {
                file: file.to_string(),
                source: e,
            },
        }
    };
    // An `auto` left undecided (import::shape decides them) reads as the
    // default: nothing skipped, one header line.
    let skip = match o.skip_lines {
        crate::config::SkipLines::Lines(n) => n,
        crate::config::SkipLines::Auto => 0,
    };
    let mut records = reader::open(source, o, bytes, hash).map_err(|source| ReadError::Open {
        file: file.to_string(),
        source,
    })?;
    let mut first = csv::ByteRecord::new();
    let mut got = records.read_byte_record(&mut first).map_err(csv_error)?;
    // `skip_lines`: the records that start on the lines dropped.
    while got && first.position().map_or(0, |p| p.line()) <= skip {
        got = records.read_byte_record(&mut first).map_err(csv_error)?;
    }
    if !o.header {
        let width = if got { first.len() } else { 0 };
        return Ok(Opened {
            records,
            header: None,
            notes: Vec::new(),
            first: got.then_some(first),
            width,
        });
    }
    if !got {
        return Err(ReadError::Empty {
            file: file.to_string(),
        });
    }
    let limit = (o.limits.max_header_columns as usize).min(mapping::MAX_HEADER_COLUMNS);
    if first.len() > limit {
        return Err(ReadError::HeaderTooWide {
            file: file.to_string(),
            line: first.position().map_or(1, |p| p.line()),
            found: first.len(),
            limit,
        });
    }
    let mut header = header_names(&first, file)?;
    // `header_rows`: each column's name is its non-empty parts joined.
    for _ in 1..o.header_rows.unwrap_or(1) {
        if !records.read_byte_record(&mut first).map_err(csv_error)? {
            break;
        }
        let more = header_names(&first, file)?;
        if more.len() > limit {
            return Err(ReadError::HeaderTooWide {
                file: file.to_string(),
                line: first.position().map_or(1, |p| p.line()),
                found: more.len(),
                limit,
            });
        }
        header.resize(header.len().max(more.len()), String::new());
        for (h, m) in header.iter_mut().zip(more) {
            if !m.is_empty() {
                if !h.is_empty() {
                    h.push('_');
                }
                h.push_str(&m);
            }
        }
    }
    // `header: auto` read the header at the rows' width: names added
    // (`column_N`), or empty trailing ones dropped.
    if let Some(w) = o.header_width {
        if header.iter().skip(w).all(String::is_empty) {
            header.resize(w, String::new());
        }
    }
    let width = header.len();
    let named = header::column_names(&header, &o.columns);
    Ok(Opened {
        records,
        header: Some(named.names),
        notes: named.notes,
        first: None,
        width,
    })
}

/// One header record's names, trimmed (blanks around a name are never
/// meant).
fn header_names(record: &csv::ByteRecord, file: &str) -> Result<Vec<String>, ReadError> {
    record
        .iter()
        .map(|f| {
            std::str::from_utf8(f)
                .map(|n| n.trim().to_string())
                .map_err(|_| ReadError::HeaderNotUtf8 {
                    file: file.to_string(),
                })
        })
        .collect()
}

/// Byte and row counters shared with the parser thread, and the hash it
/// computes while reading (when the sha256 is not known yet).
pub(super) struct Stream {
    pub bytes: Arc<AtomicU64>,
    pub rows: Arc<AtomicU64>,
    pub hash: Option<reader::StreamHash>,
}

/// `encoding: auto` and `delimiter: auto` decided from the file (one extra
/// pass for the encoding), each decision logged and noted for the job.
pub(super) async fn auto_options(
    ctx: &Ctx,
    notes: &mut Vec<String>,
) -> Result<Option<Ctx>, Failure> {
    let o = &ctx.opts;
    let auto_encoding = o.encoding == crate::config::Encoding::Auto;
    if !auto_encoding && !o.delimiter_auto {
        return Ok(None);
    }
    let (p, limits) = (ctx.source.clone(), o.limits);
    let s = tokio::task::spawn_blocking(move || {
        crate::import::sniff::sniff(&p, auto_encoding, &limits)
    })
    .await
    .map_err(|e| Failure::bad(e.to_string()))?
    .map_err(|e| match reader::exceeded_io(&e) {
        Some(x) => Failure::bad(format!("{}:{}: {x}", ctx.file, x.line)),
        None => Failure::bad(format!("{}: cannot read: {e}", ctx.file)),
    })?;
    let (opts, why) = crate::import::sniff::decide(&s, o);
    for n in why {
        let note = format!("{}: {n}", ctx.file);
        tracing::info!(file = %ctx.file, decision = %note, "sniff");
        notes.push(note);
    }
    let mut c = ctx.clone();
    c.opts = opts;
    Ok(Some(c))
}

/// The counters (and hash) of a new pass over the file.
pub(super) fn new_stream(ctx: &Ctx) -> Stream {
    Stream {
        bytes: Arc::new(AtomicU64::new(0)),
        rows: Arc::new(AtomicU64::new(0)),
        hash: ctx.sha256.is_none().then(reader::new_stream_hash),
    }
}

/// Opens the file and reads its header (or first record), off the runtime.
pub(super) async fn open(ctx: &Ctx, stream: &Stream) -> Result<Opened, Failure> {
    let (p, f, o, b, h) = (
        ctx.source.clone(),
        ctx.file.clone(),
        ctx.opts.clone(),
        stream.bytes.clone(),
        stream.hash.clone(),
    );
    tokio::task::spawn_blocking(move || open_file(&p, &f, &o, b, h))
        .await
        .map_err(|e| Failure::bad(e.to_string()))?
        .map_err(|e| Failure::bad(e.to_string()))
}

/// The file's sha256: known before, computed while streaming, or (when the
/// parser stopped short of the end, a gzip trailer say) computed anew; with
/// how many bytes that hash covered, when it was computed here.
pub(super) async fn file_sha256(
    ctx: &Ctx,
    stream: &Stream,
) -> Result<(String, Option<u64>), Failure> {
    let file = ctx.file.as_str();
    match (&ctx.sha256, &stream.hash) {
        (Some(sha), _) => Ok((sha.clone(), None)),
        (None, Some(h)) if stream.bytes.load(Ordering::Relaxed) == ctx.size => Ok((
            reader::finish_stream_hash(h).unwrap_or_default(),
            Some(ctx.size),
        )),
        _ => {
            let p = ctx.source.clone();
            let (sha, n) = tokio::task::spawn_blocking(move || reader::hash(&p))
                .await
                .map_err(|e| Failure::bad(format!("{file}: {e}")))?
                .map_err(|e| Failure::bad(format!("{file}: cannot read: {e}")))?;
            Ok((sha, Some(n)))
        }
    }
}

/// Why the file is not the one the job started with, if it is not: more
/// bytes `read` or `hashed` than its size then, or its size or mtime differ
/// now. A producer still writing it: what was loaded is not the file, and
/// the job's size and hash would disagree.
pub(super) fn changed(ctx: &Ctx, read: u64, hashed: Option<u64>) -> Option<String> {
    let size = ctx.size;
    let what = |now: String| Some(changed_message(&ctx.file, &now, size));
    if let Some(n) = hashed.filter(|n| *n != size) {
        return what(format!("{n} bytes hashed"));
    }
    if read > size {
        return what(format!("{read} bytes read"));
    }
    let reader::Source::File(p) = &ctx.source else {
        // An object does not change under its ETag.
        return None;
    };
    // A file removed meanwhile was read whole through its open handle.
    let m = std::fs::metadata(p).ok()?;
    if m.len() != size {
        return what(format!("{} bytes now", m.len()));
    }
    if m.modified().ok() != ctx.modified {
        return what("modified since, at the same size".into());
    }
    None
}

/// The error of a file that changed during its import: `now` says how.
pub(super) fn changed_message(file: &str, now: &str, size: u64) -> String {
    format!(
        "{file}: the file changed during its import ({now}; {size} bytes when it started): \
         nothing was loaded; the daemon tries it again later (with `cpi import`, run it again once the file is complete)"
    )
}
