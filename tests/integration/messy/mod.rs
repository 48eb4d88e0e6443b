//! Messy files (issue 27) through the real `cpi import` and `cpi infer`
//! against PostgreSQL: the polluted variants of clean files
//! (support/polluter.rs) load, and each automatic decision is on the job.

use serde_json::json;

use crate::support::import::Env;
use crate::support::polluter::{self, Pollution, LONG_NAME};
use crate::support::{Cpi, Run};

mod ragged;

/// `cpi ARGS --database-url <the test database>`, off the runtime.
pub(super) async fn cpi_on(env: &Env, args: &[&str]) -> Run {
    Cpi::new(args).db(&env.db).run_async().await
}

/// `cpi import --project p FILE -o json`: the job's outcome.
pub(super) async fn import_json(env: &Env, name: &str, text: &str) -> serde_json::Value {
    let f = env.file(name, text.as_bytes());
    let r = cpi_on(
        env,
        &[
            "import",
            "--project",
            "p",
            f.to_str().unwrap(),
            "-o",
            "json",
        ],
    )
    .await;
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    v[0].clone()
}

/// The table's columns, in order.
pub(super) async fn columns(env: &Env, table: &str) -> Vec<String> {
    env.rows(&format!(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_name = '{table}' ORDER BY ordinal_position"
    ))
    .await
}

/// Every cell of the table as text, row by row in `order`, `|`-joined.
async fn cells(env: &Env, table: &str, order: &str) -> Vec<String> {
    env.rows(&format!(
        "SELECT concat_ws('|', VARIADIC array_agg_cells) FROM (\
           SELECT (SELECT array_agg(coalesce(v, '')) FROM json_each_text(row_to_json(t)) AS e(k, v)) AS array_agg_cells, {order} AS o \
           FROM {table} t) x ORDER BY o"
    ))
    .await
}

#[tokio::test]
async fn regression_empty_header_name_is_refused() {
    // Was: "the header has an empty column name", nothing loaded.
    let env = Env::new(json!({"table": "t", "create_table": "infer"})).await;
    let clean = polluter::products(20);
    let o = import_json(
        &env,
        "t.csv",
        &polluter::pollute(&clean, Pollution::EmptyHeaderName),
    )
    .await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(
        columns(&env, "t").await,
        [
            "product_id",
            "column_2",
            "description",
            "unit_price",
            "in_stock"
        ]
    );
    let note = o["error"].as_str().unwrap_or_default();
    assert!(
        note.contains("header field 2 has no name: loaded as \"column_2\""),
        "{o}"
    );
    let names: Vec<String> = env.rows("SELECT column_2 FROM t ORDER BY product_id").await;
    assert_eq!(names.len(), 20);
    assert_eq!(names[0], "Boot model 1");
}

#[tokio::test]
async fn regression_header_name_longer_than_63_bytes_is_refused() {
    // Was: `header column "…" is longer than 63 bytes`, nothing loaded.
    let env = Env::new(json!({"table": "t", "create_table": true})).await;
    let clean = polluter::products(20);
    let text = polluter::pollute(&clean, Pollution::LongHeaderName);
    let o = import_json(&env, "t.csv", &text).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    let cols = columns(&env, "t").await;
    let short = &cols[4];
    assert!(short.len() <= 63, "{short}");
    assert!(short.starts_with(&LONG_NAME[..40]), "{short}");
    let note = o["error"].as_str().unwrap_or_default();
    assert!(
        note.contains(&format!(
            "header field 5 {LONG_NAME:?} is longer than 63 bytes: loaded as {short:?}"
        )),
        "{o}"
    );
    // The cells are the clean file's.
    let got = cells(&env, "t", "product_id::int").await;
    let want: Vec<String> = clean.rows.iter().map(|r| r.join("|")).collect();
    assert_eq!(got, want);
    // Stable: a second file with the same header loads into the same column.
    let second = text.replace("Boot model", "Shoe model");
    let o = import_json(&env, "t2.csv", &second).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(env.count("t").await, 40);
    assert_eq!(columns(&env, "t").await, cols);

    // `cpi infer` shows the mapping before it matters.
    let f = env.file("t3.csv", text.as_bytes());
    let r = cpi_on(&env, &["infer", f.to_str().unwrap()]).await;
    r.assert_code(0)
        .assert_stdout(&format!(
            "-- header field 5 {LONG_NAME:?} is longer than 63 bytes: loaded as {short:?}"
        ))
        .assert_stdout(&format!("{short:?} boolean"));
}

