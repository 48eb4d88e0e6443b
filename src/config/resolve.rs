//! The options for one file: a `tables` entry merged over `defaults`, and
//! every default applied.

use std::collections::BTreeMap;

use super::characters::{single_byte, WIDE_DELIMITERS, WIDE_DELIMITER_BYTE};
use super::options::{
    ColumnPolicy, CreateTable, DateOrder, Encoding, ExtraColumns, Formats, HeaderOption,
    ImportOptions, LimitOptions, Mode, OnError, RaggedRows, Rejects, SkipLinesOption,
    MAX_TABLE_COLUMNS,
};
use super::table::{table_from_file_name, TableName};

/// The file pattern of a config that names none: every CSV file (and,
/// read transparently, its `.gz` / `.zst`).
pub(super) const DEFAULT_PATTERN: &str = "*.csv";

/// The options for one file with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedOptions {
    /// The pattern that matched.
    pub file_pattern: String,
    /// The target table.
    pub table: TableName,
    /// Key columns (empty: none).
    pub primary_key: Vec<String>,
    /// How rows reach the table.
    pub mode: Mode,
    /// Create a missing table from the header.
    pub create_table: bool,
    /// With `create_table`: infer the column types from the file.
    pub infer_types: bool,
    /// CSV header → target column.
    pub columns: BTreeMap<String, String>,
    /// The first line names the columns.
    pub header: bool,
    /// `header: auto`: decided per file (`import::shape`); until then
    /// `header` is true.
    pub header_auto: bool,
    /// Lines the header spans (`None`: one, or detected with `header_auto`).
    pub header_rows: Option<u64>,
    /// The file's width when `header: auto` found the header short of the
    /// rows below (a separator missing from it): the header is read as
    /// this many columns, the missing names `column_N`.
    pub header_width: Option<usize>,
    /// Field separator.
    pub delimiter: u8,
    /// `delimiter: auto`: chosen per file from its first line.
    pub delimiter_auto: bool,
    /// Lines dropped before the header.
    pub skip_lines: SkipLines,
    /// Lines starting with this byte are skipped.
    pub comment: Option<u8>,
    /// A delimiter of more than one byte (`, `, `; `): the reader rewrites
    /// it outside quotes to [`WIDE_DELIMITER_BYTE`] before the CSV parser
    /// sees the text.
    pub wide_delimiter: Option<Vec<u8>>,
    /// Quote character.
    pub quote: u8,
    /// Whether quotes are read at all (`quote: none`: every quote is data).
    pub quoting: bool,
    /// `quote: auto`: chosen per file with `delimiter: auto` (the sniffer).
    pub quote_auto: bool,
    /// Escape character (`None`: the quote doubled).
    pub escape: Option<u8>,
    /// Field values read as NULL.
    pub null: Vec<String>,
    /// Trim white space around every field.
    pub trim: bool,
    /// The file's encoding.
    pub encoding: Encoding,
    /// What a bad row does.
    pub on_error: OnError,
    /// With `skip_rows`, the most bad rows.
    pub max_errors: Option<u64>,
    /// A record of another width than the header.
    pub ragged_rows: RaggedRows,
    /// Where skipped rows go.
    pub rejects: Rejects,
    /// A file column the table lacks.
    pub extra_columns: ExtraColumns,
    /// A table column the file lacks.
    pub missing_columns: ColumnPolicy,
    /// The session's `DateStyle` order.
    pub date_order: DateOrder,
    /// Explicit date formats.
    pub date_format: Option<Formats>,
    /// Explicit timestamp formats.
    pub timestamp_format: Option<Formats>,
    /// `b'.'` or `b','`.
    pub decimal_separator: u8,
    /// Removed from numeric values before parsing.
    pub thousands_separator: Option<u8>,
    /// Read off numeric values before parsing.
    pub currency_symbols: Vec<String>,
    /// Extra spellings of true.
    pub true_values: Vec<String>,
    /// Extra spellings of false.
    pub false_values: Vec<String>,
    /// The checks that gate the commit (`validate` reports the ones that do not parse).
    pub checks: Vec<super::checks::Check>,
    /// The import's budgets.
    pub limits: Limits,
}

/// `skip_lines` resolved: a count, or `auto` until the file decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipLines {
    /// Drop this many lines.
    Lines(u64),
    /// Decided from the file's first lines (`import::preamble`).
    Auto,
}

