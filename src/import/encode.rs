//! Text values from a CSV field → PostgreSQL COPY data, per column type.
//!
//! Values are checked here, before they reach the server, so that an error
//! names the file line, the column and the value, and so that `skip_rows`
//! can drop one bad row instead of failing the whole COPY. Pure functions.
//! The types with more to parse have modules of their own: [`numeric`],
//! [`datetime`].

pub mod datetime;
pub mod numeric;
mod value;

pub use datetime::{parse_date_days, parse_timestamp_us};
use numeric::check_numeric_typmod;
pub use numeric::{parse_numeric, Numeric};
pub use value::ValueError;

/// The column types cpi encodes itself; anything else is [`ColType::Other`]
/// and forces the text COPY format (the server then parses the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// `smallint`
    Int2,
    /// `integer`
    Int4,
    /// `bigint`
    Int8,
    /// `real`
    Float4,
    /// `double precision`
    Float8,
    /// `numeric`
    Numeric,
    /// `boolean`
    Bool,
    /// `text`
    Text,
    /// `varchar(n)`
    Varchar,
    /// `char(n)`
    Bpchar,
    /// `date`
    Date,
    /// `timestamp`
    Timestamp,
    /// `timestamptz`
    Timestamptz,
    /// `uuid`
    Uuid,
    /// `json`
    Json,
    /// `jsonb`
    Jsonb,
    /// Any other type: sent as text, checked by the server.
    Other,
}

impl ColType {
    /// From `pg_type.oid` (built-in types have fixed oids).
    pub fn from_oid(oid: u32) -> ColType {
        match oid {
            21 => ColType::Int2,
            23 => ColType::Int4,
            20 => ColType::Int8,
            700 => ColType::Float4,
            701 => ColType::Float8,
            1700 => ColType::Numeric,
            16 => ColType::Bool,
            25 => ColType::Text,
            1043 => ColType::Varchar,
            1042 => ColType::Bpchar,
            1082 => ColType::Date,
            1114 => ColType::Timestamp,
            1184 => ColType::Timestamptz,
            2950 => ColType::Uuid,
            114 => ColType::Json,
            3802 => ColType::Jsonb,
            _ => ColType::Other,
        }
    }

    /// The name used in "is not a valid …" messages.
    pub fn label(self) -> &'static str {
        match self {
            ColType::Int2 => "smallint",
            ColType::Int4 => "integer",
            ColType::Int8 => "bigint",
            ColType::Float4 => "real",
            ColType::Float8 => "double precision",
            ColType::Numeric => "numeric",
            ColType::Bool => "boolean",
            ColType::Text | ColType::Varchar | ColType::Bpchar | ColType::Other => "text",
            ColType::Date => "date",
            ColType::Timestamp => "timestamp",
            ColType::Timestamptz => "timestamptz",
            ColType::Uuid => "uuid",
            ColType::Json => "json",
            ColType::Jsonb => "jsonb",
        }
    }

    /// Whether PostgreSQL's input function accepts more spellings than
    /// cpi's fast parser (`Jan 1 2000`, `{a0ee…}` in groups of four, hex
    /// floats): a value the fast parser calls invalid goes to the server.
    /// For the other types cpi's verdict is the server's (proved by the
    /// property test in `tests/integration/pg_input.rs`).
    pub fn server_parses_more(self) -> bool {
        matches!(
            self,
            ColType::Float4
                | ColType::Float8
                | ColType::Date
                | ColType::Timestamp
                | ColType::Timestamptz
                | ColType::Uuid
                | ColType::Json
                | ColType::Jsonb
        )
    }

    /// Whether `IS DISTINCT FROM` works on the type as it is (json has no
    /// equality operator; for unknown types we cannot tell).
    pub fn has_equality(self) -> bool {
        !matches!(self, ColType::Json | ColType::Other)
    }
}