/// Loads the clean file with `psql \copy` into a new all-`text` table.
pub(super) async fn psql_copy(env: &Env, table: &str, clean: &polluter::Clean) {
    let cols: Vec<String> = clean
        .header
        .iter()
        .map(|h| format!("{} text", cpi::config::quote_ident(h)))
        .collect();
    env.exec(&format!("CREATE TABLE {table} ({})", cols.join(", ")))
        .await;
    let src = env.dir.path().join(format!("{table}.clean"));
    std::fs::write(&src, polluter::clean_text(clean)).unwrap();
    crate::support::bin::psql_copy(&env.db.url(), table, &src, "");
}

/// Rows of `a` not in `b` and of `b` not in `a` (by position, every
/// column compared as text).
pub(super) async fn differ(env: &Env, a: &str, b: &str) -> (i64, i64) {
    let one = |x: &str, y: &str| format!("(SELECT * FROM {x} EXCEPT ALL SELECT * FROM {y}) d");
    (env.count(&one(a, b)).await, env.count(&one(b, a)).await)
}

#[tokio::test]
async fn skip_lines_auto_drops_a_preamble_and_keeps_every_cell() {
    let env = Env::new(json!({"create_table": true, "skip_lines": "auto"})).await;
    for (i, clean) in polluter::clean_files().iter().enumerate() {
        let t = format!("t{i}");
        psql_copy(&env, &format!("{t}_psql"), clean).await;
        let text = polluter::pollute(clean, Pollution::Preamble);
        let o = import_json(&env, &format!("{t}.csv"), &text).await;
        assert_eq!(o["status"], "succeeded", "{}: {o}", clean.name);
        let note = o["error"].as_str().unwrap_or_default();
        assert!(
            note.contains(&format!(
                "skip_lines: auto → 3 (the field counts are consistent from line 4, {} fields)",
                clean.header.len()
            )),
            "{}: {o}",
            clean.name
        );
        assert_eq!(columns(&env, &t).await, clean.header, "{}", clean.name);
        assert_eq!(
            differ(&env, &t, &format!("{t}_psql")).await,
            (0, 0),
            "{}",
            clean.name
        );
        assert_eq!(env.count(&t).await as usize, clean.rows.len());
    }
    // A clean file: nothing skipped, and the job says so.
    let clean = polluter::products(5);
    let o = import_json(&env, "c.csv", &polluter::clean_text(&clean)).await;
    assert_eq!(env.count("c").await, 5, "{o}");
    assert!(
        o["error"]
            .as_str()
            .unwrap()
            .contains("skip_lines: auto → 0"),
        "{o}"
    );
}

#[tokio::test]
async fn skip_lines_n_drops_that_many_lines_and_errors_keep_their_line() {
    let env = Env::new(json!({"table": "t", "skip_lines": 3})).await;
    env.exec("CREATE TABLE t (product_id int, product_name text, description text, unit_price numeric, in_stock boolean)").await;
    let clean = polluter::products(10);
    let text = polluter::pollute(&clean, Pollution::Preamble);
    let o = import_json(&env, "a.csv", &text).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(env.count("t").await, 10);
    // Line 4 is the header; the bad value on the file's line 7 is named so.
    let bad = text.replacen("\n3,", "\nthree,", 1);
    let f = env.file("b.csv", bad.as_bytes());
    let r = cpi_on(&env, &["import", "--project", "p", f.to_str().unwrap()]).await;
    r.assert_code(1)
        .assert_stdout("b.csv:7: column \"product_id\": \"three\" is not a valid integer");
    assert_eq!(env.count("t").await, 10);
}

