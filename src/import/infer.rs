//! `create_table: infer`: column types chosen from the file's values. The
//! choice is pure ([`Infer`]: fed every record of the file, the sample
//! being the whole file so that no later row of it can fail the type
//! chosen, it gives the types and the decisions worth telling, a widening,
//! a fall back to `text`); [`infer_file`] feeds it the file.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::config::{quote_ident, DateOrder, Formats, ResolvedOptions};
use crate::import::dialect::Dialect;
use crate::import::encode;
use crate::import::mapping;
use crate::import::open::{open_file, ReadError};
use crate::import::{ragged, reader};

/// A column type `infer` can choose, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Inferred {
    /// `t`/`f`, `true`/`false`, `yes`/`no` (any case).
    Boolean,
    /// Integers within ±32767.
    Smallint,
    /// Integers within 32 bits.
    Integer,
    /// Integers within 64 bits.
    Bigint,
    /// Decimals, and integers beyond 64 bits.
    Numeric,
    /// Numbers with an exponent, `NaN`, `Infinity`.
    Double,
    /// `YYYY-MM-DD` (and `YYYY/MM/DD`, `YYYYMMDD`).
    Date,
    /// ISO 8601 date and time without offset.
    Timestamp,
    /// ISO 8601 date and time, some with an offset.
    Timestamptz,
    /// 8-4-4-4-12 hex.
    Uuid,
    /// JSON objects and arrays.
    Jsonb,
    /// Anything else.
    Text,
}

impl Inferred {
    /// The SQL type.
    pub fn sql(self) -> &'static str {
        match self {
            Inferred::Boolean => "boolean",
            Inferred::Smallint => "smallint",
            Inferred::Integer => "integer",
            Inferred::Bigint => "bigint",
            Inferred::Numeric => "numeric",
            Inferred::Double => "double precision",
            Inferred::Date => "date",
            Inferred::Timestamp => "timestamp",
            Inferred::Timestamptz => "timestamptz",
            Inferred::Uuid => "uuid",
            Inferred::Jsonb => "jsonb",
            Inferred::Text => "text",
        }
    }

    fn is_number(self) -> bool {
        (Inferred::Smallint..=Inferred::Double).contains(&self)
    }
}

/// How the project says values are spelt (`date_order`, `date_format`,
/// `decimal_separator`, `thousands_separator`): a value the import would
/// read through them is typed as the import would load it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueStyle {
    /// How all-digit dates like `31/12/2024` read.
    pub date_order: DateOrder,
    /// The `date_format` option.
    pub date_format: Option<Formats>,
    /// `b','` when the decimal separator is a comma.
    pub decimal: u8,
    /// Removed from numbers before parsing.
    pub thousands: Option<u8>,
    /// Read off numbers before parsing.
    pub currency: Vec<String>,
}

impl Default for ValueStyle {
    fn default() -> Self {
        ValueStyle {
            date_order: DateOrder::Mdy,
            date_format: None,
            decimal: b'.',
            thousands: None,
            currency: Vec::new(),
        }
    }
}

impl ValueStyle {
    /// The style of the resolved options.
    pub fn of(o: &ResolvedOptions) -> ValueStyle {
        ValueStyle {
            date_order: o.date_order,
            date_format: o.date_format.clone(),
            decimal: o.decimal_separator,
            thousands: o.thousands_separator,
            currency: o.currency_symbols.clone(),
        }
    }
}

/// The narrowest type of one (non-null) value of `column` in `style`.
pub fn value_type_in(v: &str, style: &ValueStyle, column: &str) -> Inferred {
    if style.decimal != b'.' || style.thousands.is_some() || !style.currency.is_empty() {
        let n = crate::import::dialect::number(
            v.trim(),
            style.decimal,
            style.thousands,
            &style.currency,
        );
        let t = value_type(&n);
        if t.is_number() {
            return t;
        }
    }
    if let Some(f) = style
        .date_format
        .as_ref()
        .and_then(|f| f.for_column(column))
    {
        if Dialect::Date(f.to_string()).rewrite(v).is_ok() {
            return Inferred::Date;
        }
    }
    if all_digit_date(v.trim(), style.date_order) {
        return Inferred::Date;
    }
    value_type(v)
}

/// `31/12/2024`, `31.12.2024`, `31-12-2024` (day first in `DMY`, month
/// first in `MDY`, year first in `YMD`): PostgreSQL reads them with the
/// `DateStyle` the import sets from `date_order`.
fn all_digit_date(t: &str, order: DateOrder) -> bool {
    if !(8..=10).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_digit() || b"/.-".contains(&b))
    {
        return false;
    }
    let Some(sep) = t.chars().find(|c| !c.is_ascii_digit()) else {
        return false;
    };
    let fmt = match order {
        DateOrder::Dmy => format!("%d{sep}%m{sep}%Y"),
        DateOrder::Mdy => format!("%m{sep}%d{sep}%Y"),
        DateOrder::Ymd => format!("%Y{sep}%m{sep}%d"),
    };
    chrono::NaiveDate::parse_from_str(t, &fmt).is_ok()
}

