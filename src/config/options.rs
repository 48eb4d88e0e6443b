//! The import options as a config writes them (`defaults` and each
//! `tables` entry), every field optional, and the words they take.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::column_names::OneOrMany;

/// How a file's rows reach its table.
// Also `cpi_import_jobs.mode`, a TEXT column bound and read as this enum.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
    sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Mode {
    /// Insert every row.
    Append,
    /// Insert new keys, update existing ones.
    Upsert,
    /// Make the table the file's rows.
    Replace,
    /// Upsert, then delete the keys the file does not have.
    Sync,
}

impl Mode {
    /// The mode as written in a config.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Append => "append",
            Mode::Upsert => "upsert",
            Mode::Replace => "replace",
            Mode::Sync => "sync",
        }
    }
}

/// The character encoding of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Encoding {
    /// UTF-8 (a BOM is skipped).
    #[serde(rename = "utf-8", alias = "utf8", alias = "UTF-8")]
    Utf8,
    /// ISO-8859-1.
    #[serde(rename = "latin1", alias = "iso-8859-1")]
    Latin1,
    /// Windows-1252.
    #[serde(rename = "windows-1252", alias = "cp1252")]
    Windows1252,
    /// Decided per file: a UTF-8 BOM or valid UTF-8 throughout is UTF-8,
    /// else windows-1252 (the decision is written to the job).
    #[serde(rename = "auto")]
    Auto,
}

/// What a bad row does to its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Reject the whole file.
    Abort,
    /// Skip the row and report it (up to `max_errors`).
    SkipRows,
}

/// What a record with more or fewer fields than the header does
/// (`ragged_rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RaggedRows {
    /// A row error (`expected 5 fields, found 4`), as `on_error` says.
    Error,
    /// A short row's missing fields are NULL; a long row is an error.
    Pad,
    /// A long row's extra fields are dropped, a short row padded.
    Truncate,
    /// Every row is loaded, padded as `pad` does; what did not fit goes
    /// to a `_rescued jsonb` column (`{"extra": [...]}`, or
    /// `{"missing": N}` for a short row), added to the table when needed.
    Rescue,
}

impl RaggedRows {
    /// The option's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RaggedRows::Error => "error",
            RaggedRows::Pad => "pad",
            RaggedRows::Truncate => "truncate",
            RaggedRows::Rescue => "rescue",
        }
    }
}

/// Where skipped rows go besides the job's first errors (`rejects`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rejects {
    /// Only counted (and the first errors kept on the job).
    None,
    /// Every skipped row into `cpi.rejected_rows` in the target, in the
    /// import's transaction.
    Table,
}

/// What a column the file and the table do not share does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnPolicy {
    /// Reject the file.
    Error,
    /// Leave the column out.
    Ignore,
}

/// What a file column the table lacks does (`extra_columns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExtraColumns {
    /// Reject the file.
    Error,
    /// Leave the column out.
    Ignore,
    /// Add it to the table (`ALTER TABLE … ADD COLUMN`, its type inferred
    /// from the file) in the import's transaction, then load it.
    Add,
}

impl ExtraColumns {
    /// The option's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtraColumns::Error => "error",
            ExtraColumns::Ignore => "ignore",
            ExtraColumns::Add => "add",
        }
    }
}

/// `create_table`: `true`, `false` or `infer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum CreateTable {
    /// `true`: every column `text`; `false`: never create.
    Flag(bool),
    /// `infer`: typed columns chosen from the file's values.
    Infer(InferWord),
}

/// The word `infer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum InferWord {
    /// Types from the file's values.
    #[serde(rename = "infer")]
    Infer,
}

/// `skip_lines`: how many lines above the header to drop, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum SkipLinesOption {
    /// Drop this many lines (a preamble of known length).
    Lines(u64),
    /// `auto`: the lines before the first line from which the field counts
    /// are consistent.
    Auto(AutoWord),
}