#[tokio::test]
async fn comment_lines_are_skipped_wherever_they_are() {
    let env = Env::new(json!({"create_table": true, "comment": "#"})).await;
    for (i, clean) in polluter::clean_files().iter().enumerate() {
        let t = format!("t{i}");
        psql_copy(&env, &format!("{t}_psql"), clean).await;
        let text = polluter::pollute(clean, Pollution::Comments);
        let o = import_json(&env, &format!("{t}.csv"), &text).await;
        assert_eq!(o["status"], "succeeded", "{}: {o}", clean.name);
        assert_eq!(
            differ(&env, &t, &format!("{t}_psql")).await,
            (0, 0),
            "{}",
            clean.name
        );
    }
    // Without `comment`, the same file is refused (all or nothing).
    let env = Env::new(json!({"create_table": true})).await;
    let text = polluter::pollute(&polluter::products(30), Pollution::Comments);
    let o = import_json(&env, "x.csv", &text).await;
    assert_eq!(o["status"], "failed", "{o}");
}

#[test]
fn skip_lines_and_comment_are_validated() {
    let cases = [
        (
            "comment: \"##\"",
            "comment: \"##\" must be a single ASCII character",
        ),
        (
            "comment: \",\"\n      delimiter: \",\"",
            "comment: ',' is also the quote or the delimiter",
        ),
        ("skip_lines: sometimes", "skip_lines"),
        ("skip_lines: -1", "skip_lines"),
        (
            "quote: auto",
            "quote: auto is chosen with the delimiter: it needs delimiter: auto",
        ),
        (
            "delimiter: \",,\"",
            "delimiter: \",,\" must be a single ASCII character",
        ),
        ("header_rows: 0", "header_rows: must be at least 1"),
        (
            "rejects: table",
            "rejects: table keeps the rows on_error: skip_rows skips: it needs on_error: skip_rows",
        ),
    ];
    let run = |opt: &str| {
        let d = tempfile::tempdir().unwrap();
        crate::support::write(
            d.path(),
            "c.yaml",
            "apiVersion: cpi/v1\nkind: Connection\nmetadata:\n  name: c\nspec:\n  database_url: postgresql://u@h/db\n",
        );
        crate::support::write(
            d.path(),
            "p.yaml",
            &format!("apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: p\nspec:\n  connection: c\n  config:\n    inbox: /tmp/in\n    defaults:\n      {opt}\n"),
        );
        let mut cmd = Cpi::new(["validate", "--manifests", d.path().to_str().unwrap()]).command();
        cmd.env_remove("CPI_INBOX_ROOTS");
        let r: Run = cmd.output().expect("run cpi").into();
        r
    };
    for (opt, want) in cases {
        let r = run(opt);
        assert_eq!(r.code, 1, "{opt}: {}", r.all());
        assert!(r.all().contains(want), "{opt}: {}", r.all());
    }
    for ok in [
        "skip_lines: auto",
        "skip_lines: 2\n      comment: \"#\"",
        "delimiter: \", \"\n      quote: none",
        "delimiter: auto\n      quote: auto\n      header: auto\n      header_rows: 2",
    ] {
        let r = run(ok);
        assert_eq!(r.code, 0, "{ok}: {}", r.all());
    }
}

#[tokio::test]
async fn regression_a_file_without_a_header_loses_its_first_row_as_the_header() {
    // Was: the first data row named the columns (and, with a long value,
    // refused: `header column "These waterproof hiking boots…" is longer
    // than 63 bytes`). `create_table: infer` now defaults to `header: auto`.
    let env = Env::new(json!({"table": "t", "create_table": "infer"})).await;
    let clean = polluter::products(83);
    let o = import_json(
        &env,
        "t.csv",
        &polluter::pollute(&clean, Pollution::NoHeader),
    )
    .await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(o["rows_inserted"], 83, "{o}");
    assert_eq!(
        columns(&env, "t").await,
        ["column_1", "column_2", "column_3", "column_4", "column_5"]
    );
    let note = o["error"].as_str().unwrap_or_default();
    assert!(
        note.contains(
            "header: auto → false (the values of line 1 have the types of the rows below)"
        ),
        "{o}"
    );
    let first = env
        .rows("SELECT concat_ws('|', column_1, column_2, column_4, column_5) FROM t ORDER BY column_1 LIMIT 1")
        .await;
    assert_eq!(first, ["1|Boot model 1|41.37|t"]);
}

