//! `ragged_rows` (issue 27): whether a record with more or fewer fields
//! than the header is loaded (padded with NULL, or its extra fields
//! dropped) or is a row error; and a second table in the file, found at
//! its header (names, of another width), which ends the first: its rows
//! are row errors, or with `rescue` kept whole in `_rescued`. Pure; the
//! pipeline applies it.

use std::borrow::Cow;

use crate::config::RaggedRows;

/// The column `ragged_rows: rescue` keeps what did not fit in.
pub const RESCUED_COLUMN: &str = "_rescued";

/// The field index that stands for [`RESCUED_COLUMN`] in a column plan
/// (no record has that many fields).
pub const RESCUED_FIELD: usize = usize::MAX;

/// Field `fi` of `record` (a file of `width` fields), or for
/// [`RESCUED_FIELD`] what the record keeps in [`RESCUED_COLUMN`]. A record
/// of a second table (`after`: the line of its header) fills no column:
/// it is kept whole in [`RESCUED_COLUMN`].
pub fn field(
    record: &csv::ByteRecord,
    fi: usize,
    width: usize,
    after: Option<u64>,
) -> Option<Cow<'_, [u8]>> {
    match (fi == RESCUED_FIELD, after) {
        (true, Some(line)) => Some(Cow::Owned(second_table(record.iter(), line).into_bytes())),
        (false, Some(_)) => None,
        (true, None) => {
            rescued(record.iter(), record.len(), width).map(|s| Cow::Owned(s.into_bytes()))
        }
        (false, None) => record.get(fi).map(Cow::Borrowed),
    }
}

/// What a record of a second table keeps in [`RESCUED_COLUMN`]: its fields
/// and the line its table's header is on.
pub fn second_table<'a>(fields: impl Iterator<Item = &'a [u8]>, header_line: u64) -> String {
    let fields: Vec<String> = fields
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    serde_json::json!({ "second_table": header_line, "fields": fields }).to_string()
}

/// Whether a record of another width than the header reads as the header
/// of a second table in the file: two fields or more, each a name (not
/// empty, at most 63 bytes, not a value: `is_value` tells numbers, dates,
/// times and booleans).
pub fn second_header<'a>(
    fields: impl ExactSizeIterator<Item = &'a [u8]>,
    width: usize,
    is_value: impl Fn(&str) -> bool,
) -> bool {
    let len = fields.len();
    if len < 2 || len == width {
        return false;
    }
    let mut fields = fields;
    fields.all(|f| {
        let Ok(v) = std::str::from_utf8(f) else {
            return false;
        };
        let v = v.trim();
        !v.is_empty() && v.len() <= 63 && !is_value(v)
    })
}

/// The row error of a record from a second table's header on, when
/// `ragged_rows` is not `rescue`.
pub fn second_table_error(header_line: u64, line: u64) -> String {
    if line == header_line {
        format!(
            "a second table starts here (its header's width is not the first table's): the first table ends at line {}; split the file, or set ragged_rows: rescue to keep the rest in {RESCUED_COLUMN}",
            line.saturating_sub(1)
        )
    } else {
        format!("a row of the second table whose header is on line {header_line}")
    }
}

/// What a record of `len` fields keeps in [`RESCUED_COLUMN`] for a file of
/// `width`: its extra fields, or how many it lacks (`None`: it fits).
pub fn rescued<'a>(
    fields: impl Iterator<Item = &'a [u8]>,
    len: usize,
    width: usize,
) -> Option<String> {
    if len > width {
        let extra: Vec<String> = fields
            .skip(width)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        Some(serde_json::json!({ "extra": extra }).to_string())
    } else if len < width {
        Some(serde_json::json!({ "missing": width - len }).to_string())
    } else {
        None
    }
}

/// A record that `ragged_rows` does not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {width} fields, found {len}")]
pub struct WrongWidth {
    /// The header's fields.
    pub width: usize,
    /// The record's.
    pub len: usize,
}

/// Whether a record of `len` fields may be loaded into a file of `width`
/// (the header's), per `ragged_rows`; the row error if not.
pub fn fits(len: usize, width: usize, r: RaggedRows) -> Result<(), WrongWidth> {
    use RaggedRows::*;
    let fits = match r {
        Error => len == width,
        Pad => len <= width,
        Truncate | Rescue => true,
    };
    if fits {
        return Ok(());
    }
    Err(WrongWidth { width, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_rows_decision_table() {
        use crate::config::RaggedRows::*;
        for (len, r, ok) in [
            (3, Error, true),
            (2, Error, false),
            (4, Error, false),
            (2, Pad, true),
            (4, Pad, false),
            (2, Truncate, true),
            (4, Truncate, true),
            (9, Rescue, true),
            (0, Pad, true),
        ] {
            assert_eq!(fits(len, 3, r).is_ok(), ok, "{len} {r:?}");
        }
        assert_eq!(
            fits(4, 3, Pad).unwrap_err().to_string(),
            "expected 3 fields, found 4"
        );
        let f: Vec<&[u8]> = vec![b"1", b"a", b"x,\"y"];
        assert_eq!(
            rescued(f.iter().copied(), 3, 2).as_deref(),
            Some(r#"{"extra":["x,\"y"]}"#)
        );
        assert_eq!(
            rescued(f.iter().copied(), 3, 5).as_deref(),
            Some(r#"{"missing":2}"#)
        );
        assert_eq!(rescued(f.iter().copied(), 3, 3), None);
    }

    #[test]
    fn a_second_header_is_names_of_another_width() {
        fn rec<'a>(v: &[&'a str]) -> Vec<&'a [u8]> {
            v.iter().map(|s| s.as_bytes()).collect()
        }
        let value = |v: &str| v.parse::<f64>().is_ok() || v == "true" || v.starts_with("2024-");
        let is = |v: &[&str], w| second_header(rec(v).into_iter(), w, value);
        assert!(is(&["summary", "count"], 3));
        assert!(is(&["Region", "Total sales", "Notes"], 5));
        // Same width, a value, an empty field, one field: not a header.
        assert!(!is(&["summary", "count"], 2));
        assert!(!is(&["rows", "30"], 3));
        assert!(!is(&["2024-01-02", "x"], 3));
        assert!(!is(&["summary", ""], 3));
        assert!(!is(&["summary"], 3));
        assert!(!is(&["summary", "true"], 3));
        assert_eq!(
            second_table(rec(&["rows", "30"]).into_iter(), 33),
            r#"{"second_table":33,"fields":["rows","30"]}"#
        );
    }
}