/// The narrowest type of one (non-null) value.
pub fn value_type(v: &str) -> Inferred {
    let t = v.trim();
    if t.is_empty() {
        return Inferred::Text;
    }
    let lower = t.to_ascii_lowercase();
    if ["t", "f", "true", "false", "yes", "no"].contains(&lower.as_str()) {
        return Inferred::Boolean;
    }
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match t.parse::<i64>() {
            Ok(n) if i16::try_from(n).is_ok() => Inferred::Smallint,
            Ok(n) if i32::try_from(n).is_ok() => Inferred::Integer,
            Ok(_) => Inferred::Bigint,
            Err(_) => Inferred::Numeric,
        };
    }
    let special = ["nan", "infinity", "-infinity", "inf", "-inf"].contains(&lower.as_str());
    if !special && !t.contains(['e', 'E']) && encode::parse_numeric(t).is_some() {
        return Inferred::Numeric;
    }
    if t.parse::<f64>().is_ok_and(f64::is_finite) && t.bytes().any(|b| b.is_ascii_digit()) {
        return Inferred::Double;
    }
    if t.len() >= 8 && encode::parse_date_days(t).is_some() {
        return Inferred::Date;
    }
    // `Jan 1 2000`: PostgreSQL reads it in every date_order.
    if t.len() <= 12 && chrono::NaiveDate::parse_from_str(t, "%b %d %Y").is_ok() {
        return Inferred::Date;
    }
    if t.len() > 10 && encode::parse_timestamp_us(t, false).is_some() {
        let rest = &t[10..];
        let offset = rest.ends_with(['z', 'Z'])
            || rest.to_ascii_lowercase().ends_with("utc")
            || rest.get(6..).is_some_and(|r| r.contains(['+', '-']));
        return if offset {
            Inferred::Timestamptz
        } else {
            Inferred::Timestamp
        };
    }
    if t.len() == 36 && uuid::Uuid::try_parse(t).is_ok() {
        return Inferred::Uuid;
    }
    if (t.starts_with('{') || t.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()
        && !t.contains("\\u0000")
    {
        return Inferred::Jsonb;
    }
    Inferred::Text
}

/// What option would read a value that looks like a number or a date
/// but is not one as spelt, as a clause (or nothing).
fn hint(v: &str) -> &'static str {
    let t = v.trim();
    let digits = t.bytes().filter(u8::is_ascii_digit).count();
    if digits * 2 < t.len() {
        return "";
    }
    if t.starts_with(['$', '€', '£', '¥']) || t.ends_with(['$', '€', '£', '¥']) {
        " (a currency symbol: name it in currency_symbols)"
    } else if t.contains(',') && !t.contains(['/', '-', ':']) {
        " (decimal_separator and thousands_separator say how numbers are spelt)"
    } else if t.contains(['/', '.', '-']) {
        " (date_order or date_format say how dates are spelt)"
    } else {
        ""
    }
}

/// The type that holds values of both, and whether that is a fall back to
/// `text` (rather than a widening among numbers or times).
pub fn join(a: Inferred, b: Inferred) -> Inferred {
    use Inferred::*;
    if a == b {
        return a;
    }
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    match (lo, hi) {
        (l, h) if l.is_number() && h.is_number() => h,
        (Timestamp, Timestamptz) => Timestamptz,
        (Date, Timestamp | Timestamptz) => hi,
        _ => Text,
    }
}

/// One column's running verdict.
#[derive(Debug, Clone)]
struct Column {
    ty: Option<Inferred>,
    /// The first value that changed the type, and its line.
    note: Option<String>,
    /// The first value, when it was text already: why the column is `text`.
    first_text: Option<String>,
}

/// The inferred table: column types, `NOT NULL` keys, and what was decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// (column, type), in file order.
    pub columns: Vec<(String, Inferred)>,
    /// Widenings and falls back to `text`, one per column at most.
    pub notes: Vec<String>,
    /// The decisions taken opening the file: `skip_lines: auto`, the
    /// header's names changed to be column names (an empty or over-long
    /// name).
    pub file_notes: Vec<String>,
}

/// Feeds the file's records, one by one.
pub struct Infer {
    names: Vec<String>,
    nulls: Vec<String>,
    style: ValueStyle,
    cols: Vec<Column>,
}

