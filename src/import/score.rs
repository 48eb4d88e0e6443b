//! `delimiter: auto` (and `quote: auto`): the dialect chosen by how
//! consistent the rows' field counts and how recognisable their values
//! are over a sample of the file, the pattern-and-type score of CleverCSV
//! (van den Burg, Nazábal and Sutton, "Wrangling messy CSV files by
//! detecting row and type patterns", 2019). Pure.
//!
//! For each candidate (delimiter × quote) the sample is split into rows of
//! cells as that dialect reads it. The pattern score is
//! `P = 1/K · Σ_k N_k · max(α, L_k − 1) / L_k` over the K distinct field
//! counts L_k of the rows (N_k rows each, α = 0.001): high when the rows
//! agree and have several fields. The type score `T` is the share of cells
//! that look like a value (empty, a number, a boolean, a date or time, a
//! word or phrase without stray blanks or quotes). The dialect with the
//! highest `P · T` wins; ties go to the earlier candidate.

/// The delimiters `delimiter: auto` chooses among, in the order ties go.
pub const DELIMITERS: &[&[u8]] = &[b",", b";", b"\t", b"|", b", ", b"; ", b"| "];

/// The quotes `quote: auto` chooses among (`None`: quotes are data).
pub const QUOTES: &[Option<u8>] = &[Some(b'"'), Some(b'\''), None];

const ALPHA: f64 = 0.001;

/// The rows of `sample` as `delimiter` and `quote` split them: a quote
/// opens a field only at its start, a doubled quote inside is one quote. A
/// last line without its newline is left out (the sample may cut it).
pub fn split(sample: &[u8], delimiter: &[u8], quote: Option<u8>) -> Vec<Vec<String>> {
    split_escaped(sample, delimiter, quote, None)
}

/// [`split`], with `escape` (a backslash, say) inside quotes taking the
/// next byte as it is.
pub fn split_escaped(
    sample: &[u8],
    delimiter: &[u8],
    quote: Option<u8>,
    escape: Option<u8>,
) -> Vec<Vec<String>> {
    let text = String::from_utf8_lossy(sample);
    let b = text.as_bytes();
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut cell: Vec<u8> = Vec::new();
    let (mut i, mut start, mut quoted) = (0, true, false);
    while i < b.len() {
        let c = b[i];
        if quoted {
            if Some(c) == escape && i + 1 < b.len() {
                cell.push(b[i + 1]);
                i += 2;
                continue;
            }
            if Some(c) == quote {
                if b.get(i + 1) == Some(&c) {
                    cell.push(c);
                    i += 2;
                    continue;
                }
                quoted = false;
            } else {
                cell.push(c);
            }
            i += 1;
            continue;
        }
        if start && Some(c) == quote {
            quoted = true;
            start = false;
            i += 1;
            continue;
        }
        if b[i..].starts_with(delimiter) {
            row.push(String::from_utf8_lossy(&cell).into_owned());
            cell.clear();
            start = true;
            i += delimiter.len();
            continue;
        }
        if c == b'\n' {
            if cell.last() == Some(&b'\r') {
                cell.pop();
            }
            row.push(String::from_utf8_lossy(&cell).into_owned());
            cell.clear();
            // Blank lines are no rows (the CSV reader skips them).
            if !(row.len() == 1 && row[0].is_empty()) {
                rows.push(std::mem::take(&mut row));
            }
            row.clear();
            start = true;
            i += 1;
            continue;
        }
        cell.push(c);
        start = false;
        i += 1;
    }
    rows
}

