//! A project's `config` (stored as `cpi_projects.config`): its inbox and the
//! import options of DESIGN §3, and the pure rules that pick the options for
//! one file. Shared by manifest validation, the HTTP API and the importer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `cpi_projects.config`. Every field is optional so that the JSON stored is
/// exactly what the operator wrote (plus `name`); defaults are applied when
/// options are resolved for a file, not when they are stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Set from the project name; leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The folder watched for CSV files, or an object-storage prefix `s3://bucket/prefix/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<String>,
    /// Where imported files go (default `<inbox>/processed`; `s3://…` for an object inbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_dir: Option<String>,
    /// Where rejected files and their `.error.json` go (default `<inbox>/failed`; `s3://…` for an object inbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_dir: Option<String>,
    /// How an `s3://` inbox's store is reached (S3-compatible stores).
    /// Never credentials: those come from the standard AWS chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfig>,
    /// Seconds a file's size and mtime must stay unchanged before it is read.
    // Kept as the number written (`2` stays `2`, not `2.0`), so a stored
    // config exports and loads back to the same JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_seconds: Option<serde_json::Number>,
    /// Options for every file, under each `tables` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ImportOptions>,
    /// First entry whose `file_pattern` matches wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<ImportOptions>,
}

pub use crate::object_storage::StorageConfig;

/// One column name or several (`primary_key: id` or `primary_key: [a, b]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One column.
    One(String),
    /// Several columns.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The column names as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// How a file's rows reach its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
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

    fn each(&self) -> Vec<&str> {
        match self {
            Formats::All(f) => vec![f],
            Formats::PerColumn(m) => m.values().map(String::as_str).collect(),
        }
    }
}

/// Import options, valid in `defaults` and in each `tables` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportOptions {
    /// Glob of the files these options apply to (default `*.csv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_pattern: Option<String>,
    /// Target table, `table` or `schema.table` (default from the file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Key column(s), required by `upsert` and `sync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<OneOrMany>,
    /// `append`, `upsert`, `replace` or `sync` (default `upsert` with a primary_key, else `append`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Create the table when it does not exist: `true` (every column
    /// `text`) or `infer` (types chosen from the whole file's values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_table: Option<CreateTable>,
    /// CSV header → target column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<BTreeMap<String, String>>,
    /// Whether the first line names the columns (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
    /// Field separator, one ASCII character (default `,`), or `auto`
    /// (the most frequent of `,` `;` tab `|` in the first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// Quote character, one ASCII character (default `"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    /// Escape character inside quotes (default: the quote doubled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escape: Option<String>,
    /// Field value(s) read as NULL (default the empty field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null: Option<OneOrMany>,
    /// Trim white space around every field before it is read (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim: Option<bool>,
    /// `utf-8` (default), `latin1` or `windows-1252`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// `abort` (default) or `skip_rows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// With `skip_rows`: the most bad rows before the file is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<u64>,
    /// A file column the table lacks: `error` (default), `ignore`, or
    /// `add` (added to the table with a type inferred from the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_columns: Option<ExtraColumns>,
    /// A table column the file lacks: `error` or `ignore` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_columns: Option<ColumnPolicy>,
    /// How all-digit dates like `01/02/2024` read: `MDY` (default), `DMY` or `YMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_order: Option<DateOrder>,
    /// strftime-like format of `date` columns (`"%d.%m.%Y"`), or per column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_format: Option<Formats>,
    /// strftime-like format of `timestamp`/`timestamptz` columns, or per column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_format: Option<Formats>,
    /// Decimal separator of numeric columns: `.` (default) or `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal_separator: Option<String>,
    /// Thousands separator of numeric columns, removed before parsing (`.`, `,`, ` ` or `'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thousands_separator: Option<String>,
    /// Values read as true in boolean columns, besides PostgreSQL's own (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_values: Option<Vec<String>>,
    /// Values read as false in boolean columns, besides PostgreSQL's own (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_values: Option<Vec<String>>,
}