impl Infer {
    /// For a file with these column names; values equal to one of `nulls` are NULL.
    pub fn new(names: &[String], nulls: &[String]) -> Infer {
        Infer::with_style(names, nulls, ValueStyle::default())
    }

    /// [`new`](Self::new), values read in `style`.
    pub fn with_style(names: &[String], nulls: &[String], style: ValueStyle) -> Infer {
        Infer {
            names: names.to_vec(),
            nulls: nulls.to_vec(),
            style,
            cols: vec![
                Column {
                    ty: None,
                    note: None,
                    first_text: None,
                };
                names.len()
            ],
        }
    }

    /// One record (file `line`); fields beyond the header are ignored.
    pub fn add<'a>(&mut self, line: u64, fields: impl IntoIterator<Item = &'a str>) {
        for (i, v) in fields.into_iter().enumerate().take(self.cols.len()) {
            if self.nulls.iter().any(|n| n == v) {
                continue;
            }
            let c = &mut self.cols[i];
            let vt = value_type_in(v, &self.style, &self.names[i]);
            // Words are text and need no telling; a number or a date
            // spelt so that it is not read as one does.
            if c.ty.is_none() && vt == Inferred::Text && !hint(v).is_empty() {
                c.first_text = Some(format!(
                    "column {}: {} on line {line} is not a number, date or time as spelt{}: text",
                    quote_ident(&self.names[i]),
                    encode::show_value(v.as_bytes()),
                    hint(v)
                ));
            }
            let next = match c.ty {
                None => vt,
                Some(t) => join(t, vt),
            };
            if let Some(prev) = c.ty.filter(|p| *p != next) {
                if c.note.is_none() || next == Inferred::Text {
                    let how = if next == Inferred::Text {
                        "falls back to"
                    } else {
                        "widens to"
                    };
                    c.note = Some(format!(
                        "column {}: {} on line {line} is not {}: {how} {}",
                        quote_ident(&self.names[i]),
                        encode::show_value(v.as_bytes()),
                        prev.sql(),
                        next.sql()
                    ));
                }
            }
            c.ty = Some(next);
        }
    }

    /// The verdict: a column without a value is `text`.
    pub fn finish(self) -> Inference {
        let notes = self
            .cols
            .iter()
            .filter_map(|c| c.note.clone().or_else(|| c.first_text.clone()))
            .collect();
        Inference {
            columns: self
                .names
                .into_iter()
                .zip(self.cols)
                .map(|(n, c)| (n, c.ty.unwrap_or(Inferred::Text)))
                .collect(),
            notes,
            file_notes: Vec::new(),
        }
    }
}

/// `extra_columns: add`: one `ALTER TABLE` adding every new column with
/// its inferred type (nullable: the rows already there have no value).
/// `IF NOT EXISTS`: a column added meanwhile by someone else is kept as is.
pub fn add_columns(target: &str, columns: &[(String, Inferred)]) -> String {
    let adds: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("ADD COLUMN IF NOT EXISTS {} {}", quote_ident(n), t.sql()))
        .collect();
    format!("ALTER TABLE {target} {}", adds.join(", "))
}

/// `CREATE TABLE` with the inferred types; the key's columns `NOT NULL`.
pub fn create_table(target: &str, inf: &Inference, key: &[String]) -> String {
    let mut defs: Vec<String> = inf
        .columns
        .iter()
        .map(|(n, t)| {
            let not_null = if key.iter().any(|k| k.eq_ignore_ascii_case(n)) {
                " NOT NULL"
            } else {
                ""
            };
            format!("{} {}{not_null}", quote_ident(n), t.sql())
        })
        .collect();
    if !key.is_empty() {
        let k: Vec<String> = key
            .iter()
            .map(|k| {
                let name = inf
                    .columns
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map_or(k.as_str(), |(n, _)| n.as_str());
                quote_ident(name)
            })
            .collect();
        defs.push(format!("PRIMARY KEY ({})", k.join(", ")));
    }
    format!("CREATE TABLE {target} (\n  {}\n)", defs.join(",\n  "))
}

/// Why `create_table: infer` cannot read the file's types.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The file cannot be read as CSV.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Without a header there are no names for the columns.
    #[error("{file}: create_table: infer needs a header")]
    NeedsHeader {
        /// The file's name.
        file: String,
    },
    /// The header cannot name the columns (a name twice, an empty one).
    #[error("{file}: {message}")]
    BadHeader {
        /// The file's name.
        file: String,
        /// What is wrong with it.
        message: String,
    },
}