/// `header`: `true`, `false` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum HeaderOption {
    /// `true`: the first line (after `skip_lines`) names the columns;
    /// `false`: it is data.
    Flag(bool),
    /// `auto`: decided per file from the types of the first rows against
    /// the rows below (the decision is on the job).
    Auto(AutoWord),
}

/// The word `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AutoWord {
    /// Decided per file from its first lines.
    #[serde(rename = "auto")]
    Auto,
}

/// How PostgreSQL reads an all-digit date like `01/02/2024` (its `DateStyle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum DateOrder {
    /// Month, day, year (PostgreSQL's default): `01/02/2024` is January 2.
    #[serde(rename = "MDY")]
    Mdy,
    /// Day, month, year: `01/02/2024` is February 1.
    #[serde(rename = "DMY")]
    Dmy,
    /// Year, month, day.
    #[serde(rename = "YMD")]
    Ymd,
}

impl DateOrder {
    /// The option's spelling, also the `DateStyle` order.
    pub fn as_str(self) -> &'static str {
        match self {
            DateOrder::Mdy => "MDY",
            DateOrder::Dmy => "DMY",
            DateOrder::Ymd => "YMD",
        }
    }
}

/// One strftime-like format for every column of the type, or one per column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Formats {
    /// Every column of the type (e.g. `"%d.%m.%Y"`).
    All(String),
    /// Column name → format; other columns as usual.
    PerColumn(BTreeMap<String, String>),
}

impl Formats {
    /// The format for `column`, if any.
    pub fn for_column(&self, column: &str) -> Option<&str> {
        match self {
            Formats::All(f) => Some(f),
            Formats::PerColumn(m) => m
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(column))
                .map(|(_, f)| f.as_str()),
        }
    }

    /// Every format given.
    pub(super) fn each(&self) -> Vec<&str> {
        match self {
            Formats::All(f) => vec![f],
            Formats::PerColumn(m) => m.values().map(String::as_str).collect(),
        }
    }
}