/// One target column as the encoder needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// The column's name as the catalog spells it.
    pub name: String,
    /// Its type, as far as cpi encodes it.
    pub ty: ColType,
    /// `pg_attribute.atttypmod` (-1 when none): varchar/char length, numeric precision.
    pub typmod: i32,
    /// `NOT NULL`: an empty value is refused before the server sees it.
    pub not_null: bool,
}

/// COPY data format of one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// `COPY … (FORMAT binary)`: every column has an encoder here.
    Binary,
    /// `COPY … (FORMAT text)`: some column's type is checked by the server.
    Text,
}

/// The fixed header of a binary COPY stream (signature, flags, extension).
pub const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end of a binary COPY stream (a tuple count of -1).
pub const BINARY_TRAILER: &[u8] = &[0xff, 0xff];

/// A value for messages: at most 50 characters, quoted and escaped so a
/// message stays on one line.
pub fn show_value(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut cut: String = text.chars().take(50).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// Appends one NULL field.
pub fn put_null(buf: &mut Vec<u8>, format: CopyFormat) {
    match format {
        CopyFormat::Binary => buf.extend_from_slice(&(-1i32).to_be_bytes()),
        CopyFormat::Text => buf.extend_from_slice(b"\\N"),
    }
}

/// Checks `value` for `col` and appends it to `buf` in `format`. On error
/// `buf` may hold a partial field: the caller truncates to the row start.
pub fn put_value(
    buf: &mut Vec<u8>,
    format: CopyFormat,
    col: &ColumnSpec,
    value: &str,
) -> Result<(), ValueError> {
    if value.as_bytes().contains(&0) {
        return Err(ValueError::Nul);
    }
    match format {
        CopyFormat::Binary => put_binary(buf, col, value),
        CopyFormat::Text => {
            // Same checks as binary, so errors read the same; the server
            // parses the text again.
            if col.ty != ColType::Other {
                let mut scratch = Vec::new();
                put_binary(&mut scratch, col, value)?;
            }
            put_text_escaped(buf, value);
            Ok(())
        }
    }
}

/// Text COPY format escaping: backslash, tab, newline and carriage return.
pub fn put_text_escaped(buf: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        buf.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}

fn put_field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    buf.extend_from_slice(bytes);
}

