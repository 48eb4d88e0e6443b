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