#[tokio::test]
async fn header_auto_reads_headerless_files_in_the_tables_column_order() {
    let env = Env::new(json!({"create_table": true, "header": "auto"})).await;
    for (i, clean) in polluter::clean_files().iter().enumerate() {
        let t = format!("t{i}");
        psql_copy(&env, &format!("{t}_psql"), clean).await;
        env.exec(&format!("CREATE TABLE {t} (LIKE {t}_psql)")).await;
        // The existing table's columns, in order, take the fields.
        let o = import_json(
            &env,
            &format!("{t}.csv"),
            &polluter::pollute(clean, Pollution::NoHeader),
        )
        .await;
        assert_eq!(o["status"], "succeeded", "{}: {o}", clean.name);
        assert!(
            o["error"]
                .as_str()
                .unwrap()
                .contains("header: auto → false"),
            "{}: {o}",
            clean.name
        );
        assert_eq!(
            differ(&env, &t, &format!("{t}_psql")).await,
            (0, 0),
            "{}",
            clean.name
        );
    }
    // With a header, `auto` keeps it and says why.
    let clean = polluter::products(10);
    let o = import_json(&env, "h.csv", &polluter::clean_text(&clean)).await;
    assert_eq!(env.count("h").await, 10, "{o}");
    assert!(
        o["error"].as_str().unwrap().contains(
            "header: auto → true (field 1 of the header from line 1, \"product_id\", is not smallint like the rows below)"
        ),
        "{o}"
    );
}

#[tokio::test]
async fn multi_row_headers_are_joined_and_every_cell_kept() {
    let env = Env::new(json!({"create_table": true, "header": "auto"})).await;
    for (i, clean) in polluter::clean_files().iter().enumerate() {
        for (k, p) in [
            (2, Pollution::TwoHeaderRows),
            (3, Pollution::ThreeHeaderRows),
        ] {
            let t = format!("t{i}_{k}");
            psql_copy(&env, &format!("{t}_psql"), clean).await;
            let o = import_json(&env, &format!("{t}.csv"), &polluter::pollute(clean, p)).await;
            assert_eq!(o["status"], "succeeded", "{} {k}: {o}", clean.name);
            assert_eq!(
                columns(&env, &t).await,
                clean.header,
                "{} {k}: {o}",
                clean.name
            );
            assert!(
                o["error"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("header_rows: auto → {k}")),
                "{} {k}: {o}",
                clean.name
            );
            assert_eq!(
                differ(&env, &t, &format!("{t}_psql")).await,
                (0, 0),
                "{} {k}",
                clean.name
            );
        }
    }
    // Given, not detected.
    let env = Env::new(json!({"create_table": true, "header_rows": 2})).await;
    let clean = polluter::products(10);
    let o = import_json(
        &env,
        "g.csv",
        &polluter::pollute(&clean, Pollution::TwoHeaderRows),
    )
    .await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(columns(&env, "g").await, clean.header);
    assert_eq!(env.count("g").await, 10);
}