/// Whether a cell looks like a value of some type.
pub fn typed(cell: &str) -> bool {
    if cell.is_empty() {
        return true;
    }
    if cell.trim() != cell {
        return false;
    }
    let lower = cell.to_ascii_lowercase();
    if ["true", "false", "t", "f", "yes", "no", "null", "na", "n/a"].contains(&lower.as_str()) {
        return true;
    }
    if cell.parse::<f64>().is_ok() {
        return true;
    }
    let digits = cell.bytes().filter(u8::is_ascii_digit).count();
    if digits >= 2
        && cell.as_bytes()[0].is_ascii_digit()
        && cell
            .bytes()
            .all(|c| c.is_ascii_digit() || b"-/.: TZ+".contains(&c))
    {
        return true;
    }
    // A word or a phrase: letters, digits, blanks between them, and the
    // punctuation of names and prose (not a delimiter or a quote).
    cell.chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || "-_.&()/'!?%$€£#@+*:".contains(c))
        && !cell.starts_with('\'')
        && !cell.ends_with('\'')
}

/// `P · T` of the rows (0 without rows).
pub fn score(rows: &[Vec<String>]) -> f64 {
    if rows.is_empty() {
        return 0.0;
    }
    let mut counts: Vec<(usize, usize)> = Vec::new();
    for r in rows {
        match counts.iter_mut().find(|(l, _)| *l == r.len()) {
            Some(c) => c.1 += 1,
            None => counts.push((r.len(), 1)),
        }
    }
    let p: f64 = counts
        .iter()
        .map(|&(l, n)| n as f64 * ALPHA.max(l as f64 - 1.0) / l as f64)
        .sum::<f64>()
        / counts.len() as f64;
    let (mut cells, mut known) = (0usize, 0usize);
    for c in rows.iter().flatten() {
        cells += 1;
        known += usize::from(typed(c));
    }
    p * known as f64 / cells.max(1) as f64
}

/// The dialect chosen, its score and the runner-up's.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The delimiter (one byte, or a wide one such as `, `).
    pub delimiter: Vec<u8>,
    /// The quote (`None`: quotes are data).
    pub quote: Option<u8>,
    /// The escape inside quotes, when one reads the rows better than a
    /// doubled quote does (a backslash; `None`: the quote doubled).
    pub escape: Option<u8>,
    /// Its `P · T`.
    pub score: f64,
    /// The best score of another delimiter.
    pub next: f64,
}

