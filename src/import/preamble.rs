//! `skip_lines: auto` (issue 27): the lines above the header that are not
//! the table (a title, an export's notes) end where the field counts become
//! consistent. The rule is pure ([`first_consistent`]); [`sample`] reads
//! the first records through the import's reader, so it inherits its
//! budgets (and [`shape`](super::shape) decides with it).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::config::ResolvedOptions;
use crate::import::reader;

/// Records read to decide (the preamble is above them).
pub const SAMPLE_RECORDS: usize = 200;

/// Records in a row with the same field count that start the table.
const RUN: usize = 3;

/// Where the table starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// Lines dropped before it.
    pub skip: u64,
    /// The field count the table's rows have.
    pub fields: usize,
}

/// The first line from which the field counts are consistent, from the
/// first records' `(line, field count)`: the most common count of the
/// sample (ties: the larger), and the first record from which three
/// records in a row (or all that are left) have it. A first record off by
/// one field just before that run is kept: it is the header with one
/// separator too many or too few, not a preamble.
pub fn first_consistent(records: &[(u64, usize)]) -> Start {
    let mut tally: Vec<(usize, usize)> = Vec::new();
    for &(_, n) in records {
        match tally.iter_mut().find(|(c, _)| *c == n) {
            Some(t) => t.1 += 1,
            None => tally.push((n, 1)),
        }
    }
    let Some(&(mode, _)) = tally.iter().max_by_key(|(c, k)| (*k, *c)) else {
        return Start { skip: 0, fields: 0 };
    };
    let run = |i: usize| {
        let end = (i + RUN).min(records.len());
        records[i..end].iter().all(|&(_, n)| n == mode)
    };
    let mut b = (0..records.len()).find(|&i| run(i)).unwrap_or(0);
    if b == 1 && records[0].1.abs_diff(mode) == 1 {
        b = 0;
    }
    let skip = if b == 0 { 0 } else { records[b].0 - 1 };
    Start { skip, fields: mode }
}

/// The first [`SAMPLE_RECORDS`] records, each with its line, read as
/// the import reads them (fields as text, invalid UTF-8 replaced).
pub fn sample(
    source: &reader::Source,
    o: &ResolvedOptions,
) -> csv::Result<Vec<(u64, Vec<String>)>> {
    let mut records = reader::open(source, o, Arc::new(AtomicU64::new(0)), None)?;
    let mut r = csv::ByteRecord::new();
    let mut out = Vec::new();
    while out.len() < SAMPLE_RECORDS && records.read_byte_record(&mut r)? {
        let fields = r
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect();
        out.push((r.position().map_or(0, |p| p.line()), fields));
    }
    Ok(out)
}

/// The decision of `skip_lines: auto`, for the job.
pub fn note(start: Start) -> String {
    match start.skip {
        0 => format!(
            "skip_lines: auto → 0 (the field counts are consistent from the first line, {} fields)",
            start.fields
        ),
        n => format!(
            "skip_lines: auto → {n} (the field counts are consistent from line {}, {} fields)",
            n + 1,
            start.fields
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(counts: &[usize]) -> Vec<(u64, usize)> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &n)| (i as u64 + 1, n))
            .collect()
    }

    #[test]
    fn preamble_decision_table() {
        let rows: Vec<(Vec<(u64, usize)>, u64)> = vec![
            // A clean file: nothing skipped.
            (lines(&[3, 3, 3, 3]), 0),
            // Two title lines (one with a comma) and a blank line.
            (vec![(1, 1), (2, 2), (4, 3), (5, 3), (6, 3), (7, 3)], 3),
            // A header with one separator too many (or too few) is the
            // header: so is a one-field title above a two-column table.
            (lines(&[6, 5, 5, 5, 5]), 0),
            (lines(&[4, 5, 5, 5, 5]), 0),
            // A title then such a header: the title goes, the header too
            // (one rule cannot tell them apart; header detection can).
            (lines(&[1, 6, 5, 5, 5]), 2),
            // Ragged rows further down do not move the start.
            (lines(&[1, 5, 5, 5, 6, 5, 4, 5]), 1),
            // Short files: what there is.
            (lines(&[2]), 0),
            (lines(&[1, 2, 2, 2]), 0),
            (lines(&[1, 1, 2, 2, 2]), 2),
            (vec![], 0),
        ];
        for (i, (records, skip)) in rows.into_iter().enumerate() {
            assert_eq!(
                first_consistent(&records).skip,
                skip,
                "row {i}: {records:?}"
            );
        }
    }
}
