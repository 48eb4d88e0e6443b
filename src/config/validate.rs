//! A config's rules: every problem named by its key, for manifests, the
//! API and convert-legacy alike.

use super::characters::single_byte;
use super::column_names::OneOrMany;
use super::options::{
    ExtraColumns, Formats, ImportOptions, LimitOptions, Mode, OnError, MAX_TABLE_COLUMNS,
};
use super::table::TableName;

pub(super) fn check_key_mode(o: &ImportOptions, at: &str, errors: &mut Vec<String>) {
    let has_key = o
        .primary_key
        .as_ref()
        .is_some_and(|k| !k.to_vec().is_empty());
    if let Some(m @ (Mode::Upsert | Mode::Sync)) = o.mode {
        if !has_key {
            errors.push(format!(
                "{at}.primary_key: mode {} needs a primary_key",
                m.as_str()
            ));
        }
    }
}

/// The options name table columns (`primary_key`, per-column formats);
/// `columns` renames CSV headers to table columns. A reference that is a
/// renamed header, not a column, would only fail once a file comes:
/// say so now, with the column meant.
pub(super) fn check_column_refs(o: &ImportOptions, at: &str, errors: &mut Vec<String>) {
    let Some(renames) = &o.columns else { return };
    let is_column = |c: &str| renames.values().any(|v| v.eq_ignore_ascii_case(c));
    let renamed = |c: &str| {
        renames
            .iter()
            .find(|(h, v)| h.eq_ignore_ascii_case(c) && !v.eq_ignore_ascii_case(c))
            .map(|(_, v)| v.clone())
    };
    let mut refs: Vec<(&str, String)> = Vec::new();
    for k in o.primary_key.iter().flat_map(OneOrMany::to_vec) {
        refs.push(("primary_key", k));
    }
    for (key, f) in [
        ("date_format", &o.date_format),
        ("timestamp_format", &o.timestamp_format),
    ] {
        if let Some(Formats::PerColumn(m)) = f {
            refs.extend(m.keys().map(|c| (key, c.clone())));
        }
    }
    for (key, c) in refs {
        if is_column(&c) {
            continue;
        }
        if let Some(column) = renamed(&c) {
            errors.push(format!(
                "{at}.{key}: {c:?} is a CSV header, which columns renames to the table column {column:?}; name the column ({key} refers to table columns)"
            ));
        }
    }
}

/// `extra_columns: add` names the new columns after the header.
pub(super) fn check_extra_columns(o: &ImportOptions, at: &str, errors: &mut Vec<String>) {
    if o.extra_columns == Some(ExtraColumns::Add)
        && o.header == Some(super::options::HeaderOption::Flag(false))
    {
        errors.push(format!(
            "{at}: extra_columns: add needs a header (header: false gives the new columns no names)"
        ));
    }
}

impl ImportOptions {
    /// Every problem of these options, each named under `at`.
    pub(super) fn validate(&self, at: &str, errors: &mut Vec<String>) {
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
        let d = self.delimiter.as_deref();
        if d != Some("auto") && !d.is_some_and(|d| super::characters::WIDE_DELIMITERS.contains(&d))
        {
            single_byte(&self.delimiter, "delimiter", at, errors);
        }
        if self.quote.as_deref() == Some("auto") && d != Some("auto") {
            errors.push(format!(
                "{at}.quote: auto is chosen with the delimiter: it needs delimiter: auto"
            ));
        }
        if self.rejects == Some(super::options::Rejects::Table)
            && self.on_error != Some(OnError::SkipRows)
        {
            errors.push(format!(
                "{at}.rejects: table keeps the rows on_error: skip_rows skips: it needs on_error: skip_rows"
            ));
        }
        if self.header_rows == Some(0) {
            errors.push(format!(
                "{at}.header_rows: must be at least 1 (header: false reads a file without one)"
            ));
        }
        if self.header_rows.is_some_and(|n| n > 1)
            && self.header == Some(super::options::HeaderOption::Flag(false))
        {
            errors.push(format!("{at}.header_rows: header is false"));
        }
        let quote = match self.quote.as_deref() {
            Some("auto" | "none") => None,
            _ => single_byte(&self.quote, "quote", at, errors),
        };
        single_byte(&self.escape, "escape", at, errors);
        if let Some(c) = single_byte(&self.comment, "comment", at, errors) {
            let delimiter = self.delimiter.as_deref().filter(|d| *d != "auto");
            if Some(c) == quote.or(Some(b'"')) || delimiter.is_some_and(|d| d.as_bytes() == [c]) {
                errors.push(format!(
                    "{at}.comment: {:?} is also the quote or the delimiter",
                    char::from(c)
                ));
            }
        }
        self.validate_values(at, errors);
        for (i, c) in self.checks.iter().flatten().enumerate() {
            if let Err(e) = c.parse(&format!("{at}.checks[{i}]")) {
                errors.extend(e);
            }
        }
        if let Some(Err(e)) = self
            .freshness
            .as_ref()
            .map(|f| f.parse(&format!("{at}.freshness")))
        {
            errors.extend(e);
        }
        if let Some(l) = &self.limits {
            l.validate(&format!("{at}.limits"), errors);
        }
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

impl LimitOptions {
    /// A budget of 0 refuses every file, and a header wider than
    /// PostgreSQL's most columns can never be a table.
    fn validate(&self, at: &str, errors: &mut Vec<String>) {
        for (key, v) in [
            ("max_record_bytes", self.max_record_bytes),
            ("max_field_bytes", self.max_field_bytes),
            ("max_header_columns", self.max_header_columns),
            ("max_decompressed_bytes", self.max_decompressed_bytes),
            ("max_compression_ratio", self.max_compression_ratio),
        ] {
            if v == Some(0) {
                errors.push(format!("{at}.{key}: must be at least 1"));
            }
        }
        let most = MAX_TABLE_COLUMNS;
        if self.max_header_columns.is_some_and(|n| n > most) {
            errors.push(format!(
                "{at}.max_header_columns: at most {most} (PostgreSQL's most columns of a table)"
            ));
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
        for c in self.currency_symbols.iter().flatten() {
            let bad = |ch: char| ch.is_ascii_digit() || "+-.,'_ ".contains(ch);
            if c.is_empty() || c.len() > 8 || c.chars().any(bad) {
                errors.push(format!(
                    "{at}.currency_symbols: {c:?} must be 1 to 8 bytes with no digit, sign, separator or space"
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
