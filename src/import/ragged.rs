//! `ragged_rows` (issue 27): whether a record with more or fewer fields
//! than the header is loaded (padded with NULL, or its extra fields
//! dropped) or is a row error. Pure; the pipeline applies it.

use crate::config::RaggedRows;

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
        Truncate => true,
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
            (0, Pad, true),
        ] {
            assert_eq!(fits(len, 3, r).is_ok(), ok, "{len} {r:?}");
        }
        assert_eq!(
            fits(4, 3, Pad).unwrap_err().to_string(),
            "expected 3 fields, found 4"
        );
    }
}