fn put_binary(buf: &mut Vec<u8>, col: &ColumnSpec, value: &str) -> Result<(), ValueError> {
    let ty = col.ty;
    // PostgreSQL's own input functions skip surrounding blanks for these.
    let t = value.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
    match ty {
        ColType::Int2 => {
            let v = parse_int(t, ty)?;
            let v = i16::try_from(v).map_err(|_| ValueError::OutOfRange(ty.label()))?;
            put_field(buf, &v.to_be_bytes());
        }
        ColType::Int4 => {
            let v = parse_int(t, ty)?;
            let v = i32::try_from(v).map_err(|_| ValueError::OutOfRange(ty.label()))?;
            put_field(buf, &v.to_be_bytes());
        }
        ColType::Int8 => {
            let v = parse_int(t, ty)?;
            put_field(buf, &v.to_be_bytes());
        }
        ColType::Float4 => {
            // Parsed as f32 directly: through f64 it would round twice.
            let v = parse_float(t, ty)?;
            let f: f32 = t.parse().map_err(|_| ValueError::Invalid(ty.label()))?;
            // PostgreSQL refuses overflow and underflow alike.
            if (f.is_infinite() && !v.is_infinite()) || (f == 0.0 && v != 0.0) {
                return Err(ValueError::OutOfRange(ty.label()));
            }
            put_field(buf, &f.to_be_bytes());
        }
        ColType::Float8 => {
            let v = parse_float(t, ty)?;
            put_field(buf, &v.to_be_bytes());
        }
        ColType::Numeric => {
            let n = parse_numeric(t).ok_or(ValueError::Invalid("numeric"))?;
            check_numeric_typmod(&n, col.typmod)?;
            let start = buf.len();
            buf.extend_from_slice(&[0; 4]);
            n.write_binary(buf);
            let len = (buf.len() - start - 4) as i32;
            buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        ColType::Bool => {
            let v = parse_bool(t).ok_or(ValueError::Invalid("boolean"))?;
            put_field(buf, &[v as u8]);
        }
        ColType::Text | ColType::Other => put_field(buf, value.as_bytes()),
        ColType::Varchar => {
            check_length(value, col.typmod)?;
            put_field(buf, value.as_bytes());
        }
        ColType::Bpchar => {
            // char(n) pads, and drops trailing blanks beyond n.
            check_length(value.trim_end_matches(' '), col.typmod)?;
            put_field(buf, value.as_bytes());
        }
        ColType::Date => {
            let d = parse_date_days(t).ok_or(ValueError::Invalid("date"))?;
            put_field(buf, &d.to_be_bytes());
        }
        ColType::Timestamp | ColType::Timestamptz => {
            let us = parse_timestamp_us(t, ty == ColType::Timestamptz)
                .ok_or(ValueError::Invalid(ty.label()))?;
            put_field(buf, &us.to_be_bytes());
        }
        ColType::Uuid => {
            // The uuid crate also reads `urn:uuid:…`, which PostgreSQL refuses.
            if t.len() > 38 {
                return Err(ValueError::Invalid("uuid"));
            }
            let u = uuid::Uuid::try_parse(t).map_err(|_| ValueError::Invalid("uuid"))?;
            put_field(buf, u.as_bytes());
        }
        ColType::Json | ColType::Jsonb => {
            if serde_json::from_str::<serde::de::IgnoredAny>(value).is_err() {
                return Err(ValueError::Invalid(ty.label()));
            }
            if ty == ColType::Jsonb {
                // jsonb's binary form is a version byte, then the text.
                buf.extend_from_slice(&(value.len() as i32 + 1).to_be_bytes());
                buf.push(1);
                buf.extend_from_slice(value.as_bytes());
            } else {
                put_field(buf, value.as_bytes());
            }
        }
    }
    Ok(())
}

fn check_length(value: &str, typmod: i32) -> Result<(), ValueError> {
    if typmod >= 4 {
        let max = (typmod - 4) as usize;
        // Byte length bounds the character count: count chars only when needed.
        if value.len() > max && value.chars().count() > max {
            return Err(ValueError::TooLong(max));
        }
    }
    Ok(())
}

fn parse_int(t: &str, ty: ColType) -> Result<i64, ValueError> {
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::Invalid(ty.label()));
    }
    t.parse::<i64>()
        .map_err(|_| ValueError::OutOfRange(ty.label()))
}

fn parse_float(t: &str, ty: ColType) -> Result<f64, ValueError> {
    let v: f64 = t.parse().map_err(|_| ValueError::Invalid(ty.label()))?;
    let named = t.trim_start_matches(['+', '-']);
    if v.is_infinite()
        && !named
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case("inf"))
    {
        return Err(ValueError::OutOfRange(ty.label()));
    }
    let mantissa = t.split(['e', 'E']).next().unwrap_or("");
    if v == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return Err(ValueError::OutOfRange(ty.label()));
    }
    Ok(v)
}