#[tokio::test]
async fn the_sniffer_reads_wide_delimiters_and_single_quotes_and_keeps_every_cell() {
    let env = Env::new(json!({"create_table": true, "delimiter": "auto", "quote": "auto"})).await;
    let kinds = [
        (
            Pollution::CommaSpace,
            "delimiter: auto → \", \"",
            "quote: auto → \"\\\"\"",
        ),
        (
            Pollution::SemicolonSpace,
            "delimiter: auto → \"; \"",
            "quote: auto → \"\\\"\"",
        ),
        (
            Pollution::SingleQuote,
            "delimiter: auto → \",\"",
            "quote: auto → \"'\"",
        ),
    ];
    for (i, clean) in polluter::clean_files().iter().enumerate() {
        for (k, (p, delimiter, quote)) in kinds.iter().enumerate() {
            let t = format!("t{i}_{k}");
            psql_copy(&env, &format!("{t}_psql"), clean).await;
            let o = import_json(&env, &format!("{t}.csv"), &polluter::pollute(clean, *p)).await;
            assert_eq!(o["status"], "succeeded", "{} {}: {o}", clean.name, p.name());
            let note = o["error"].as_str().unwrap_or_default();
            assert!(note.contains(delimiter), "{} {}: {o}", clean.name, p.name());
            // Where no field is quoted, `"` wins the tie.
            if *p == Pollution::SingleQuote || clean.name == "products" {
                assert!(note.contains(quote), "{} {}: {o}", clean.name, p.name());
            }
            assert_eq!(
                columns(&env, &t).await,
                clean.header,
                "{} {}",
                clean.name,
                p.name()
            );
            assert_eq!(
                differ(&env, &t, &format!("{t}_psql")).await,
                (0, 0),
                "{} {}",
                clean.name,
                p.name()
            );
        }
    }
}

#[tokio::test]
async fn regression_comma_space_delimiter_is_sniffed_as_comma() {
    // Was: sniffed as `,` (and `"`), then 73 of 83 rows skipped with
    // `expected 9 fields, found 11`.
    let env = Env::new(
        json!({"table": "t", "create_table": true, "delimiter": "auto", "on_error": "skip_rows"}),
    )
    .await;
    let clean = polluter::products(83);
    let o = import_json(
        &env,
        "t.csv",
        &polluter::pollute(&clean, Pollution::CommaSpace),
    )
    .await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(
        (o["rows_inserted"].as_u64(), o["rows_rejected"].as_u64()),
        (Some(83), Some(0)),
        "{o}"
    );
}

/// Quotes escaped with a backslash inside quoted fields (as MySQL's and
/// many hand-written exporters write them) are sniffed with `quote: auto`:
/// every row loads with its text whole. Without the escape decision the
/// doubled-quote reading split those fields (`expected 3 fields, found 4`).
#[tokio::test]
async fn regression_backslash_escaped_quotes_split_the_fields_they_quote() {
    let env =
        Env::new(json!({"table": "t", "create_table": true, "delimiter": "auto", "quote": "auto"}))
            .await;
    let mut text = String::from("id,note,n\n");
    for i in 0..40 {
        text.push_str(&format!("{i},\"say \\\"hi {i}\\\", then, go\",{}\n", i * 2));
    }
    let o = import_json(&env, "t.csv", &text).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(o["rows_inserted"], 40, "{o}");
    assert!(
        o["error"]
            .as_str()
            .unwrap_or_default()
            .contains("escape: auto → \"\\\\\""),
        "{o}"
    );
    assert_eq!(
        env.rows("SELECT note FROM t WHERE id = '7'").await,
        ["say \"hi 7\", then, go"]
    );
}

#[tokio::test]
async fn cpi_infer_shows_every_automatic_decision_before_it_matters() {
    let env = Env::new(json!({
        "create_table": "infer", "delimiter": "auto", "quote": "auto", "skip_lines": "auto"
    }))
    .await;
    let clean = polluter::products(20);
    let text = polluter::pollute(&clean, Pollution::CommaSpace);
    let f = env.file("p.csv", format!("Exported today\n\n{text}").as_bytes());
    let r = cpi_on(&env, &["infer", "--project", "p", f.to_str().unwrap()]).await;
    r.assert_code(0)
        .assert_stdout("-- delimiter: auto → \", \"")
        .assert_stdout("-- quote: auto → \"\\\"\"")
        .assert_stdout(
            "-- skip_lines: auto → 2 (the field counts are consistent from line 3, 5 fields)",
        )
        .assert_stdout("-- header: auto → true (field 1 of the header from line 3")
        .assert_stdout("\"product_id\" smallint");
    // The import takes the same decisions.
    let o = import_json(&env, "p.csv", &format!("Exported today\n\n{text}")).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(env.count("p").await, 20);
}
