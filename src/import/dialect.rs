//! The file's value dialect: what its numbers, booleans, dates and
//! timestamps look like when they are not PostgreSQL's spelling
//! (`1.234,56`, `Ja`/`Nein`, `31.12.2024` with an explicit format). A value
//! is rewritten to PostgreSQL's spelling before the type checks of
//! [`encode`](super::encode) see it. Pure.

use std::borrow::Cow;

use crate::config::ResolvedOptions;
use crate::import::encode::{ColType, ColumnSpec, ValueError};

/// How one column's values are rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialect {
    /// Numbers with other separators.
    Number {
        /// `b','` when the decimal separator is a comma.
        decimal: u8,
        /// Removed before parsing.
        thousands: Option<u8>,
        /// Currency symbols read off before parsing (`currency_symbols`).
        currency: Vec<String>,
    },
    /// Extra boolean spellings, lower case.
    Bool {
        /// Read as true.
        yes: Vec<String>,
        /// Read as false.
        no: Vec<String>,
    },
    /// A `date` column with an explicit format.
    Date(String),
    /// A `timestamp`/`timestamptz` column with an explicit format.
    Timestamp(String),
}

/// The dialect of each column (`None`: values as PostgreSQL spells them,
/// the fast path).
pub fn for_columns(o: &ResolvedOptions, columns: &[&ColumnSpec]) -> Vec<Option<Dialect>> {
    columns.iter().map(|c| for_column(o, c)).collect()
}

fn for_column(o: &ResolvedOptions, c: &ColumnSpec) -> Option<Dialect> {
    use ColType::*;
    match c.ty {
        Int2 | Int4 | Int8 | Numeric | Float4 | Float8
            if o.decimal_separator != b'.'
                || o.thousands_separator.is_some()
                || !o.currency_symbols.is_empty() =>
        {
            Some(Dialect::Number {
                decimal: o.decimal_separator,
                thousands: o.thousands_separator,
                currency: o.currency_symbols.clone(),
            })
        }
        Bool if !o.true_values.is_empty() || !o.false_values.is_empty() => Some(Dialect::Bool {
            yes: o.true_values.iter().map(|v| v.to_lowercase()).collect(),
            no: o.false_values.iter().map(|v| v.to_lowercase()).collect(),
        }),
        Date => o
            .date_format
            .as_ref()
            .and_then(|f| f.for_column(&c.name))
            .map(|f| Dialect::Date(f.to_string())),
        Timestamp | Timestamptz => o
            .timestamp_format
            .as_ref()
            .and_then(|f| f.for_column(&c.name))
            .map(|f| Dialect::Timestamp(f.to_string())),
        _ => None,
    }
}

/// A number as spelt with `decimal` and `thousands` separators and
/// `currency` symbols, in PostgreSQL's spelling (borrowed when it already
/// is). The per-value step of a number column with a dialect: nothing is
/// allocated for a value that needs no change.
pub fn number<'v>(
    value: &'v str,
    decimal: u8,
    thousands: Option<u8>,
    currency: &[String],
) -> Cow<'v, str> {
    let value = if currency.is_empty() {
        Cow::Borrowed(value)
    } else {
        strip_currency(value, currency)
    };
    let t = thousands.map(char::from);
    if !value.contains(|c| Some(c) == t || c == char::from(decimal)) {
        return value;
    }
    Cow::Owned(
        value
            .chars()
            .filter(|c| Some(*c) != t)
            .map(|c| if c == char::from(decimal) { '.' } else { c })
            .collect(),
    )
}

/// `value` without a currency symbol of `symbols` before or after the
/// number (`$1.50`, `1,50 €`, `-$1.50`, `$-1.50`, `USD 3`); as it is when
/// it has none.
fn strip_currency<'v>(value: &'v str, symbols: &[String]) -> Cow<'v, str> {
    let v = value.trim();
    let (sign, body) = match v.strip_prefix('-') {
        Some(rest) => ("-", rest.trim_start()),
        None => ("", v),
    };
    for s in symbols {
        if let Some(rest) = body.strip_prefix(s.as_str()) {
            return Cow::Owned(format!("{sign}{}", rest.trim_start()));
        }
        if let Some(rest) = body.strip_suffix(s.as_str()) {
            return Cow::Owned(format!("{sign}{}", rest.trim_end()));
        }
    }
    Cow::Borrowed(value)
}