/// The budgets of one import with every default applied (`limits:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `max_record_bytes`.
    pub max_record_bytes: u64,
    /// `max_field_bytes`.
    pub max_field_bytes: u64,
    /// `max_header_columns`.
    pub max_header_columns: u64,
    /// `max_decompressed_bytes`.
    pub max_decompressed_bytes: u64,
    /// `max_compression_ratio`.
    pub max_compression_ratio: u64,
}

impl Limits {
    /// Decompressed bytes below which the ratio is not judged: the first
    /// blocks of a small file can compress far better than the rest.
    pub const RATIO_FLOOR: u64 = 16 << 20;
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // Big enough for any sane record (a JSON document in a field),
            // small enough that one record never holds the memory hostage.
            max_record_bytes: 16 << 20,
            max_field_bytes: 8 << 20,
            max_header_columns: MAX_TABLE_COLUMNS,
            max_decompressed_bytes: 16 << 30,
            // Real CSV compresses 5-20x with gzip; zeros do 1000x.
            max_compression_ratio: 100,
        }
    }
}

fn limits(o: Option<&LimitOptions>) -> Limits {
    let d = Limits::default();
    let Some(o) = o else { return d };
    Limits {
        max_record_bytes: o.max_record_bytes.unwrap_or(d.max_record_bytes),
        max_field_bytes: o.max_field_bytes.unwrap_or(d.max_field_bytes),
        max_header_columns: o.max_header_columns.unwrap_or(d.max_header_columns),
        max_decompressed_bytes: o.max_decompressed_bytes.unwrap_or(d.max_decompressed_bytes),
        max_compression_ratio: o.max_compression_ratio.unwrap_or(d.max_compression_ratio),
    }
}

/// `entry`'s budgets over `defaults`', key by key.
fn merge_limits(d: Option<LimitOptions>, e: Option<LimitOptions>) -> Option<LimitOptions> {
    let (d, e) = match (d, e) {
        (d, None) => return d,
        (None, e) => return e,
        (Some(d), Some(e)) => (d, e),
    };
    Some(LimitOptions {
        max_record_bytes: e.max_record_bytes.or(d.max_record_bytes),
        max_field_bytes: e.max_field_bytes.or(d.max_field_bytes),
        max_header_columns: e.max_header_columns.or(d.max_header_columns),
        max_decompressed_bytes: e.max_decompressed_bytes.or(d.max_decompressed_bytes),
        max_compression_ratio: e.max_compression_ratio.or(d.max_compression_ratio),
    })
}

/// `entry` over `defaults`, key by key.
pub(super) fn merge(
    defaults: Option<&ImportOptions>,
    entry: Option<&ImportOptions>,
) -> ImportOptions {
    let d = defaults.cloned().unwrap_or_default();
    let Some(e) = entry.cloned() else { return d };
    ImportOptions {
        file_pattern: e.file_pattern.or(d.file_pattern),
        table: e.table.or(d.table),
        primary_key: e.primary_key.or(d.primary_key),
        mode: e.mode.or(d.mode),
        create_table: e.create_table.or(d.create_table),
        columns: e.columns.or(d.columns),
        header: e.header.or(d.header),
        header_rows: e.header_rows.or(d.header_rows),
        delimiter: e.delimiter.or(d.delimiter),
        skip_lines: e.skip_lines.or(d.skip_lines),
        comment: e.comment.or(d.comment),
        quote: e.quote.or(d.quote),
        escape: e.escape.or(d.escape),
        null: e.null.or(d.null),
        trim: e.trim.or(d.trim),
        encoding: e.encoding.or(d.encoding),
        on_error: e.on_error.or(d.on_error),
        max_errors: e.max_errors.or(d.max_errors),
        ragged_rows: e.ragged_rows.or(d.ragged_rows),
        rejects: e.rejects.or(d.rejects),
        extra_columns: e.extra_columns.or(d.extra_columns),
        missing_columns: e.missing_columns.or(d.missing_columns),
        date_order: e.date_order.or(d.date_order),
        date_format: e.date_format.or(d.date_format),
        timestamp_format: e.timestamp_format.or(d.timestamp_format),
        decimal_separator: e.decimal_separator.or(d.decimal_separator),
        thousands_separator: e.thousands_separator.or(d.thousands_separator),
        currency_symbols: e.currency_symbols.or(d.currency_symbols),
        true_values: e.true_values.or(d.true_values),
        false_values: e.false_values.or(d.false_values),
        // Added up, not overridden: a project's checks hold for every table.
        checks: match (d.checks, e.checks) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            (a, b) => b.or(a),
        },
        freshness: e.freshness.or(d.freshness),
        limits: merge_limits(d.limits, e.limits),
    }
}