/// A target table, `table` or `schema.table`. Both parts are quoted
/// wherever they reach SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TableName {
    /// The schema, when given.
    pub schema: Option<String>,
    /// The table.
    pub name: String,
}

impl TableName {
    /// Parses `table` or `schema.table`.
    pub fn parse(s: &str) -> Result<TableName, String> {
        let parts: Vec<&str> = s.split('.').collect();
        let bad = |p: &str| p.is_empty() || p.len() > 63 || p.contains('\0');
        match parts.as_slice() {
            [t] if !bad(t) => Ok(TableName {
                schema: None,
                name: t.to_string(),
            }),
            [s, t] if !bad(s) && !bad(t) => Ok(TableName {
                schema: Some(s.to_string()),
                name: t.to_string(),
            }),
            _ => Err(format!(
                "table {s:?} is not a valid `table` or `schema.table` name"
            )),
        }
    }

    /// The quoted SQL form, e.g. `"sales"."orders"`.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&self.name)),
            None => quote_ident(&self.name),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Quotes an SQL identifier: every name from a manifest or a CSV header goes
/// through here, so none can break out of its quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

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
    /// Field separator.
    pub delimiter: u8,
    /// `delimiter: auto`: chosen per file from its first line.
    pub delimiter_auto: bool,
    /// Quote character.
    pub quote: u8,
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
    /// Extra spellings of true.
    pub true_values: Vec<String>,
    /// Extra spellings of false.
    pub false_values: Vec<String>,
}

const DEFAULT_PATTERN: &str = "*.csv";

impl ProjectConfig {
    /// Where imported files go (`processed/` under the inbox unless the
    /// config says; a relative setting is relative to the inbox).
    pub fn processed_path(&self, inbox: &std::path::Path) -> std::path::PathBuf {
        sub_dir(self.processed_dir.as_deref(), inbox, "processed")
    }

    /// Where rejected files and their reports go (`failed/` unless the config says).
    pub fn failed_path(&self, inbox: &std::path::Path) -> std::path::PathBuf {
        sub_dir(self.failed_dir.as_deref(), inbox, "failed")
    }

    /// `settle_seconds` as a duration (`None` when unset or out of range).
    pub fn settle(&self) -> Option<std::time::Duration> {
        let s = self.settle_seconds.as_ref()?.as_f64()?;
        std::time::Duration::try_from_secs_f64(s).ok()
    }

    /// Every problem of the config, as messages naming the offending key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(s) = &self.settle_seconds {
            if !s.as_f64().is_some_and(|f| (0.0..=3600.0).contains(&f)) {
                errors.push(format!("settle_seconds: {s} is not between 0 and 3600"));
            }
        }
        if let Some(d) = &self.defaults {
            d.validate("defaults", &mut errors);
        }
        for (i, t) in self.tables.iter().enumerate() {
            let at = format!("tables[{i}]");
            t.validate(&at, &mut errors);
            let merged = merge(self.defaults.as_ref(), Some(t));
            check_key_mode(&merged, &at, &mut errors);
            check_extra_columns(&merged, &at, &mut errors);
        }
        if let Some(d) = &self.defaults {
            check_key_mode(d, "defaults", &mut errors);
            check_extra_columns(d, "defaults", &mut errors);
        }
        crate::object_storage::check_config(
            self.inbox.as_deref(),
            self.processed_dir.as_deref(),
            self.failed_dir.as_deref(),
            self.storage.as_ref(),
            &mut errors,
        );
        errors
    }

    /// The options for a file (its path relative to the inbox), or `None`
    /// when no pattern matches it and the file is not this project's.
    pub fn options_for(&self, relative_path: &str) -> Option<ResolvedOptions> {
        self.options_with(&self.patterns(), relative_path)
    }

    /// This config's file patterns, compiled: a caller that matches many
    /// files (the daemon's inbox scans) compiles them once per config.
    pub fn patterns(&self) -> Patterns {
        let default = self
            .defaults
            .as_ref()
            .and_then(|d| d.file_pattern.as_deref())
            .unwrap_or(DEFAULT_PATTERN);
        let compile = |p: &str| glob::Pattern::new(p).ok();
        Patterns {
            tables: self
                .tables
                .iter()
                .map(|t| compile(t.file_pattern.as_deref().unwrap_or(default)))
                .collect(),
            default: compile(default),
            default_on_path: self.defaults.is_some(),
        }
    }

    /// [`options_for`](Self::options_for) with `patterns` compiled from this
    /// config by [`patterns`](Self::patterns).
    pub fn options_with(
        &self,
        patterns: &Patterns,
        relative_path: &str,
    ) -> Option<ResolvedOptions> {
        let file_name = relative_path.rsplit('/').next().unwrap_or(relative_path);
        let entry = patterns.entry_for(relative_path)?;
        let entry = entry.and_then(|i| self.tables.get(i));
        Some(resolve(&merge(self.defaults.as_ref(), entry), file_name))
    }
}

