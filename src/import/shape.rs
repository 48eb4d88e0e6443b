//! The file's shape decided before it is read (issue 27): `skip_lines:
//! auto` (where the table starts, [`preamble`]), `header: auto` and the
//! header's rows (from the types of the first rows against the rows below,
//! as CSV sniffers do). The rules are pure; [`decide`] reads a sample of
//! records through the import's reader and returns the options with every
//! `auto` of these replaced by its decision, and the decisions' notes.

use crate::config::{ResolvedOptions, SkipLines};
use crate::import::infer::{join, value_type, Inferred};
use crate::import::{preamble, reader};

/// The most lines a header may span when detected.
pub const MAX_HEADER_ROWS: usize = 3;

/// What `header: auto` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderGuess {
    /// Whether the first record names the columns.
    pub header: bool,
    /// How many records the header spans (0 without one).
    pub rows: usize,
    /// Why, for the job.
    pub why: String,
}

/// The type of a column over `rows`: its non-empty values joined (`None`
/// when it has none).
fn column_type(rows: &[Vec<String>], c: usize) -> Option<Inferred> {
    rows.iter()
        .filter_map(|r| r.get(c))
        .filter(|v| !v.trim().is_empty())
        .map(|v| value_type(v))
        .reduce(join)
}

/// How a record's values compare with typed columns: how many fit their
/// column's type, and the first that does not (column, value).
fn fit(row: &[String], types: &[Option<Inferred>]) -> (usize, Option<(usize, String)>) {
    let mut fits = 0;
    let mut misfit = None;
    for (c, t) in types.iter().enumerate() {
        let (Some(t), Some(v)) = (t, row.get(c)) else {
            continue;
        };
        if *t == Inferred::Text || v.trim().is_empty() {
            continue;
        }
        if join(value_type(v), *t) == Inferred::Text {
            misfit.get_or_insert((c, v.clone()));
        } else {
            fits += 1;
        }
    }
    (fits, misfit)
}

/// `header: auto`: the first record is a header unless every typed column
/// (a column whose values below are numbers, dates, booleans…) has a value
/// of its type in it. A record with a text value in a typed column is a
/// header line; following ones like it (up to [`MAX_HEADER_ROWS`]) are
/// more header lines. Without a typed column it cannot tell and keeps the
/// header (the default of every other table). `rows` are the first records
/// after `skip_lines`, `first_line` the line of the first.
pub fn detect_header(rows: &[Vec<String>], first_line: u64) -> HeaderGuess {
    let keep = |why: &str| HeaderGuess {
        header: true,
        rows: 1,
        why: why.to_string(),
    };
    if rows.len() < 2 {
        return keep("true (too few rows to compare)");
    }
    // The rows below the longest header there may be, when there are some.
    let below = if rows.len() > MAX_HEADER_ROWS + 1 {
        MAX_HEADER_ROWS
    } else {
        1
    };
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let types: Vec<Option<Inferred>> = (0..width).map(|c| column_type(&rows[below..], c)).collect();
    if !types.iter().any(|t| t.is_some_and(|t| t != Inferred::Text)) {
        return keep("true (no column of the rows below has a type to compare with)");
    }
    let empty = |r: &[String]| r.iter().all(|v| v.trim().is_empty());
    let (fits, misfit) = fit(&rows[0], &types);
    if fits > 0 && misfit.is_none() {
        return HeaderGuess {
            header: false,
            rows: 0,
            why: format!(
                "false (the values of line {first_line} have the types of the rows below)"
            ),
        };
    }
    // More header lines: no value of theirs fits a typed column (a line of
    // empty names above the others, as merged cells export, included).
    let mut n = 1;
    let mut misfit = misfit;
    while n < MAX_HEADER_ROWS && n + 1 < rows.len() {
        match fit(&rows[n], &types) {
            (0, Some(m)) => {
                misfit.get_or_insert(m);
            }
            (0, None) if empty(&rows[n]) => {}
            _ => break,
        }
        n += 1;
    }
    let why = match misfit {
        Some((c, v)) => format!(
            "true (field {} of the header from line {first_line}, {v:?}, is not {} like the rows below)",
            c + 1,
            types[c].map_or("typed", Inferred::sql)
        ),
        None => format!("true (no value of line {first_line} has the type of its column below)"),
    };
    HeaderGuess {
        header: true,
        rows: n,
        why,
    }
}