/// Import options, valid in `defaults` and in each `tables` entry.
// Every `Option` field is left out of the output when `None`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ImportOptions {
    /// Glob of the files these options apply to (default `*.csv`).
    pub file_pattern: Option<String>,
    /// Target table, `table` or `schema.table` (default from the file name).
    pub table: Option<String>,
    /// Key column(s), required by `upsert` and `sync`.
    pub primary_key: Option<OneOrMany>,
    /// `append`, `upsert`, `replace` or `sync` (default `upsert` with a primary_key, else `append`).
    pub mode: Option<Mode>,
    /// Create the table when it does not exist: `true` (every column
    /// `text`) or `infer` (types chosen from the whole file's values).
    pub create_table: Option<CreateTable>,
    /// CSV header → target column.
    pub columns: Option<BTreeMap<String, String>>,
    /// Whether the first line names the columns: `true`, `false` or `auto`
    /// (default `auto` with `create_table: infer`, else `true`).
    pub header: Option<HeaderOption>,
    /// Lines the header spans (default 1; with `header: auto`, detected):
    /// each column's name is its non-empty parts joined with `_`.
    pub header_rows: Option<u64>,
    /// Field separator, one ASCII character (default `,`), `, `, `; ` or
    /// `| `, or `auto` (chosen among those over the file's first 64 KiB by
    /// the consistency of the rows' field counts and values).
    pub delimiter: Option<String>,
    /// Lines to drop before the header (a preamble): a number (default 0),
    /// or `auto` (every line before the first one from which the field
    /// counts are consistent; the decision is on the job).
    pub skip_lines: Option<SkipLinesOption>,
    /// A line starting with this character (one ASCII character, e.g.
    /// `#`) is a comment, skipped wherever it is (default: none).
    pub comment: Option<String>,
    /// Quote character, one ASCII character (default `"`), `none` (quotes
    /// are data), or `auto` (with `delimiter: auto`: `"`, `'` or none).
    pub quote: Option<String>,
    /// Escape character inside quotes (default: the quote doubled).
    pub escape: Option<String>,
    /// Field value(s) read as NULL (default the empty field).
    pub null: Option<OneOrMany>,
    /// Trim white space around every field before it is read (default false).
    pub trim: Option<bool>,
    /// `utf-8` (default), `latin1` or `windows-1252`.
    pub encoding: Option<Encoding>,
    /// `abort` (default) or `skip_rows`.
    pub on_error: Option<OnError>,
    /// A record with more or fewer fields than the header: `error`
    /// (default), `pad` (missing fields NULL), `truncate` (extra fields
    /// dropped, missing ones NULL) or `rescue` (as truncate, what did not
    /// fit kept in a `_rescued jsonb` column). The rows changed are
    /// counted on the job.
    pub ragged_rows: Option<RaggedRows>,
    /// With `skip_rows`: `none` (default) or `table` (every skipped row,
    /// its line, text and error, into `cpi.rejected_rows` in the target).
    pub rejects: Option<Rejects>,
    /// With `skip_rows`: the most bad rows before the file is rejected.
    pub max_errors: Option<u64>,
    /// A file column the table lacks: `error` (default), `ignore`, or
    /// `add` (added to the table with a type inferred from the file).
    pub extra_columns: Option<ExtraColumns>,
    /// A table column the file lacks: `error` or `ignore` (default).
    pub missing_columns: Option<ColumnPolicy>,
    /// How all-digit dates like `01/02/2024` read: `MDY` (default), `DMY` or `YMD`.
    pub date_order: Option<DateOrder>,
    /// strftime-like format of `date` columns (`"%d.%m.%Y"`), or per column.
    pub date_format: Option<Formats>,
    /// strftime-like format of `timestamp`/`timestamptz` columns, or per column.
    pub timestamp_format: Option<Formats>,
    /// Decimal separator of numeric columns: `.` (default) or `,`.
    pub decimal_separator: Option<String>,
    /// Thousands separator of numeric columns, removed before parsing (`.`, `,`, ` ` or `'`).
    pub thousands_separator: Option<String>,
    /// Currency symbols read off numeric values before parsing, before or
    /// after the number, with or without a space (`["$", "€", "USD"]`).
    pub currency_symbols: Option<Vec<String>>,
    /// Values read as true in boolean columns, besides PostgreSQL's own (case-insensitive).
    pub true_values: Option<Vec<String>>,
    /// Values read as false in boolean columns, besides PostgreSQL's own (case-insensitive).
    pub false_values: Option<Vec<String>>,
    /// Data contracts run on the file's rows before commit (see
    /// docs/contracts.md); a table's checks add to the defaults' checks.
    pub checks: Option<Vec<super::checks::CheckSpec>>,
    /// How long the table may go without an imported file before it is
    /// `warn` or `error` (see docs/contracts.md); a table's replaces the defaults'.
    pub freshness: Option<super::freshness::FreshnessSpec>,
    /// The budgets of one import (record, field and header size,
    /// decompressed size and ratio); a file over one is rejected.
    pub limits: Option<LimitOptions>,
}

/// PostgreSQL's most columns of a table: the widest header that can be
/// one, and the default `max_header_columns`.
pub const MAX_TABLE_COLUMNS: u64 = 1600;

/// The budgets of one import, each key optional (its default applies).
/// A file that exceeds one is rejected with an error naming the limit,
/// the line and this option.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LimitOptions {
    /// The most bytes of one record, quoted newlines included (default 16 MiB).
    pub max_record_bytes: Option<u64>,
    /// The most bytes of one field (default 8 MiB).
    pub max_field_bytes: Option<u64>,
    /// The most fields of the header (default 1600, PostgreSQL's most columns).
    pub max_header_columns: Option<u64>,
    /// The most bytes a compressed file may decompress to (default 16 GiB).
    pub max_decompressed_bytes: Option<u64>,
    /// The most decompressed bytes per compressed byte, checked once 16 MiB
    /// are decompressed (default 100).
    pub max_compression_ratio: Option<u64>,
}
