//! CSV records → COPY data buffers. Runs on its own thread: parsing and
//! encoding take one core while the server ingests on the other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::config::OnError;
use crate::import::dialect::Dialect;
use crate::import::encode::{self, ColumnSpec, CopyFormat, ValueError};
use crate::import::ragged;
use crate::import::reader::Records;

/// Bytes of COPY data per message to the server.
pub const CHUNK: usize = 512 * 1024;

/// At most this many row errors are kept in `error_details`; the rest are
/// only counted (memory stays flat whatever the file).
pub const MAX_ERROR_DETAILS: usize = 1000;

/// One refused row (or value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RowError {
    /// The file line of the row.
    pub line: u64,
    /// The column, for a value error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The refused value (shortened), for a value error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The whole message: `orders_07.csv:1532: column "amount": "12,5" is not a valid numeric`.
    pub message: String,
}

impl RowError {
    /// A value refused for its column.
    pub fn value(file: &str, line: u64, column: &str, raw: &[u8], e: &ValueError) -> RowError {
        let shown = encode::show_value(raw);
        RowError {
            line,
            column: Some(column.to_string()),
            value: Some(encode::show_value(raw).trim_matches('"').to_string()),
            message: format!(
                "{file}:{line}: column {}: {}",
                crate::config::quote_ident(column),
                e.message(&shown)
            ),
        }
    }

    /// A row refused as a whole (`what` says why).
    pub fn row(file: &str, line: u64, what: String) -> RowError {
        RowError {
            line,
            column: None,
            value: None,
            message: format!("{file}:{line}: {what}"),
        }
    }
}

/// COPY row number → file line, stored only where the difference changes
/// (multi-line fields, skipped rows), so it stays small.
#[derive(Debug, Default, Clone)]
pub struct LineMap {
    steps: Vec<(u64, u64)>,
}

impl LineMap {
    fn record(&mut self, row: u64, line: u64) {
        let off = line - row;
        if self.steps.last().is_none_or(|&(r, l)| l - r != off) {
            self.steps.push((row, line));
        }
    }

    /// The file line of COPY row `row` (1-based).
    pub fn line_of(&self, row: u64) -> Option<u64> {
        let i = self.steps.partition_point(|&(r, _)| r <= row);
        let (r, l) = *self.steps.get(i.checked_sub(1)?)?;
        Some(l + (row - r))
    }
}

/// What the producer tells the importer at the end.
#[derive(Debug, Default)]
pub struct Summary {
    /// Records parsed.
    pub rows_read: u64,
    /// Rows sent to COPY.
    pub rows_loaded: u64,
    /// Records skipped as bad.
    pub rows_rejected: u64,
    /// The first [`MAX_ERROR_DETAILS`] errors.
    pub errors: Vec<RowError>,
    /// How many errors in all (more than `errors` holds).
    pub errors_total: u64,
    /// Every skipped row, with `rejects: table`.
    pub rejects: Vec<crate::import::rejects::Rejected>,
    /// Rows loaded with fewer fields than the header, padded with NULL.
    pub rows_padded: u64,
    /// Rows loaded with more fields than the header, the extra dropped.
    pub rows_truncated: u64,
    /// Why the file as a whole is refused (abort on a bad row, too many
    /// bad rows, unreadable file). Nothing may be committed.
    pub fatal: Option<String>,
    /// COPY row → file line, to name lines in server errors.
    pub lines: LineMap,
    /// Every key of the loaded rows is distinct, known because the keys
    /// came strictly ascending (or descending): the merge can skip
    /// `DISTINCT ON` and its sort. `false` means "not known".
    pub keys_unique: bool,
    /// A binary COPY met a value only the server can judge (`Jan 1 2000`
    /// for a date): the message says where; the file is sent again as text.
    pub needs_server: Option<String>,
    /// `fatal` is a budget of the import exceeded (`limits:`), not a
    /// broken stream: the compressed file is not decompressed again to
    /// judge it.
    pub over_budget: bool,
}

/// Proves keys distinct without remembering them: a file sorted by its key
/// (the usual export) has strictly monotonic keys. Compares an encoding
/// whose byte order is a total order where equal values encode equally
/// (sign-flipped big-endian integers and times, raw uuid bytes, text bytes
/// NUL-terminated); other key types are not tracked.
struct KeyOrder {
    /// Indexes into `Spec::fields`.
    positions: Vec<usize>,
    last: Vec<u8>,
    cur: Vec<u8>,
    first: bool,
    direction: Option<std::cmp::Ordering>,
    unique: bool,
}