/// A config's file patterns compiled ([`ProjectConfig::patterns`]): one per
/// `tables` entry (its own, else the default's), and the default's. An
/// invalid pattern (refused by validation) matches nothing.
#[derive(Debug, Clone)]
pub struct Patterns {
    tables: Vec<Option<glob::Pattern>>,
    default: Option<glob::Pattern>,
    /// `defaults` is set: its pattern is tried on the relative path too.
    default_on_path: bool,
}

impl Patterns {
    /// Which options a file takes: `Some(Some(i))` the `tables` entry `i`
    /// (the first that matches), `Some(None)` the defaults alone, `None`
    /// no pattern matches: the file is not this project's.
    pub fn entry_for(&self, relative_path: &str) -> Option<Option<usize>> {
        let file_name = relative_path.rsplit('/').next().unwrap_or(relative_path);
        let matches = |p: &Option<glob::Pattern>| {
            p.as_ref()
                .is_some_and(|p| glob_matches(p, relative_path) || glob_matches(p, file_name))
        };
        if let Some(i) = self.tables.iter().position(matches) {
            return Some(Some(i));
        }
        // Without `defaults`, the built-in pattern is tried on the file name alone.
        let default = if self.default_on_path {
            matches(&self.default)
        } else {
            self.default
                .as_ref()
                .is_some_and(|p| glob_matches(p, file_name))
        };
        default.then_some(None)
    }

    /// Whether some pattern matches the file: it is this project's.
    pub fn matches(&self, relative_path: &str) -> bool {
        self.entry_for(relative_path).is_some()
    }
}

/// `*.csv` also matches `x.csv.gz` and `x.csv.zst`: gzip and zstd are
/// read transparently, so a compressed file belongs where its
/// uncompressed name would.
fn glob_matches(p: &glob::Pattern, path: &str) -> bool {
    p.matches(path)
        || [".gz", ".zst"]
            .iter()
            .any(|ext| path.strip_suffix(ext).is_some_and(|plain| p.matches(plain)))
}

/// `entry` over `defaults`, key by key.
fn merge(defaults: Option<&ImportOptions>, entry: Option<&ImportOptions>) -> ImportOptions {
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
        delimiter: e.delimiter.or(d.delimiter),
        quote: e.quote.or(d.quote),
        escape: e.escape.or(d.escape),
        null: e.null.or(d.null),
        trim: e.trim.or(d.trim),
        encoding: e.encoding.or(d.encoding),
        on_error: e.on_error.or(d.on_error),
        max_errors: e.max_errors.or(d.max_errors),
        extra_columns: e.extra_columns.or(d.extra_columns),
        missing_columns: e.missing_columns.or(d.missing_columns),
        date_order: e.date_order.or(d.date_order),
        date_format: e.date_format.or(d.date_format),
        timestamp_format: e.timestamp_format.or(d.timestamp_format),
        decimal_separator: e.decimal_separator.or(d.decimal_separator),
        thousands_separator: e.thousands_separator.or(d.thousands_separator),
        true_values: e.true_values.or(d.true_values),
        false_values: e.false_values.or(d.false_values),
    }
}