pub(super) fn resolve(o: &ImportOptions, file_name: &str) -> ResolvedOptions {
    let mut ignored = Vec::new();
    let primary_key = o
        .primary_key
        .as_ref()
        .map(|k| k.to_vec())
        .unwrap_or_default();
    let table = o
        .table
        .as_deref()
        .and_then(|t| TableName::parse(t).ok())
        .unwrap_or_else(|| TableName {
            schema: None,
            name: table_from_file_name(file_name),
        });
    ResolvedOptions {
        file_pattern: o
            .file_pattern
            .clone()
            .unwrap_or_else(|| DEFAULT_PATTERN.into()),
        table,
        mode: o.mode.unwrap_or(if primary_key.is_empty() {
            Mode::Append
        } else {
            Mode::Upsert
        }),
        primary_key,
        create_table: !matches!(o.create_table, None | Some(CreateTable::Flag(false))),
        infer_types: matches!(o.create_table, Some(CreateTable::Infer(_))),
        columns: o.columns.clone().unwrap_or_default(),
        header: !matches!(o.header, Some(HeaderOption::Flag(false))),
        header_auto: match o.header {
            Some(HeaderOption::Auto(_)) => true,
            Some(HeaderOption::Flag(_)) => false,
            None => matches!(o.create_table, Some(CreateTable::Infer(_))),
        },
        header_rows: o.header_rows,
        header_width: None,
        delimiter: match o.delimiter.as_deref() {
            Some(d) if WIDE_DELIMITERS.contains(&d) => WIDE_DELIMITER_BYTE,
            _ => single_byte(&o.delimiter, "delimiter", "", &mut ignored).unwrap_or(b','),
        },
        wide_delimiter: o
            .delimiter
            .as_deref()
            .filter(|d| WIDE_DELIMITERS.contains(d))
            .map(|d| d.as_bytes().to_vec()),
        delimiter_auto: o.delimiter.as_deref() == Some("auto"),
        skip_lines: match o.skip_lines {
            None => SkipLines::Lines(0),
            Some(SkipLinesOption::Lines(n)) => SkipLines::Lines(n),
            Some(SkipLinesOption::Auto(_)) => SkipLines::Auto,
        },
        comment: single_byte(&o.comment, "comment", "", &mut ignored),
        quote: match o.quote.as_deref() {
            Some("auto" | "none") => b'"',
            _ => single_byte(&o.quote, "quote", "", &mut ignored).unwrap_or(b'"'),
        },
        quoting: o.quote.as_deref() != Some("none"),
        quote_auto: o.quote.as_deref() == Some("auto"),
        escape: single_byte(&o.escape, "escape", "", &mut ignored),
        null: o
            .null
            .as_ref()
            .map(|n| n.to_vec())
            .unwrap_or_else(|| vec![String::new()]),
        trim: o.trim.unwrap_or(false),
        encoding: o.encoding.unwrap_or(Encoding::Utf8),
        on_error: o.on_error.unwrap_or(OnError::Abort),
        max_errors: o.max_errors,
        ragged_rows: o.ragged_rows.unwrap_or(RaggedRows::Error),
        rejects: o.rejects.unwrap_or(Rejects::None),
        extra_columns: o.extra_columns.unwrap_or(ExtraColumns::Error),
        missing_columns: o.missing_columns.unwrap_or(ColumnPolicy::Ignore),
        date_order: o.date_order.unwrap_or(DateOrder::Mdy),
        date_format: o.date_format.clone(),
        timestamp_format: o.timestamp_format.clone(),
        decimal_separator: match o.decimal_separator.as_deref() {
            Some(",") => b',',
            _ => b'.',
        },
        thousands_separator: o
            .thousands_separator
            .as_deref()
            .filter(|t| t.len() == 1)
            .map(|t| t.as_bytes()[0]),
        currency_symbols: o.currency_symbols.clone().unwrap_or_default(),
        true_values: o.true_values.clone().unwrap_or_default(),
        false_values: o.false_values.clone().unwrap_or_default(),
        checks: o
            .checks
            .iter()
            .flatten()
            .filter_map(|c| c.parse("checks").ok())
            .collect(),
        limits: limits(o.limits.as_ref()),
    }
}
