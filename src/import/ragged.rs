//! `ragged_rows` (issue 27): whether a record with more or fewer fields
//! than the header is loaded (padded with NULL, or its extra fields
//! dropped) or is a row error. Pure; the pipeline applies it.

use std::borrow::Cow;

use crate::config::RaggedRows;

/// The column `ragged_rows: rescue` keeps what did not fit in.
pub const RESCUED_COLUMN: &str = "_rescued";

/// The field index that stands for [`RESCUED_COLUMN`] in a column plan
/// (no record has that many fields).
pub const RESCUED_FIELD: usize = usize::MAX;

/// Field `fi` of `record` (a file of `width` fields), or for
/// [`RESCUED_FIELD`] what the record keeps in [`RESCUED_COLUMN`].
pub fn field(record: &csv::ByteRecord, fi: usize, width: usize) -> Option<Cow<'_, [u8]>> {
    if fi == RESCUED_FIELD {
        rescued(record.iter(), record.len(), width).map(|s| Cow::Owned(s.into_bytes()))
    } else {
        record.get(fi).map(Cow::Borrowed)
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
}