fn check_key_mode(o: &ImportOptions, at: &str, errors: &mut Vec<String>) {
    let has_key = o
        .primary_key
        .as_ref()
        .is_some_and(|k| !k.to_vec().is_empty());
    if let Some(m @ (Mode::Upsert | Mode::Sync)) = o.mode {
        if !has_key {
            errors.push(format!("{at}: mode {} needs a primary_key", m.as_str()));
        }
    }
}

/// `extra_columns: add` names the new columns after the header.
fn check_extra_columns(o: &ImportOptions, at: &str, errors: &mut Vec<String>) {
    if o.extra_columns == Some(ExtraColumns::Add) && o.header == Some(false) {
        errors.push(format!(
            "{at}: extra_columns: add needs a header (header: false gives the new columns no names)"
        ));
    }
}

fn single_byte(v: &Option<String>, key: &str, at: &str, errors: &mut Vec<String>) -> Option<u8> {
    let s = v.as_deref()?;
    if s.len() == 1 && s.is_ascii() {
        Some(s.as_bytes()[0])
    } else {
        errors.push(format!(
            "{at}.{key}: {s:?} must be a single ASCII character"
        ));
        None
    }
}

impl ImportOptions {
    fn validate(&self, at: &str, errors: &mut Vec<String>) {
        if let Some(p) = &self.file_pattern {
            if let Err(e) = glob::Pattern::new(p) {
                errors.push(format!("{at}.file_pattern: {p:?} is not a valid glob: {e}"));
            }
        }
        if let Some(t) = &self.table {
            if let Err(e) = TableName::parse(t) {
                errors.push(format!("{at}.table: {e}"));
            }
        }
        if let Some(k) = &self.primary_key {
            if k.to_vec().iter().any(|c| c.is_empty()) {
                errors.push(format!("{at}.primary_key: a column name is empty"));
            }
        }
        if let Some(cols) = &self.columns {
            if cols.iter().any(|(k, v)| k.is_empty() || v.is_empty()) {
                errors.push(format!("{at}.columns: a column name is empty"));
            }
        }
        if self.delimiter.as_deref() != Some("auto") {
            single_byte(&self.delimiter, "delimiter", at, errors);
        }
        single_byte(&self.quote, "quote", at, errors);
        single_byte(&self.escape, "escape", at, errors);
        self.validate_values(at, errors);
        if self.max_errors.is_some() && self.on_error != Some(OnError::SkipRows) {
            // Harmless, but almost always a mistake: say so instead of ignoring it.
            if self.on_error == Some(OnError::Abort) {
                errors.push(format!(
                    "{at}.max_errors: only applies with on_error: skip_rows"
                ));
            }
        }
    }
}

impl ImportOptions {
    /// The value options: formats chrono can read, separators that cannot
    /// be confused, boolean spellings that do not contradict each other.
    fn validate_values(&self, at: &str, errors: &mut Vec<String>) {
        for (key, f) in [
            ("date_format", &self.date_format),
            ("timestamp_format", &self.timestamp_format),
        ] {
            for fmt in f.iter().flat_map(Formats::each) {
                if let Some(problem) = format_problem(fmt) {
                    errors.push(format!("{at}.{key}: {fmt:?} {problem}"));
                }
            }
        }
        let dec = self.decimal_separator.as_deref();
        if let Some(d) = dec {
            if d != "." && d != "," {
                errors.push(format!(
                    "{at}.decimal_separator: {d:?} must be \".\" or \",\""
                ));
            }
        }
        if let Some(t) = self.thousands_separator.as_deref() {
            if ![".", ",", " ", "'", "_"].contains(&t) {
                errors.push(format!(
                    "{at}.thousands_separator: {t:?} must be one of \".\", \",\", \" \", \"'\" or \"_\""
                ));
            } else if t == dec.unwrap_or(".") {
                errors.push(format!(
                    "{at}.thousands_separator: {t:?} is also the decimal_separator"
                ));
            }
        }
        let lower = |v: &Option<Vec<String>>| -> Vec<String> {
            v.iter().flatten().map(|s| s.to_lowercase()).collect()
        };
        let (t, f) = (lower(&self.true_values), lower(&self.false_values));
        for v in t.iter().chain(&f) {
            if v.is_empty() {
                errors.push(format!(
                    "{at}: true_values/false_values: the empty value is NULL (see `null`)"
                ));
            }
        }
        for v in t.iter().filter(|v| f.contains(v)) {
            errors.push(format!(
                "{at}: {v:?} is in both true_values and false_values"
            ));
        }
    }
}