impl Dialect {
    /// `value` in PostgreSQL's spelling; an explicit format that does not
    /// match is an error (the operator said what the values look like).
    pub fn rewrite<'a>(&self, value: &'a str) -> Result<Cow<'a, str>, ValueError> {
        match self {
            Dialect::Number {
                decimal,
                thousands,
                currency,
            } => Ok(number(value, *decimal, *thousands, currency)),
            Dialect::Bool { yes, no } => {
                let l = value.trim().to_lowercase();
                Ok(if yes.contains(&l) {
                    Cow::Borrowed("true")
                } else if no.contains(&l) {
                    Cow::Borrowed("false")
                } else {
                    Cow::Borrowed(value)
                })
            }
            Dialect::Date(f) => chrono::NaiveDate::parse_from_str(value.trim(), f)
                .map(|d| Cow::Owned(d.format("%Y-%m-%d").to_string()))
                .map_err(|_| ValueError::Format(f.clone())),
            Dialect::Timestamp(f) => {
                let v = value.trim();
                if let Ok(t) = chrono::DateTime::parse_from_str(v, f) {
                    return Ok(Cow::Owned(t.format("%Y-%m-%d %H:%M:%S%.f%:z").to_string()));
                }
                chrono::NaiveDateTime::parse_from_str(v, f)
                    .map(|t| Cow::Owned(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()))
                    .map_err(|_| ValueError::Format(f.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(dec: u8, th: Option<u8>, v: &str) -> String {
        Dialect::Number {
            decimal: dec,
            thousands: th,
            currency: vec!["$".into(), "€".into(), "USD".into()],
        }
        .rewrite(v)
        .unwrap()
        .into_owned()
    }

    #[test]
    fn numbers_with_other_separators() {
        assert_eq!(num(b',', Some(b'.'), "1.234,56"), "1234.56");
        assert_eq!(num(b'.', Some(b','), "1,234,567.5"), "1234567.5");
        assert_eq!(num(b',', None, "-0,5"), "-0.5");
        assert_eq!(num(b'.', Some(b' '), "12 000"), "12000");
        assert_eq!(num(b',', Some(b'.'), "42"), "42");
    }

    #[test]
    fn numbers_with_a_currency_symbol_named() {
        assert_eq!(num(b'.', Some(b','), "$1,234.56"), "1234.56");
        assert_eq!(num(b'.', Some(b','), "-$1.50"), "-1.50");
        assert_eq!(num(b'.', Some(b','), "$ -1.50"), "-1.50");
        assert_eq!(num(b',', Some(b'.'), "1.234,50 €"), "1234.50");
        assert_eq!(num(b'.', None, "USD 3"), "3");
        // A symbol not named stays, and the value is refused as it is.
        assert_eq!(num(b'.', None, "£3"), "£3");
    }

    #[test]
    fn booleans_dates_timestamps() {
        let b = Dialect::Bool {
            yes: vec!["ja".into()],
            no: vec!["nein".into()],
        };
        assert_eq!(b.rewrite("JA").unwrap(), "true");
        assert_eq!(b.rewrite("Nein").unwrap(), "false");
        assert_eq!(b.rewrite("t").unwrap(), "t");
        let d = Dialect::Date("%d.%m.%Y".into());
        assert_eq!(d.rewrite("31.12.2024").unwrap(), "2024-12-31");
        assert_eq!(
            d.rewrite("2024-12-31"),
            Err(ValueError::Format("%d.%m.%Y".into()))
        );
        let t = Dialect::Timestamp("%d/%m/%Y %H:%M".into());
        assert_eq!(
            t.rewrite("31/12/2024 23:59").unwrap(),
            "2024-12-31 23:59:00"
        );
        let tz = Dialect::Timestamp("%d/%m/%Y %H:%M %z".into());
        assert_eq!(
            tz.rewrite("31/12/2024 23:59 +0100").unwrap(),
            "2024-12-31 23:59:00+01:00"
        );
    }
}