/// PostgreSQL's boolean spellings, as `boolin` reads them: any prefix of
/// `true`/`false`/`yes`/`no`, `on`, `off`, `1`, `0`, case-insensitive.
pub fn parse_bool(t: &str) -> Option<bool> {
    let l = t.to_ascii_lowercase();
    let prefix_of = |w: &str| !l.is_empty() && w.starts_with(l.as_str());
    match l.as_bytes().first()? {
        b't' if prefix_of("true") => Some(true),
        b'f' if prefix_of("false") => Some(false),
        b'y' if prefix_of("yes") => Some(true),
        b'n' if prefix_of("no") => Some(false),
        b'o' if l == "on" => Some(true),
        b'o' if l.len() >= 2 && "off".starts_with(l.as_str()) => Some(false),
        b'1' if l == "1" => Some(true),
        b'0' if l == "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: ColType) -> ColumnSpec {
        ColumnSpec {
            name: "c".into(),
            ty,
            typmod: -1,
            not_null: false,
        }
    }

    fn bin(ty: ColType, v: &str) -> Result<Vec<u8>, ValueError> {
        let mut b = Vec::new();
        put_value(&mut b, CopyFormat::Binary, &col(ty), v)?;
        Ok(b)
    }

    /// Each value refused for its type with the given error.
    fn refused(rows: &[(ColType, &str, ValueError)]) {
        for (ty, v, want) in rows {
            assert_eq!(bin(*ty, v), Err(want.clone()), "{ty:?} {v:?}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(
            bin(ColType::Int4, " 42 ").unwrap(),
            [0, 0, 0, 4, 0, 0, 0, 42]
        );
        assert_eq!(bin(ColType::Int2, "-1").unwrap(), [0, 0, 0, 2, 0xff, 0xff]);
        refused(&[
            (ColType::Int2, "40000", ValueError::OutOfRange("smallint")),
            (ColType::Int8, "1.5", ValueError::Invalid("bigint")),
            (ColType::Int8, "", ValueError::Invalid("bigint")),
            (
                ColType::Int8,
                "99999999999999999999",
                ValueError::OutOfRange("bigint"),
            ),
        ]);
    }

    #[test]
    fn floats_refuse_overflow_and_underflow() {
        refused(&[
            (ColType::Float4, "1e-300", ValueError::OutOfRange("real")),
            (
                ColType::Float8,
                "1e-400",
                ValueError::OutOfRange("double precision"),
            ),
            (
                ColType::Float8,
                "1e400",
                ValueError::OutOfRange("double precision"),
            ),
        ]);
        assert!(bin(ColType::Float8, "0e5").is_ok());
        assert!(bin(ColType::Float4, "-Infinity").is_ok());
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("off"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn numeric_typmod_overflow() {
        let c = ColumnSpec {
            typmod: ((5 << 16) | 2) + 4,
            ..col(ColType::Numeric)
        };
        let mut b = Vec::new();
        assert!(put_value(&mut b, CopyFormat::Binary, &c, "999.99").is_ok());
        assert_eq!(
            put_value(&mut b, CopyFormat::Binary, &c, "1000"),
            Err(ValueError::NumericOverflow {
                precision: 5,
                scale: 2
            })
        );
    }

    #[test]
    fn text_checks() {
        let c = ColumnSpec {
            typmod: 3 + 4,
            ..col(ColType::Varchar)
        };
        let mut b = Vec::new();
        assert!(put_value(&mut b, CopyFormat::Binary, &c, "äöü").is_ok());
        assert_eq!(
            put_value(&mut b, CopyFormat::Binary, &c, "abcd"),
            Err(ValueError::TooLong(3))
        );
        assert_eq!(bin(ColType::Jsonb, "{\"a\":1}").unwrap()[4], 1);
        refused(&[
            (ColType::Text, "a\0b", ValueError::Nul),
            (ColType::Json, "{a:1}", ValueError::Invalid("json")),
            (ColType::Uuid, "not-a-uuid", ValueError::Invalid("uuid")),
        ]);
    }

    #[test]
    fn text_format_escapes_and_still_checks() {
        let mut b = Vec::new();
        put_value(&mut b, CopyFormat::Text, &col(ColType::Other), "a\tb\\c\nd").unwrap();
        assert_eq!(b, b"a\\tb\\\\c\\nd");
        assert_eq!(
            put_value(&mut b, CopyFormat::Text, &col(ColType::Int4), "x"),
            Err(ValueError::Invalid("integer"))
        );
    }

    #[test]
    fn shown_values_are_short_and_one_line() {
        assert_eq!(show_value(b"12,5"), "\"12,5\"");
        assert_eq!(show_value(b"a\nb"), "\"a\\nb\"");
        let long = "x".repeat(80);
        assert_eq!(show_value(long.as_bytes()).chars().count(), 53);
        assert_eq!(
            ValueError::Invalid("numeric").message(&show_value(b"12,5")),
            "\"12,5\" is not a valid numeric"
        );
    }
}
