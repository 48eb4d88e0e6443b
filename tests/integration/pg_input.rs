//! PostgreSQL's acceptance is the floor: for every type cpi checks itself,
//! random and hand-picked strings get cpi's verdict and the server's own
//! input function's verdict (a cast in a PL/pgSQL exception block, PG 15
//! has no `pg_input_is_valid`). Where cpi accepts, the server accepts and
//! cpi's binary COPY field is byte for byte the type's `send` output;
//! where cpi refuses on its own, the server refuses; where cpi defers
//! (`server_parses_more`), the value goes to the server, which decides.

use cpi::import::encode::{put_value, ColType, ColumnSpec, CopyFormat, ValueError};
use sqlx::Connection;

use crate::support::TestDb;

/// (type, SQL type, send function)
const TYPES: &[(ColType, &str, &str)] = &[
    (ColType::Int2, "smallint", "int2send"),
    (ColType::Int4, "integer", "int4send"),
    (ColType::Int8, "bigint", "int8send"),
    (ColType::Float4, "real", "float4send"),
    (ColType::Float8, "double precision", "float8send"),
    (ColType::Numeric, "numeric", "numeric_send"),
    (ColType::Bool, "boolean", "boolsend"),
    (ColType::Date, "date", "date_send"),
    (ColType::Timestamp, "timestamp", "timestamp_send"),
    (ColType::Timestamptz, "timestamptz", "timestamptz_send"),
    (ColType::Uuid, "uuid", "uuid_send"),
    (ColType::Jsonb, "jsonb", "jsonb_send"),
    (ColType::Json, "json", "json_send"),
];

const HAND_PICKED: &[&str] = &[
    "0",
    "-0",
    "+7",
    " 42 ",
    "\t42\n",
    "\u{b}1\u{b}",
    "1_000",
    "0x1F",
    "1e3",
    "1E+3",
    "1.",
    ".5",
    ".",
    "-",
    "+",
    "",
    " ",
    "32767",
    "32768",
    "-32768",
    "-32769",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "1e-46",
    "1e-39",
    "3.4e38",
    "3.5e38",
    "1e308",
    "1e309",
    "1e-310",
    "1e-400",
    "4.9e-324",
    "NaN",
    "nan",
    "-NaN",
    "+nan",
    "Infinity",
    "-Infinity",
    "+inf",
    "inf",
    "-inf",
    "infinity",
    "INF",
    "0x1p3",
    "nan(123)",
    "12,5",
    "1.234,56",
    "1e1000",
    "1e1001",
    "1e-1000",
    "0.000",
    "-0.00",
    "123456789012345678901234567890.123456789",
    "t",
    "f",
    "tr",
    "tru",
    "true",
    "TRUE",
    "truee",
    "y",
    "ye",
    "yes",
    "n",
    "no",
    "on",
    "of",
    "off",
    "o",
    "1",
    "0",
    "10",
    "yes ",
    "  false",
    "2000-01-01",
    "2000/01/01",
    "20000101",
    "0000-01-01",
    "0001-01-01",
    "9999-12-31",
    "2024-02-29",
    "2023-02-29",
    "2000-13-01",
    "2000-1-1",
    "01/02/2024",
    "Jan 1 2000",
    "1 Jan 2000",
    "2000-01-01 BC",
    "infinity",
    "-infinity",
    "+infinity",
    "epoch",
    "today",
    "2000-01-01T00:00",
    "2000-01-01 24:00",
    "2000-01-01 24:00:01",
    "2000-01-01 23:59:60",
    "2000-01-01 12:00:00.5",
    "2000-01-01 12:00:00.123456",
    "2000-01-01 12:00:00.1234565",
    "2000-01-01 12:00:00.",
    "2000-01-01 12:00Z",
    "2000-01-01 12:00 +01",
    "2000-01-01 12:00 +0130",
    "2000-01-01 12:00 +01:30",
    "2000-01-01 12:00 -15:59",
    "2000-01-01 12:00 +16:00",
    "2000-01-01 12:00 UTC",
    "2000-01-01z",
    "2000-01-01 12:00 Europe/Paris",
    "2000-01-01T12:00:00+02:00",
    "2000-01-01 1:00",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
    "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
    "a0eebc999c0b4ef8bb6d6bb9bd380a11",
    "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
    "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
    "{a0eebc999c0b4ef8bb6d6bb9bd380a11",
    "{}",
    "[]",
    "[1, 2]",
    "{\"a\":1}",
    "{a:1}",
    "null",
    "\"x\"",
    "1e999999",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\ud83d\\ude00\"",
    "[1,]",
    " [1] ",
    "{\"a\":1,\"a\":2}",
    "-0.0e5",
    "00012",
    "1e",
    "e5",
    "1.2.3",
];

