use super::*;

fn read_all(r: impl Read) -> String {
    let mut s = String::new();
    let mut r = r;
    r.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn latin1_and_windows_1252_decode() {
    let bytes: &[u8] = b"caf\xE9 \x80";
    let l = Decode::new(bytes, Decoder::Latin1, 2);
    assert_eq!(read_all(l), "café \u{80}");
    let d = Decode::new(
        bytes,
        Decoder::Other(encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling()),
        3,
    );
    assert_eq!(read_all(d), "café €");
    // One byte at a time still decodes whole characters.
    let mut d = Decode::new(bytes, Decoder::Latin1, 4);
    let mut out = Vec::new();
    let mut one = [0u8; 1];
    while d.read(&mut one).unwrap() == 1 {
        out.push(one[0]);
    }
    assert_eq!(String::from_utf8(out).unwrap(), "café \u{80}");
}

#[test]
fn bom_is_dropped_once() {
    let r = skip_bom(io::Cursor::new(b"\xEF\xBB\xBFid\n\xEF\xBB\xBF".to_vec())).unwrap();
    assert_eq!(read_all(r), "id\n\u{feff}");
    let r = skip_bom(io::Cursor::new(b"a".to_vec())).unwrap();
    assert_eq!(read_all(r), "a");
}

fn limited(text: &str, max_record: u64, max_field: u64) -> Records {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false).flexible(true).buffer_capacity(64);
    let limits = Limits {
        max_record_bytes: max_record,
        max_field_bytes: max_field,
        ..Limits::default()
    };
    Records::with_limits(Box::new(io::Cursor::new(text.to_string())), &b, &limits)
}

/// Reads every record: the lines read, or the budget error's line and kind.
fn read_all_records(mut r: Records) -> Result<Vec<u64>, (u64, Limit)> {
    let mut lines = Vec::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        match r.read_byte_record(&mut rec) {
            Ok(true) => lines.push(rec.position().unwrap().line()),
            Ok(false) => return Ok(lines),
            Err(e) => {
                let x = exceeded(&e).expect("a budget error");
                return Err((x.line, x.kind));
            }
        }
    }
}

#[test]
fn records_and_fields_are_held_to_their_budgets() {
    let ok = "a,b\r\n1,\"x\ny\"\r\n2,3\r\n";
    assert_eq!(read_all_records(limited(ok, 100, 100)), Ok(vec![1, 2, 4]));
    // Caught whole (under the reader's buffer) or while being read,
    // the record is named by its first line.
    let long = format!("a,b\n1,2\n3,\"{}\"\n4,5\n", "z\n".repeat(40));
    assert_eq!(
        read_all_records(limited(&long, 50, 100)),
        Err((3, Limit::RecordBytes))
    );
    let huge = format!("a,b\n1,2\n3,\"{}\"\n", "z\n".repeat(100_000));
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false).flexible(true).buffer_capacity(64);
    let limits = Limits {
        max_record_bytes: 1000,
        ..Limits::default()
    };
    let r = Records::with_limits(Box::new(io::Cursor::new(huge)), &b, &limits);
    assert_eq!(read_all_records(r), Err((3, Limit::RecordBytes)));
    let field = format!("a,b\n1,{}\n", "f".repeat(30));
    assert_eq!(
        read_all_records(limited(&field, 100, 20)),
        Err((2, Limit::FieldBytes))
    );
    assert_eq!(read_all_records(limited(&field, 100, 30)), Ok(vec![1, 2]));
}

#[test]
fn a_decompression_bomb_stops_at_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("z.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &vec![b'0'; 20 << 20]).unwrap();
    std::fs::write(&p, gz.finish().unwrap()).unwrap();
    let source = Source::File(p);
    let read = |limits: Limits| {
        let mut r = decompressed(&source, &limits, Arc::new(AtomicU64::new(0)), None).unwrap();
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        exceeded_io(&e).map(|x| x.kind)
    };
    let d = Limits::default();
    assert_eq!(read(d), Some(Limit::CompressionRatio));
    let small = Limits {
        max_decompressed_bytes: 1 << 20,
        ..d
    };
    assert_eq!(read(small), Some(Limit::DecompressedBytes));
    // Over a budget is not a broken stream.
    assert_eq!(compression_problem(&source, &d), None);
}