impl KeyOrder {
    fn new(spec: &Spec) -> Option<KeyOrder> {
        if spec.format != CopyFormat::Binary || spec.key_fields.is_empty() {
            return None;
        }
        let trackable = spec.key_fields.iter().all(|&p| {
            use crate::import::encode::ColType::*;
            matches!(
                spec.fields[p].1.ty,
                Int2 | Int4
                    | Int8
                    | Date
                    | Timestamp
                    | Timestamptz
                    | Uuid
                    | Text
                    | Varchar
                    | Bpchar
            )
        });
        trackable.then(|| KeyOrder {
            positions: spec.key_fields.clone(),
            last: Vec::new(),
            cur: Vec::new(),
            first: true,
            direction: None,
            unique: true,
        })
    }

    /// `offsets[i]` is where field i of the row starts in `buf`; the last
    /// entry is the row's end.
    fn push(&mut self, spec: &Spec, buf: &[u8], offsets: &[usize]) {
        use crate::import::encode::ColType::*;
        if !self.unique {
            return;
        }
        self.cur.clear();
        for &p in &self.positions {
            let field = &buf[offsets[p]..offsets[p + 1]];
            // A binary field is its length, then its bytes; -1 is NULL.
            let Some(payload) = field.get(4..) else {
                self.unique = false;
                return;
            };
            if field[..4] == [0xff; 4] {
                self.unique = false;
                return;
            }
            match spec.fields[p].1.ty {
                Int2 | Int4 | Int8 | Date | Timestamp | Timestamptz => {
                    self.cur.push(payload[0] ^ 0x80);
                    self.cur.extend_from_slice(&payload[1..]);
                }
                Uuid => self.cur.extend_from_slice(payload),
                Bpchar => {
                    let end = payload
                        .iter()
                        .rposition(|b| *b != b' ')
                        .map_or(0, |i| i + 1);
                    self.cur.extend_from_slice(&payload[..end]);
                    self.cur.push(0);
                }
                _ => {
                    self.cur.extend_from_slice(payload);
                    self.cur.push(0);
                }
            }
        }
        if !self.first {
            let ord = self.cur.cmp(&self.last);
            match (ord, self.direction) {
                (std::cmp::Ordering::Equal, _) => self.unique = false,
                (o, None) => self.direction = Some(o),
                (o, Some(d)) if o != d => self.unique = false,
                _ => {}
            }
        }
        self.first = false;
        std::mem::swap(&mut self.cur, &mut self.last);
    }
}

/// What [`produce`] needs to turn records into COPY buffers.
pub struct Spec {
    /// The file's name, for messages.
    pub file: String,
    /// Binary or text COPY.
    pub format: CopyFormat,
    /// (field index, target column), in COPY column order.
    pub fields: Vec<(usize, ColumnSpec)>,
    /// Fields per record the file must have.
    pub width: usize,
    /// Values read as NULL.
    pub nulls: Vec<String>,
    /// Trim blanks around values.
    pub trim: bool,
    /// What a bad row does.
    pub on_error: OnError,
    /// How many bad rows `skip_rows` tolerates.
    pub max_errors: Option<u64>,
    /// What a record of another width does.
    pub ragged: crate::config::RaggedRows,
    /// `rejects: table`: keep every skipped row, written back with this
    /// delimiter and quote.
    pub keep_rejects: Option<(Vec<u8>, u8)>,
    /// Append the row sequence as the last column (staging tables).
    pub row_number: bool,
    /// The first data record was already read (to size a header-less file).
    pub first: Option<csv::ByteRecord>,
    /// Indexes into `fields` of the key columns (to detect a file without
    /// duplicate keys).
    pub key_fields: Vec<usize>,
    /// Each field's value dialect (same order as `fields`; empty: none).
    pub dialects: Vec<Option<Dialect>>,
    /// Rows the server refused on an earlier pass (`skip_rows`): file line
    /// → the error, counted as a bad row instead of being sent again.
    pub refused: std::collections::BTreeMap<u64, RowError>,
}