/// Strings from an alphabet that makes numbers, dates, times and uuids
/// likely (deterministic: a failure reproduces).
fn random_strings(n: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"0123456789012345678901234567890123456789-+.e: T/Zaf{}\"[],ntrNIy";
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // A third start from a well-formed value and get mutated.
        let mut s: Vec<u8> = match i % 3 {
            0 => b"2024-06-01 10:20:30.5+02:00".to_vec(),
            1 => b"-1234.5e2".to_vec(),
            _ => Vec::new(),
        };
        let edits = 1 + (next() % 4) as usize;
        for _ in 0..edits {
            let c = ALPHABET[(next() % ALPHABET.len() as u64) as usize];
            let pos = if s.is_empty() {
                0
            } else {
                (next() % (s.len() as u64 + 1)) as usize
            };
            match next() % 3 {
                0 if pos < s.len() => s[pos] = c,
                1 if pos < s.len() => {
                    s.remove(pos);
                }
                _ => s.insert(pos, c),
            }
        }
        if i % 3 == 2 {
            for _ in 0..(next() % 10) {
                s.push(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
            }
        }
        out.push(String::from_utf8(s).unwrap());
    }
    out
}

#[tokio::test]
async fn cpi_verdict_is_the_servers() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    for (order, mut values) in [
        ("MDY", random_strings(3000)),
        ("DMY", HAND_PICKED.iter().map(|s| s.to_string()).collect()),
    ] {
        values.extend(HAND_PICKED.iter().map(|s| s.to_string()));
        // The import session's settings.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, {order}';
             CREATE OR REPLACE FUNCTION pg_temp.try_send(v text, ty text, send text) RETURNS bytea
             LANGUAGE plpgsql AS $$
             DECLARE r bytea;
             BEGIN
               EXECUTE format('SELECT %s(%L::%s)', send, v, ty) INTO r;
               RETURN r;
             EXCEPTION WHEN others THEN RETURN NULL;
             END $$;"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        let mut problems = Vec::new();
        let mut checked = 0;
        for (ty, sql_ty, send) in TYPES {
            let server: Vec<Option<Vec<u8>>> = sqlx::query_scalar(
                "SELECT pg_temp.try_send(v, $2, $3) FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i) ORDER BY i",
            )
            .bind(&values)
            .bind(sql_ty)
            .bind(send)
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let col = ColumnSpec {
                name: "c".into(),
                ty: *ty,
                typmod: -1,
                not_null: false,
            };
            for (v, server) in values.iter().zip(server) {
                checked += 1;
                let mut buf = Vec::new();
                match (put_value(&mut buf, CopyFormat::Binary, &col, v), server) {
                    (Ok(()), Some(bytes)) => {
                        let ours = &buf[4..];
                        let same = ours == bytes.as_slice()
                            || (matches!(ty, ColType::Float4 | ColType::Float8)
                                && is_nan(ours)
                                && is_nan(&bytes))
                            // NaN and ±Infinity: the display scale is not read back.
                            || (*ty == ColType::Numeric
                                && ours.len() == 8
                                && ours[4] >= 0xC0
                                && ours[..6] == bytes[..6])
                            // The server parses json/jsonb sent in binary
                            // again: acceptance is what matters.
                            || matches!(ty, ColType::Json | ColType::Jsonb);
                        if !same {
                            problems.push(format!(
                                "{sql_ty} {v:?}: cpi encodes {ours:?}, the server {bytes:?}"
                            ));
                        }
                    }
                    // json/jsonb travel as text even in binary COPY: the
                    // server's parser still refuses them (e.g. `\u0000`).
                    (Ok(()), None) if matches!(ty, ColType::Json | ColType::Jsonb) => {}
                    (Ok(()), None) => {
                        problems.push(format!("{sql_ty} {v:?}: cpi accepts, the server refuses"))
                    }
                    // Deferred to the server: its verdict is the verdict.
                    (Err(ValueError::Invalid(_)), _) if ty.server_parses_more() => {}
                    (Err(e), Some(_)) => problems.push(format!(
                        "{sql_ty} {v:?}: cpi refuses ({e:?}), the server accepts"
                    )),
                    (Err(_), None) => {}
                }
            }
        }
        assert!(checked > 10_000 || order == "DMY", "{checked}");
        assert!(
            problems.is_empty(),
            "DateStyle {order}: {} disagreements:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    let _ = conn.close().await;
}

fn is_nan(b: &[u8]) -> bool {
    match b.len() {
        4 => f32::from_be_bytes(b.try_into().unwrap()).is_nan(),
        8 => f64::from_be_bytes(b.try_into().unwrap()).is_nan(),
        _ => false,
    }
}