/// The options with `skip_lines: auto` and `header: auto` decided from the
/// file's first records (one partial pass through the reader), and the
/// decisions for the job. Options without `auto` come back as they are.
pub fn decide(
    source: &reader::Source,
    o: &ResolvedOptions,
) -> csv::Result<(ResolvedOptions, Vec<String>)> {
    let mut o = o.clone();
    let mut notes = Vec::new();
    if o.skip_lines != SkipLines::Auto && !o.header_auto {
        return Ok((o, notes));
    }
    let mut probe = o.clone();
    probe.skip_lines = SkipLines::Lines(0);
    let sample = preamble::sample(source, &probe)?;
    if o.skip_lines == SkipLines::Auto {
        let counts: Vec<(u64, usize)> = sample.iter().map(|(l, f)| (*l, f.len())).collect();
        let start = preamble::first_consistent(&counts);
        notes.push(preamble::note(start));
        o.skip_lines = SkipLines::Lines(start.skip);
    }
    if o.header_auto {
        let SkipLines::Lines(skip) = o.skip_lines else {
            unreachable!("decided above");
        };
        let rows: Vec<&(u64, Vec<String>)> = sample.iter().filter(|(l, _)| *l > skip).collect();
        let first_line = rows.first().map_or(1, |(l, _)| *l);
        let fields: Vec<Vec<String>> = rows.into_iter().map(|(_, f)| f.clone()).collect();
        let g = detect_header(&fields, first_line);
        notes.push(format!("header: auto → {}", g.why));
        o.header = g.header;
        o.header_auto = false;
        if g.header && o.header_rows.is_none() {
            if g.rows > 1 {
                notes.push(format!(
                    "header_rows: auto → {} (lines {first_line}-{} have text where the rows below have types; names joined with _)",
                    g.rows,
                    first_line + g.rows as u64 - 1
                ));
            }
            o.header_rows = Some(g.rows as u64);
        }
        if g.header {
            if let Some(w) = header_width(&fields, g.rows) {
                let names = fields[..g.rows].iter().map(Vec::len).max().unwrap_or(0);
                notes.push(if w > names {
                    format!(
                        "header: line {first_line} has {names} fields, the rows below {w}: read as {w} columns, the last {} named column_N",
                        w - names
                    )
                } else {
                    format!(
                        "header: line {first_line} has {names} fields, the rows below {w}: its last {} (empty) dropped",
                        names - w
                    )
                });
                o.header_width = Some(w);
            }
        }
    }
    Ok((o, notes))
}

/// The rows' width when the header (its first `rows` records) is not,
/// by a separator missing from it or one too many: nine in ten of the
/// records below have one width, and the header is narrower (the values
/// past its names are then named `column_N`), or wider by empty names
/// only (a trailing separator: those names are dropped). No value shifts:
/// each lands under its position.
pub fn header_width(records: &[Vec<String>], rows: usize) -> Option<usize> {
    let head = records.get(..rows)?;
    let names = head.iter().map(Vec::len).max()?;
    let body = &records[rows..];
    if body.len() < 2 {
        return None;
    }
    let mut counts = std::collections::BTreeMap::<usize, usize>::new();
    for r in body {
        *counts.entry(r.len()).or_default() += 1;
    }
    let (&width, &n) = counts.iter().max_by_key(|(w, n)| (**n, **w))?;
    if n * 10 < body.len() * 9 || width == names {
        return None;
    }
    let unnamed_past = |w: usize| {
        head.iter()
            .all(|r| r.iter().skip(w).all(|v| v.trim().is_empty()))
    };
    (width > names || unnamed_past(width)).then_some(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(lines: &[&str]) -> Vec<Vec<String>> {
        lines
            .iter()
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    }

    const BODY: &[&str] = &[
        "1,Boot,41.37,true",
        "2,Shoe,42.74,false",
        "3,Sock,1.00,true",
        "4,Hat,12.50,true",
    ];

    fn with(head: &[&str]) -> Vec<Vec<String>> {
        let all: Vec<&str> = head.iter().chain(BODY).copied().collect();
        rows(&all)
    }

    #[test]
    fn header_decision_table() {
        let cases: Vec<(Vec<Vec<String>>, bool, usize)> = vec![
            (with(&["id,name,price,in_stock"]), true, 1),
            (with(&[]), false, 0),
            (
                with(&["product,product,unit,in", "id,name,price,stock"]),
                true,
                2,
            ),
            (with(&["a,a,a,a", "b,b,b,b", "c,c,c,c"]), true, 3),
            (with(&[",,,", ",,,stock", "id,name,price,in"]), true, 3),
            // An empty name is still a header line.
            (with(&["id,,price,in_stock"]), true, 1),
            // All text: cannot tell, the header is kept.
            (rows(&["a,b", "x,y", "z,w"]), true, 1),
            // Too few rows.
            (rows(&["1,2"]), true, 1),
        ];
        for (i, (r, header, n)) in cases.into_iter().enumerate() {
            let g = detect_header(&r, 1);
            assert_eq!((g.header, g.rows), (header, n), "case {i}: {}", g.why);
        }
    }

    #[test]
    fn a_header_off_by_a_separator_is_read_at_the_rows_width() {
        let short = rows(&[
            "id,name,price",
            "1,Boot,41.37,true",
            "2,Shoe,42.74,false",
            "3,Sock,1.00,true",
        ]);
        assert_eq!(header_width(&short, 1), Some(4));
        // A trailing separator: the empty name goes.
        assert_eq!(
            header_width(&with(&["id,name,price,in_stock,"]), 1),
            Some(4)
        );
        // As wide as the rows: nothing to do; wider by a real name: kept
        // (ragged_rows decides).
        assert_eq!(header_width(&with(&["id,name,price,in_stock"]), 1), None);
        assert_eq!(
            header_width(&rows(&["a,b,c,d,e", "1,2,3,4", "5,6,7,8"]), 1),
            None
        );
        // Rows of many widths: not a header's separator.
        let ragged = rows(&["a,b", "1,2,3", "1,2,3,4", "1,2,3,4,5", "1"]);
        assert_eq!(header_width(&ragged, 1), None);
        // Two header lines, the wider of them counts.
        let two = rows(&["a,b,c", "x,y", "1,2,3,4", "5,6,7,8"]);
        assert_eq!(header_width(&two, 2), Some(4));
    }

    #[test]
    fn header_decisions_say_why() {
        assert_eq!(
            detect_header(&with(&["id,name,price,in_stock"]), 4).why,
            "true (field 1 of the header from line 4, \"id\", is not smallint like the rows below)"
        );
        assert_eq!(
            detect_header(&with(&[]), 1).why,
            "false (the values of line 1 have the types of the rows below)"
        );
    }
}