/// Whether `v` is a value (a number, date, time, boolean…), not a name.
fn is_value(v: &str) -> bool {
    crate::import::infer::value_type(v) != crate::import::infer::Inferred::Text
}

/// Reads every record, sends full buffers to `sink` (which answers false
/// when the receiver is gone), and returns the summary. `rows` is updated
/// as it goes, for progress.
pub fn produce(
    mut records: Records,
    spec: Spec,
    mut sink: impl FnMut(Vec<u8>) -> bool,
    rows: Arc<AtomicU64>,
) -> Summary {
    let mut s = Summary::default();
    let mut buf = Vec::with_capacity(CHUNK + 64 * 1024);
    if spec.format == CopyFormat::Binary {
        buf.extend_from_slice(encode::BINARY_HEADER);
    }
    let ncols = (spec.fields.len() + spec.row_number as usize) as i16;
    let mut record = csv::ByteRecord::new();
    let mut pending = spec.first.clone();
    let mut row_errors: Vec<RowError> = Vec::new();
    let mut offsets: Vec<usize> = Vec::with_capacity(spec.fields.len() + 1);
    let mut keys = KeyOrder::new(&spec);
    // The line of a second table's header, once one is met.
    let mut second: Option<u64> = None;
    let rescue = spec.ragged == crate::config::RaggedRows::Rescue;
    loop {
        let line = match pending.take() {
            Some(r) => {
                record = r;
                record.position().map_or(0, |p| p.line())
            }
            None => match records.read_byte_record(&mut record) {
                Ok(true) => record.position().map_or(0, |p| p.line()),
                Ok(false) => break,
                Err(e) => {
                    s.over_budget = crate::import::reader::exceeded(&e).is_some();
                    s.fatal = Some(csv_error(&spec.file, &e));
                    return s;
                }
            },
        };
        s.rows_read += 1;
        let start = buf.len();
        row_errors.clear();
        if second.is_none()
            && s.rows_read > 1
            && record.len() != spec.width
            && ragged::second_header(record.iter(), spec.width, is_value)
        {
            second = Some(line);
        }
        if let Some(e) = spec.refused.get(&line) {
            row_errors.push(e.clone());
        } else if let Some(at) = second.filter(|_| !rescue) {
            row_errors.push(RowError::row(
                &spec.file,
                line,
                ragged::second_table_error(at, line),
            ));
        } else if let Err(why) = ragged::fits(record.len(), spec.width, spec.ragged) {
            row_errors.push(RowError::row(&spec.file, line, why.to_string()));
        } else {
            if spec.format == CopyFormat::Binary {
                buf.extend_from_slice(&ncols.to_be_bytes());
            }
            offsets.clear();
            for (n, (fi, col)) in spec.fields.iter().enumerate() {
                if spec.format == CopyFormat::Text && n > 0 {
                    buf.push(b'\t');
                }
                offsets.push(buf.len());
                let dialect = spec.dialects.get(n).and_then(Option::as_ref);
                // A field a padded row lacks is NULL.
                let value = ragged::field(&record, *fi, spec.width, second);
                let put = match value.as_deref() {
                    Some(raw) => put_field(&mut buf, &spec, col, dialect, raw),
                    None if col.not_null => Err(ValueError::NotNull),
                    None => {
                        encode::put_null(&mut buf, spec.format);
                        Ok(())
                    }
                };
                let raw = value.as_deref().unwrap_or_default();
                if let Err(e) = put {
                    if spec.format == CopyFormat::Binary && server_may_accept(col, dialect, &e) {
                        s.needs_server = Some(format!(
                            "{}:{line}: column {}: {} is not a form cpi reads itself, so the file goes to the server's {} parser (text COPY)",
                            spec.file,
                            crate::config::quote_ident(&col.name),
                            encode::show_value(raw),
                            col.ty.label()
                        ));
                        return s;
                    }
                    row_errors.push(RowError::value(&spec.file, line, &col.name, raw, &e));
                }
            }
            if spec.row_number {
                let seq = (s.rows_loaded + 1) as i64;
                match spec.format {
                    CopyFormat::Binary => {
                        buf.extend_from_slice(&8i32.to_be_bytes());
                        buf.extend_from_slice(&seq.to_be_bytes());
                    }
                    CopyFormat::Text => {
                        buf.push(b'\t');
                        buf.extend_from_slice(seq.to_string().as_bytes());
                    }
                }
            }
            if spec.format == CopyFormat::Text {
                buf.push(b'\n');
            }
        }
        if !row_errors.is_empty() {
            buf.truncate(start);
            s.rows_rejected += 1;
            if let Some((d, q)) = &spec.keep_rejects {
                s.rejects.push(crate::import::rejects::Rejected {
                    line,
                    raw: crate::import::rejects::raw_text(record.iter(), d, *q),
                    error: row_errors[0].message.clone(),
                });
            }
            for e in row_errors.drain(..) {
                s.errors_total += 1;
                if s.errors.len() < MAX_ERROR_DETAILS {
                    s.errors.push(e);
                }
            }
            match spec.on_error {
                OnError::Abort => {
                    s.fatal = Some(s.errors[0].message.clone());
                    return s;
                }
                OnError::SkipRows => {
                    if spec.max_errors.is_some_and(|m| s.rows_rejected > m) {
                        s.fatal = Some(format!(
                            "{}: more than {} bad rows (max_errors), the file is rejected",
                            spec.file,
                            spec.max_errors.unwrap_or(0)
                        ));
                        return s;
                    }
                }
            }
        } else {
            s.rows_loaded += 1;
            match record.len().cmp(&spec.width) {
                std::cmp::Ordering::Less => s.rows_padded += 1,
                std::cmp::Ordering::Greater => s.rows_truncated += 1,
                std::cmp::Ordering::Equal => {}
            }
            s.lines.record(s.rows_loaded, line);
            if let Some(k) = keys.as_mut() {
                offsets.push(buf.len());
                k.push(&spec, &buf, &offsets);
            }
        }
        if s.rows_read % 1024 == 0 {
            rows.store(s.rows_read, Ordering::Relaxed);
        }
        if buf.len() >= CHUNK {
            let full = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK + 64 * 1024));
            if !sink(full) {
                s.fatal = Some("the import was stopped".into());
                return s;
            }
        }
    }
    rows.store(s.rows_read, Ordering::Relaxed);
    s.keys_unique = keys.is_some_and(|k| k.unique);
    if spec.format == CopyFormat::Binary {
        buf.extend_from_slice(encode::BINARY_TRAILER);
    }
    if !buf.is_empty() && !sink(buf) {
        s.fatal = Some("the import was stopped".into());
    }
    s
}