/// Why chrono cannot use `fmt` as a date/time format, if it cannot.
pub fn format_problem(fmt: &str) -> Option<&'static str> {
    use chrono::format::{Item, StrftimeItems};
    if fmt.is_empty() {
        return Some("is empty");
    }
    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
        return Some("is not a valid strftime-like format (see chrono's strftime)");
    }
    if !fmt.contains('%') {
        return Some("has no % field");
    }
    None
}

/// A file stem as a safe identifier: lower case, `[a-z0-9_]`, not starting
/// with a digit (`Orders 2024-01.csv.gz` → `orders_2024_01`).
pub fn table_from_file_name(file_name: &str) -> String {
    let mut stem = file_name;
    for ext in [".gz", ".zst", ".csv", ".tsv", ".txt"] {
        if stem.len() > ext.len() && stem.to_ascii_lowercase().ends_with(ext) {
            stem = &stem[..stem.len() - ext.len()];
        }
    }
    let mut out: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out.truncate(63);
    out
}

fn resolve(o: &ImportOptions, file_name: &str) -> ResolvedOptions {
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
        header: o.header.unwrap_or(true),
        delimiter: single_byte(&o.delimiter, "delimiter", "", &mut ignored).unwrap_or(b','),
        delimiter_auto: o.delimiter.as_deref() == Some("auto"),
        quote: single_byte(&o.quote, "quote", "", &mut ignored).unwrap_or(b'"'),
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
        true_values: o.true_values.clone().unwrap_or_default(),
        false_values: o.false_values.clone().unwrap_or_default(),
    }
}