/// `create_table: infer`: reads the whole file (so that no row of it can
/// fail the types chosen) and infers its columns' types. The header's
/// names go through the `columns` renames.
pub fn infer_file(
    source: &reader::Source,
    file: &str,
    o: &ResolvedOptions,
) -> Result<Inference, InferError> {
    let opened = open_file(source, file, o, Arc::new(AtomicU64::new(0)), None)?;
    // Without a header the columns are numbered, and the first record is data.
    let header = match opened.header {
        Some(h) => h,
        None if opened.width > 0 => mapping::numbered_columns(opened.width),
        None => {
            return Err(InferError::NeedsHeader {
                file: file.to_string(),
            })
        }
    };
    let names = mapping::columns_from_header(&header, &o.columns).map_err(|message| {
        InferError::BadHeader {
            file: file.to_string(),
            message: message.to_string(),
        }
    })?;
    let mut inf = Infer::with_style(&names, &o.null, ValueStyle::of(o));
    let file_notes = opened.notes;
    let mut read = u64::from(opened.first.is_some());
    let mut records = opened.records;
    let mut record = csv::StringRecord::new();
    if let Some(first) = opened.first {
        let line = first.position().map_or(1, |p| p.line());
        let fields: Vec<String> = first
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        if o.trim {
            inf.add(line, fields.iter().map(|f| f.trim()));
        } else {
            inf.add(line, fields.iter().map(String::as_str));
        }
    }
    let mut file_notes = file_notes;
    loop {
        match records.read_record(&mut record) {
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                read += 1;
                // A second table's rows are not the first's: its types
                // would spoil the columns' (the import ends the table there).
                if read > 1
                    && record.len() != opened.width
                    && ragged::second_header(record.as_byte_record().iter(), opened.width, |v| {
                        value_type(v) != Inferred::Text
                    })
                {
                    file_notes.push(format!(
                        "{file}:{line}: a second table starts here; its rows are not inferred"
                    ));
                    break;
                }
                if o.trim {
                    inf.add(line, record.iter().map(str::trim));
                } else {
                    inf.add(line, record.iter());
                }
            }
            Ok(false) => break,
            Err(source) => {
                return Err(ReadError::Csv {
                    file: file.to_string(),
                    source,
                }
                .into())
            }
        }
    }
    Ok(Inference {
        file_notes,
        ..inf.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Inferred::*;

    #[test]
    fn value_types() {
        let cases = [
            ("true", Boolean),
            ("F", Boolean),
            ("1", Smallint),
            ("-40000", Integer),
            ("3000000000", Bigint),
            ("99999999999999999999", Numeric),
            ("12.50", Numeric),
            ("1e5", Double),
            ("NaN", Text),
            ("2024-06-01", Date),
            ("2012/01/01", Date),
            ("2024-06-01 10:00:00", Timestamp),
            ("2024-06-01T10:00:00Z", Timestamptz),
            ("2024-06-01 10:00:00+02:00", Timestamptz),
            ("0e4b2a2c-3c1f-4a7e-9f0a-5d8e1b2c3d4e", Uuid),
            ("{\"a\": 1}", Jsonb),
            ("[1,2]", Jsonb),
            ("Jan 1 2000", Date),
            ("Janvier 1 2000", Text),
            ("12,5", Text),
        ];
        for (v, want) in cases {
            assert_eq!(value_type(v), want, "{v}");
        }
    }

    #[test]
    fn later_rows_widen_or_fall_back_and_say_so() {
        let names: Vec<String> = ["id", "n", "d", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut inf = Infer::new(&names, &[String::new()]);
        inf.add(2, ["1", "1", "2024-01-01", ""]);
        inf.add(3, ["2", "1.5", "2024-01-01 10:00", ""]);
        inf.add(4, ["70000", "2", "soon", ""]);
        let r = inf.finish();
        assert_eq!(
            r.columns.iter().map(|c| c.1).collect::<Vec<_>>(),
            vec![Integer, Numeric, Text, Text]
        );
        assert_eq!(
            r.notes,
            vec![
                "column \"id\": \"70000\" on line 4 is not smallint: widens to integer",
                "column \"n\": \"1.5\" on line 3 is not smallint: widens to numeric",
                "column \"d\": \"soon\" on line 4 is not timestamp: falls back to text",
            ]
        );
        assert_eq!(
            create_table("\"t\"", &r, &["ID".into()]),
            "CREATE TABLE \"t\" (\n  \"id\" integer NOT NULL,\n  \"n\" numeric,\n  \"d\" text,\n  \"x\" text,\n  PRIMARY KEY (\"id\")\n)"
        );
    }

    #[test]
    fn added_columns_are_quoted_and_nullable() {
        assert_eq!(
            add_columns(
                "\"s\".\"t\"",
                &[("Region".into(), Text), ("sold on".into(), Date)]
            ),
            "ALTER TABLE \"s\".\"t\" ADD COLUMN IF NOT EXISTS \"Region\" text, ADD COLUMN IF NOT EXISTS \"sold on\" date"
        );
    }
}
