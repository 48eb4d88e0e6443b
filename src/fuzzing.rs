//! One input → one check, for the fuzz targets in `fuzz/` (cargo-fuzz) and
//! the in-tree random harness (`tests/integration/fuzz.rs`). Each entry
//! point must never panic, hang or grow without bound on any input; the
//! asserts inside are the properties the fuzzers check.

use crate::config::ProjectConfig;
use crate::import::encode::{self, ColType, ColumnSpec, CopyFormat};

/// The manifest loader on one file's bytes (bounded like `load`: a file
/// over [`crate::manifest::MAX_FILE_BYTES`] is never parsed).
pub fn manifest(data: &[u8]) {
    if data.len() as u64 > crate::manifest::MAX_FILE_BYTES {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // YAML breaks lines at a lone `\r` too (found by fuzzing).
    let breaks = text.bytes().filter(|b| matches!(b, b'\n' | b'\r')).count();
    for e in crate::manifest::check_text("f.yaml", text) {
        // Every error is located in the file it names.
        assert_eq!(e.file, "f.yaml");
        if let Some(l) = e.line {
            assert!(l >= 1 && l <= breaks + 2, "line {l}: {e}");
        }
    }
}

/// A project config (as the API receives it): parse, validate, pick the
/// options for a few file names, and a serde round trip.
pub fn project_config(data: &[u8]) {
    let Ok(config) = serde_json::from_slice::<ProjectConfig>(data) else {
        return;
    };
    let problems = config.validate();
    let value = serde_json::to_value(&config).expect("a config serializes");
    let back: ProjectConfig = serde_json::from_value(value).expect("a config reads back");
    assert_eq!(back, config);
    if problems.is_empty() {
        for name in ["a.csv", "sub/orders_2024.csv.gz", "", "é.CSV", "x"] {
            let _ = config.options_for(name);
        }
    }
    let _ = config.settle();
}

const TYPES: [ColType; 17] = [
    ColType::Int2,
    ColType::Int4,
    ColType::Int8,
    ColType::Float4,
    ColType::Float8,
    ColType::Numeric,
    ColType::Bool,
    ColType::Text,
    ColType::Varchar,
    ColType::Bpchar,
    ColType::Date,
    ColType::Timestamp,
    ColType::Timestamptz,
    ColType::Uuid,
    ColType::Json,
    ColType::Jsonb,
    ColType::Other,
];

/// The CSV field → COPY encoders: the first byte picks the column type and
/// the format, the rest is the field. Text COPY output never holds a raw
/// tab, newline or carriage return (they would split the row).
pub fn copy_encoders(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let ty = TYPES[usize::from(pick) % TYPES.len()];
    let format = if pick & 0x80 == 0 {
        CopyFormat::Text
    } else {
        CopyFormat::Binary
    };
    let value = String::from_utf8_lossy(rest);
    let col = ColumnSpec {
        name: "c".into(),
        ty,
        typmod: if pick & 0x40 == 0 { -1 } else { 4 + 10 },
        not_null: false,
    };
    let mut buf = Vec::new();
    if encode::put_value(&mut buf, format, &col, &value).is_ok() && format == CopyFormat::Text {
        assert!(
            !buf.iter().any(|b| matches!(b, b'\t' | b'\n' | b'\r')),
            "unescaped separator in {buf:?}"
        );
    }
    let _ = encode::parse_numeric(&value);
    let _ = encode::parse_date_days(&value);
    let _ = encode::parse_timestamp_us(&value, true);
    let _ = encode::parse_bool(&value);
    let _ = encode::show_value(rest);
}

/// The record reader under small budgets: the first two bytes pick the
/// dialect and the record budget (16 to 4,111 bytes; the field budget is
/// half of it), the rest is the file's text. Nothing read is over a
/// budget, and every record and budget error names a line of the file.
/// (Not that lines never go back: a lone `\r` ends a record but not a
/// line, and a record after one can be named by an earlier line.)
pub fn record_reader(data: &[u8]) {
    let [pick, size, text @ ..] = data else {
        return;
    };
    let max_record = 16 + u64::from(*size) * 16;
    let limits = crate::config::Limits {
        max_record_bytes: max_record,
        max_field_bytes: max_record / 2,
        ..crate::config::Limits::default()
    };
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false)
        .flexible(true)
        .delimiter([b',', b';', b'\t', b'|'][usize::from(pick & 3)])
        .escape((pick & 4 != 0).then_some(b'\\'))
        .buffer_capacity(64);
    let input: Box<dyn std::io::Read + Send> = Box::new(std::io::Cursor::new(text.to_vec()));
    let mut records = crate::import::reader::Records::with_limits(input, &b, &limits);
    let mut record = csv::ByteRecord::new();
    let lines = text.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    loop {
        match records.read_byte_record(&mut record) {
            Ok(true) => {
                assert!(record.as_slice().len() as u64 <= max_record);
                assert!(record.iter().all(|f| f.len() as u64 <= max_record / 2));
                let line = record.position().map_or(0, |p| p.line());
                assert!(line >= 1 && line <= lines, "line {line}");
            }
            Ok(false) => break,
            Err(e) => {
                if let Some(x) = crate::import::reader::exceeded(&e) {
                    assert!(x.line >= 1 && x.line <= lines + 1, "line {}", x.line);
                }
                break;
            }
        }
    }
}

/// The header mapper on one line of names (`,`-separated, `=` renames
/// the name before it): never panics; a mapped header keeps every name.
pub fn header_mapper(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut renames = std::collections::BTreeMap::new();
    let mut header = Vec::new();
    for name in text.split(',') {
        match name.split_once('=') {
            Some((from, to)) => {
                renames.insert(from.to_string(), to.to_string());
                header.push(from.to_string());
            }
            None => header.push(name.to_string()),
        }
    }
    if let Ok(cols) = crate::import::mapping::columns_from_header(&header, &renames) {
        assert_eq!(cols.len(), header.len());
    }
}