fn sub_dir(configured: Option<&str>, inbox: &std::path::Path, default: &str) -> std::path::PathBuf {
    match configured {
        // An object-storage prefix is a URL, never relative to the inbox.
        Some(d) if std::path::Path::new(d).is_absolute() || d.starts_with("s3://") => {
            std::path::PathBuf::from(d)
        }
        Some(d) => inbox.join(d),
        None => inbox.join(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_as_written() {
        for text in ["settle_seconds: 2\n", "settle_seconds: 2.5\n"] {
            let c: ProjectConfig = serde_yaml::from_str(text).unwrap();
            assert_eq!(serde_yaml::to_string(&c).unwrap(), text);
        }
        let c: ProjectConfig = serde_yaml::from_str("settle_seconds: 2\n").unwrap();
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"settle_seconds": 2})
        );
        assert_eq!(c.settle(), Some(std::time::Duration::from_secs(2)));
    }

    fn cfg(yaml: &str) -> ProjectConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn first_matching_table_entry_wins_over_defaults() {
        let c = cfg(r#"
inbox: /tmp/in
defaults: { primary_key: id, delimiter: ";" }
tables:
  - { file_pattern: "orders_*.csv", table: sales.orders, primary_key: [order_id], mode: upsert }
  - { file_pattern: "orders_*.csv", table: never }
"#);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let o = c.options_for("orders_07.csv").unwrap();
        assert_eq!(o.table.quoted(), "\"sales\".\"orders\"");
        assert_eq!(o.primary_key, vec!["order_id"]);
        assert_eq!(o.delimiter, b';');
        let d = c.options_for("Customers 2024.csv").unwrap();
        assert_eq!(d.table.name, "customers_2024");
        assert_eq!(d.mode, Mode::Upsert);
        assert!(c.options_for("notes.txt").is_none());
    }

    #[test]
    fn defaults_without_key_append() {
        let c = cfg("inbox: /x");
        let z = c.options_for("Sales 2024.csv.zst").unwrap();
        assert_eq!(z.table.name, "sales_2024");
        let o = c.options_for("a.csv.gz").unwrap();
        assert_eq!(o.mode, Mode::Append);
        assert_eq!(o.table.name, "a");
        assert_eq!(o.null, vec![String::new()]);
    }

    #[test]
    fn upsert_without_key_is_an_error() {
        let c = cfg("tables: [{ file_pattern: '*.csv', mode: sync }]");
        assert_eq!(
            c.validate(),
            vec!["tables[0]: mode sync needs a primary_key"]
        );
        let c = cfg("defaults: { delimiter: ';;', table: 'a.b.c' }");
        let e = c.validate();
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn extra_columns_add_misuse() {
        let c = cfg("defaults: { extra_columns: add }\ntables: [{ table: t, header: false }]");
        assert_eq!(
            c.validate(),
            vec!["tables[0]: extra_columns: add needs a header (header: false gives the new columns no names)"]
        );
        assert_eq!(
            cfg("defaults: { extra_columns: add }")
                .options_for("a.csv")
                .unwrap()
                .extra_columns,
            ExtraColumns::Add
        );
        // `add` is for the file's columns only; the error lists what is allowed.
        for (yaml, allowed) in [
            (
                "defaults: { missing_columns: add }",
                "expected `error` or `ignore`",
            ),
            (
                "defaults: { extra_columns: adds }",
                "expected one of `error`, `ignore`, `add`",
            ),
        ] {
            let e = serde_yaml::from_str::<ProjectConfig>(yaml).unwrap_err();
            assert!(e.to_string().contains(allowed), "{yaml}: {e}");
        }
    }

    #[test]
    fn value_options_say_what_is_wrong() {
        let c = cfg(r##"
defaults: { decimal_separator: ";", thousands_separator: "#", date_format: "%Q", true_values: [ja, ""], false_values: [JA] }
tables:
  - { date_format: { booked: "dd.mm.yyyy" }, timestamp_format: "", decimal_separator: ",", thousands_separator: "," }
"##);
        assert_eq!(
            c.validate(),
            vec![
                "defaults.date_format: \"%Q\" is not a valid strftime-like format (see chrono's strftime)",
                "defaults.decimal_separator: \";\" must be \".\" or \",\"",
                "defaults.thousands_separator: \"#\" must be one of \".\", \",\", \" \", \"'\" or \"_\"",
                "defaults: true_values/false_values: the empty value is NULL (see `null`)",
                "defaults: \"ja\" is in both true_values and false_values",
                "tables[0].date_format: \"dd.mm.yyyy\" has no % field",
                "tables[0].timestamp_format: \"\" is empty",
                "tables[0].thousands_separator: \",\" is also the decimal_separator",
            ]
        );
        assert!(serde_yaml::from_str::<ProjectConfig>("defaults: { date_order: DDMMYY }").is_err());
        let o =
            cfg("defaults: { date_order: DMY, decimal_separator: ',', thousands_separator: '.' }")
                .options_for("a.csv")
                .unwrap();
        assert_eq!(
            (o.date_order, o.decimal_separator, o.thousands_separator),
            (DateOrder::Dmy, b',', Some(b'.'))
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(serde_yaml::from_str::<ProjectConfig>("inbox: x\nmodee: upsert").is_err());
        assert!(serde_yaml::from_str::<ProjectConfig>("defaults: { modee: upsert }").is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(
            quote_ident("id\"; DROP TABLE x; --"),
            "\"id\"\"; DROP TABLE x; --\""
        );
        assert_eq!(table_from_file_name("2024.csv"), "_2024");
    }
}
