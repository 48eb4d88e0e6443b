//! The pipeline's unit tests.
use super::*;

use crate::import::encode::ColType;

fn records(text: &str) -> Records {
    let r: Box<dyn std::io::Read + Send> = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false).flexible(true);
    Records::new(r, &b)
}

fn spec(on_error: OnError) -> Spec {
    Spec {
        file: "f.csv".into(),
        format: CopyFormat::Text,
        fields: vec![
            (
                0,
                ColumnSpec {
                    name: "id".into(),
                    ty: ColType::Int4,
                    typmod: -1,
                    not_null: true,
                },
            ),
            (
                1,
                ColumnSpec {
                    name: "amount".into(),
                    ty: ColType::Numeric,
                    typmod: -1,
                    not_null: false,
                },
            ),
        ],
        width: 2,
        nulls: vec![String::new()],
        trim: false,
        on_error,
        max_errors: Some(1),
        keep_rejects: None,
        ragged: crate::config::RaggedRows::Error,
        row_number: false,
        first: None,
        key_fields: vec![0],
        dialects: Vec::new(),
        refused: Default::default(),
    }
}

fn run(text: &str, spec: Spec) -> (Summary, Vec<u8>) {
    let mut out = Vec::new();
    let s = produce(
        records(text),
        spec,
        |b| {
            out.extend_from_slice(&b);
            true
        },
        Arc::new(AtomicU64::new(0)),
    );
    (s, out)
}

#[test]
fn monotonic_keys_prove_uniqueness() {
    let mut sp = spec(OnError::Abort);
    sp.format = CopyFormat::Binary;
    let mut sp2 = spec(OnError::Abort);
    sp2.format = CopyFormat::Binary;
    let mut sp3 = spec(OnError::Abort);
    sp3.format = CopyFormat::Binary;
    assert!(run("-5,1\n1,1\n10,1\n", sp).0.keys_unique);
    assert!(run("10,1\n2,1\n-1,1\n", sp2).0.keys_unique);
    assert!(!run("1,1\n3,1\n2,1\n", sp3).0.keys_unique);
    let mut dup = spec(OnError::Abort);
    dup.format = CopyFormat::Binary;
    assert!(!run("1,1\n1,2\n", dup).0.keys_unique);
    // Text format (a type cpi does not encode): not tracked.
    assert!(!run("1,1\n2,1\n", spec(OnError::Abort)).0.keys_unique);
}

#[test]
fn abort_names_the_line() {
    let (s, _) = run("1,2\n2,\"12,5\"\n3,4\n", spec(OnError::Abort));
    assert_eq!(
        s.fatal.as_deref(),
        Some("f.csv:2: column \"amount\": \"12,5\" is not a valid numeric")
    );
}

#[test]
fn skip_rows_keeps_good_rows_and_counts() {
    let (s, out) = run("1,2\nx,3\n3,\n", spec(OnError::SkipRows));
    assert!(s.fatal.is_none());
    assert_eq!((s.rows_read, s.rows_loaded, s.rows_rejected), (3, 2, 1));
    assert_eq!(out, b"1\t2\n3\t\\N\n");
    assert_eq!(s.errors[0].line, 2);
    assert_eq!(s.errors[0].value.as_deref(), Some("x"));
    let (s, _) = run("x,1\n,2\n", spec(OnError::SkipRows));
    assert!(s.fatal.unwrap().contains("more than 1 bad rows"));
    assert!(s.errors[1]
        .message
        .ends_with("null value in a NOT NULL column"));
}

#[test]
fn crlf_and_blank_lines_name_the_real_line() {
    for text in ["1,2\n2,3\n3,x\n4,5\n", "1,2\r\n2,3\r\n3,x\r\n4,5\r\n"] {
        let mut sp = spec(OnError::SkipRows);
        sp.max_errors = None;
        let (s, _) = run(text, sp);
        assert_eq!(s.errors[0].line, 3, "{text:?}");
        assert_eq!(s.lines.line_of(3), Some(4), "{text:?}");
    }
    let mut sp = spec(OnError::SkipRows);
    sp.max_errors = None;
    let (s, _) = run("1,2\r\n\r\n\"a\r\nb\",3\r\n4,x\r\n", sp);
    assert_eq!(s.errors[1].line, 5, "{:?}", s.errors);
    assert_eq!(s.errors[0].line, 3, "{:?}", s.errors);
}

#[test]
fn field_count_and_line_map() {
    let mut sp = spec(OnError::SkipRows);
    sp.max_errors = None;
    let (s, _) = run("1,2\n\"multi\nline\",3\n4\n5,6\n", sp);
    assert_eq!(s.rows_rejected, 2, "{:?}", s.errors);
    assert_eq!(s.errors[1].message, "f.csv:4: expected 2 fields, found 1");
    // Rows loaded: line 1 and line 5.
    assert_eq!(s.lines.line_of(1), Some(1));
    assert_eq!(s.lines.line_of(2), Some(5));
}
