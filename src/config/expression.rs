//! An `expression` check's SQL as cpi accepts it: one boolean over the
//! row, never a statement (pure). The server then parses it as an
//! expression only, in `WHERE NOT (…)`.

/// SQL words that start or join a statement: none may appear in an
/// `expression`, which is one boolean over the row, not a query.
const STATEMENT_WORDS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "with",
    "create",
    "drop",
    "alter",
    "truncate",
    "grant",
    "revoke",
    "copy",
    "into",
    "from",
    "union",
    "intersect",
    "except",
    "returning",
    "call",
    "do",
    "execute",
    "prepare",
    "set",
    "reset",
    "lock",
    "vacuum",
    "analyze",
    "listen",
    "notify",
    "begin",
    "commit",
    "rollback",
    "savepoint",
    "table",
    "values",
    "window",
    "limit",
    "offset",
    "having",
    "group",
    "order",
];

/// Why `sql` is not a lone boolean expression over the row, if it is not:
/// no `;`, no comment, balanced parentheses outside literals (so it cannot
/// close the `NOT (…)` it is put in), no statement keyword, no
/// dollar-quoting. The server then parses it as an expression only.
pub fn expression_problem(sql: &str) -> Option<String> {
    if sql.trim().is_empty() {
        return Some("is empty".into());
    }
    if sql.contains('\0') {
        return Some("holds a NUL character".into());
    }
    let b = sql.as_bytes();
    let mut depth = 0i64;
    let mut i = 0;
    let mut word = String::new();
    let mut words = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                flush(&mut word, &mut words);
                let q = c;
                i += 1;
                loop {
                    if i >= b.len() {
                        return Some("has an unclosed quote".into());
                    }
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b';' => return Some("holds a `;` (one expression, not statements)".into()),
            b'$' => return Some("holds a `$` (no dollar quoting or parameters)".into()),
            b'\\' => return Some("holds a backslash".into()),
            b'-' if b.get(i + 1) == Some(&b'-') => return Some("holds a comment".into()),
            b'/' if b.get(i + 1) == Some(&b'*') => return Some("holds a comment".into()),
            b'(' => {
                flush(&mut word, &mut words);
                depth += 1
            }
            b')' => {
                flush(&mut word, &mut words);
                depth -= 1;
                if depth < 0 {
                    return Some("closes a parenthesis it did not open".into());
                }
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                word.push(c.to_ascii_lowercase() as char)
            }
            _ => flush(&mut word, &mut words),
        }
        i += 1;
    }
    flush(&mut word, &mut words);
    if depth != 0 {
        return Some("leaves a parenthesis open".into());
    }
    words
        .iter()
        .find(|w| STATEMENT_WORDS.contains(&w.as_str()))
        .map(|w| {
            format!("uses `{w}`: an expression is a boolean over the row's columns, not a query")
        })
}

fn flush(word: &mut String, words: &mut Vec<String>) {
    if !word.is_empty() {
        words.push(std::mem::take(word));
    }
}