/// Whether the server's input function may accept a value cpi's fast
/// parser refused (PostgreSQL's acceptance is the floor); not when the
/// operator gave an explicit format.
fn server_may_accept(col: &ColumnSpec, dialect: Option<&Dialect>, e: &ValueError) -> bool {
    col.ty.server_parses_more()
        && matches!(e, ValueError::Invalid(_))
        && !matches!(dialect, Some(Dialect::Date(_) | Dialect::Timestamp(_)))
}

fn put_field(
    buf: &mut Vec<u8>,
    spec: &Spec,
    col: &ColumnSpec,
    dialect: Option<&Dialect>,
    raw: &[u8],
) -> Result<(), ValueError> {
    let text = std::str::from_utf8(raw).map_err(|_| ValueError::BadUtf8)?;
    let text = if spec.trim { text.trim() } else { text };
    if spec.nulls.iter().any(|n| n == text) {
        if col.not_null {
            return Err(ValueError::NotNull);
        }
        encode::put_null(buf, spec.format);
        return Ok(());
    }
    let text = match dialect {
        None => std::borrow::Cow::Borrowed(text),
        Some(d) => d.rewrite(text)?,
    };
    let start = buf.len();
    match encode::put_value(buf, spec.format, col, &text) {
        Err(e) if spec.format == CopyFormat::Text && server_may_accept(col, dialect, &e) => {
            // The server's parser decides; its error names the COPY line,
            // mapped back to the file line.
            buf.truncate(start);
            encode::put_text_escaped(buf, &text);
            Ok(())
        }
        r => r,
    }
}

/// A CSV reader error as a message naming the file and line.
pub fn csv_error(file: &str, e: &csv::Error) -> String {
    if let Some(x) = crate::import::reader::exceeded(e) {
        return format!("{file}:{}: {x}", x.line);
    }
    match e.position() {
        Some(p) => format!("{file}:{}: cannot read the CSV: {e}", p.line()),
        None => format!("{file}: cannot read the CSV: {e}"),
    }
}

#[cfg(test)]
mod tests;