/// The best dialect of `sample` among [`DELIMITERS`] × `quotes`, and with
/// `escapes`, whether a backslash escapes inside its quotes.
pub fn choose(sample: &[u8], quotes: &[Option<u8>], escapes: bool) -> Choice {
    // The sample ends where its last whole line does.
    let end = sample
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(sample.len(), |i| i + 1);
    let mut text = sample[..end].to_vec();
    if !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    let mut best: Option<Choice> = None;
    let mut per_delimiter: Vec<f64> = Vec::new();
    for d in DELIMITERS {
        let mut top: f64 = 0.0;
        for &q in quotes {
            let s = score(&split(&text, d, q));
            top = top.max(s);
            if best.as_ref().is_none_or(|b| s > b.score) {
                best = Some(Choice {
                    delimiter: d.to_vec(),
                    quote: q,
                    escape: None,
                    score: s,
                    next: 0.0,
                });
            }
        }
        per_delimiter.push(top);
    }
    let mut best = best.unwrap_or(Choice {
        delimiter: b",".to_vec(),
        quote: quotes.first().copied().flatten(),
        escape: None,
        score: 0.0,
        next: 0.0,
    });
    // A backslash escape, tried once on the chosen dialect: it wins only
    // where it reads the rows strictly better (a doubled quote is CSV's).
    let escaped_quote = |q: u8| text.windows(2).any(|w| w == [b'\\', q]);
    if escapes && best.quote.is_some_and(escaped_quote) {
        let s = score(&split_escaped(
            &text,
            &best.delimiter,
            best.quote,
            Some(b'\\'),
        ));
        if s > best.score {
            best.escape = Some(b'\\');
            best.score = s;
        }
    }
    best.next = DELIMITERS
        .iter()
        .zip(&per_delimiter)
        .filter(|(d, _)| **d != best.delimiter.as_slice())
        .map(|(_, s)| *s)
        .fold(0.0, f64::max);
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(text: &str, quotes: &[Option<u8>]) -> (String, Option<char>) {
        let c = choose(text.as_bytes(), quotes, false);
        (
            String::from_utf8(c.delimiter).unwrap(),
            c.quote.map(char::from),
        )
    }

    const ANY: &[Option<u8>] = QUOTES;
    const DOUBLE: &[Option<u8>] = &[Some(b'"')];

    /// (sample, quotes tried) → (delimiter, quote).
    type Row<'a> = (&'a str, &'a [Option<u8>], &'a str, Option<char>);

    #[test]
    fn dialect_decision_table() {
        let rows: Vec<Row> = vec![
            ("id,name\n1,Ann\n2,Bob\n", DOUBLE, ",", Some('"')),
            ("id;name\n1;Jos\u{e9} \u{20ac}\n", DOUBLE, ";", Some('"')),
            ("id\tname\n2\tJos\u{e9}\n", DOUBLE, "\t", Some('"')),
            ("a|b|c\n1|2|3\n", DOUBLE, "|", Some('"')),
            // `, `: the commas inside the text do not split it.
            (
                "id, text, n\n1, \"a, b\", 2\n2, \"c, d, e\", 3\n3, plain, 4\n",
                DOUBLE,
                ", ",
                Some('"'),
            ),
            // Without commas inside, the blanks after `,` decide.
            (
                "year, n\n2001, 5\n2002, 6\n2003, 7\n",
                DOUBLE,
                ", ",
                Some('"'),
            ),
            ("a; b\n1; 2\n3; 4\n", DOUBLE, "; ", Some('"')),
            // `'` as the quote.
            ("id,text\n1,'a, b'\n2,'c, d'\n3,'e'\n", ANY, ",", Some('\'')),
            // Nothing quoted: the first quote wins the tie.
            ("id,name\n1,O'Brien\n2,Ann\n", ANY, ",", Some('"')),
            // `"` quoting a comma.
            ("id,text\n1,\"a, b\"\n2,\"c, d\"\n", ANY, ",", Some('"')),
        ];
        for (text, quotes, d, q) in rows {
            assert_eq!(pick(text, quotes), (d.to_string(), q), "{text:?}");
        }
    }

    #[test]
    fn a_backslash_escape_is_chosen_where_it_reads_the_rows_better() {
        let escaped = "id,note,n\n1,\"say \\\"hi\\\", then go\",3\n2,\"a \\\"b\\\" c, d\",4\n3,plain,5\n4,\"x, \\\"y\\\"\",6\n";
        let c = choose(escaped.as_bytes(), &[Some(b'"')], true);
        assert_eq!((c.delimiter.as_slice(), c.escape), (&b","[..], Some(b'\\')));
        let rows = split_escaped(escaped.as_bytes(), b",", Some(b'"'), Some(b'\\'));
        assert_eq!(rows[1], ["1", "say \"hi\", then go", "3"]);
        // Not asked, or doubled quotes: no escape.
        assert_eq!(
            choose(escaped.as_bytes(), &[Some(b'"')], false).escape,
            None
        );
        let doubled = "id,note\n1,\"say \"\"hi\"\"\"\n2,\"a \\ path\"\n3,x\n";
        assert_eq!(choose(doubled.as_bytes(), &[Some(b'"')], true).escape, None);
    }

    #[test]
    fn patterns_and_types_score() {
        let consistent = split(b"a,b\n1,2\n3,4\n", b",", Some(b'"'));
        assert_eq!(consistent.len(), 3);
        let ragged = split(b"a,b\n1,2,3\n3\n", b",", Some(b'"'));
        assert!(score(&consistent) > score(&ragged));
        assert!(typed("2012/01/01") && typed("-118.27") && typed("Fossil Fuels"));
        assert!(!typed(" 35361") && !typed("\"a") && !typed("'a"));
        // A cut last line is left out.
        assert_eq!(split(b"a,b\n1,2\n3", b",", None).len(), 2);
    }
}
