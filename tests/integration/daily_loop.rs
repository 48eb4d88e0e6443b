//! The operator's daily loop: the line a bad row is reported on, the one
//! error of a broken `.csv.gz`, counters that never go down, the CLI in a
//! pipe and the error in `cpi jobs list`, the dashboard across replicas.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::support::import::Env;
use crate::support::{Cpi, Run};

/// `cpi ARGS --database-url <the test database>`, off the runtime.
async fn cpi_on(env: &Env, args: &[&str]) -> Run {
    Cpi::new(args).db(&env.db).run_async().await
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn regression_crlf_files_report_the_same_line_as_lf_files() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, amount numeric)").await;
    let lf = "id,amount\n1,1.5\n2,2.5\n3,x\n4,4.5\n";
    let crlf = lf.replace('\n', "\r\n");
    // A blank line and a quoted field over two lines before the bad value
    // (line 6 in both).
    let multi = "id,amount\n1,1\n\n\"2\",\"2\n\"\n3,x\n";
    let multi_crlf = multi.replace('\n', "\r\n");
    for (name, text, line) in [
        ("lf.csv", lf.to_string(), 4),
        ("crlf.csv", crlf.clone(), 4),
        ("multi_lf.csv", multi.to_string(), 6),
        ("multi_crlf.csv", multi_crlf, 6),
    ] {
        let f = env.file(name, text.as_bytes());
        let r = cpi_on(&env, &["import", "--project", "p", path(&f)]).await;
        r.assert_code(1).assert_stdout(&format!(
            "{name}:{line}: column \"amount\": \"x\" is not a valid numeric"
        ));
    }
    // The library says the same, in the message and in the row error.
    for (name, text) in [("lib_lf.csv", lf.to_string()), ("lib_crlf.csv", crlf)] {
        let o = env.import(name, text.as_bytes()).await;
        let error = o.error.as_deref().unwrap_or_default();
        assert!(error.starts_with(&format!("{name}:4: ")), "{error}");
        assert_eq!(o.errors[0].line, 4, "{:?}", o.errors);
    }
    assert_eq!(env.count("t").await, 0);
}

#[tokio::test]
async fn regression_a_truncated_or_corrupt_gzip_reports_only_the_decompression_error() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    // Stored (uncompressed) deflate blocks: the decoder hands out the bytes
    // as they come, so damage reaches the CSV parser before the checksum
    // or the missing end is noticed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(b"id,v\n").unwrap();
    for i in 0..20_000u32 {
        writeln!(gz, "{i},value-{}-{}", i * 7919 % 1000, i % 13).unwrap();
    }
    let whole = gz.finish().unwrap();
    let mid = whole.len() / 2;
    // Cut in the middle of a line; and a comma written over one byte (a
    // row of 3 fields that the checksum at the end refutes).
    let truncated = &whole[..mid];
    let mut corrupt = whole.clone();
    corrupt[mid] = b',';
    for (name, bytes, verdict) in [
        ("z.csv.gz", truncated, "incomplete deflate stream"),
        (
            "c.csv.gz",
            &corrupt[..],
            "does not have a matching checksum",
        ),
    ] {
        let f = env.file(name, bytes);
        let r = cpi_on(&env, &["import", "--project", "p", path(&f)]).await;
        r.assert_code(1)
            .assert_stdout(&format!("{name}: not a valid gzip file"))
            .assert_stdout(verdict);
        // No `c.csv.gz:10308: expected 2 fields, found 3` beside it.
        let row_error = r
            .stdout
            .match_indices(&format!("{name}:"))
            .any(|(i, m)| r.stdout[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
        assert!(
            !row_error && !r.stdout.contains("fields"),
            "a row error beside the gzip verdict:\n{}",
            r.stdout
        );
    }
    let details: Vec<String> = env
        .rows("SELECT coalesce(error_details::text, '') FROM cpi_import_jobs")
        .await;
    assert!(details.iter().all(|d| !d.contains("fields")), "{details:?}");
    assert_eq!(env.count("t").await, 0);
}
