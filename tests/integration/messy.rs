//! Messy files (issue 27) through the real `cpi import` and `cpi infer`
//! against PostgreSQL: the polluted variants of clean files
//! (support/polluter.rs) load, and each automatic decision is on the job.

use serde_json::json;

use crate::support::import::Env;
use crate::support::polluter::{self, Pollution, LONG_NAME};
use crate::support::{Cpi, Run};

/// `cpi ARGS --database-url <the test database>`, off the runtime.
async fn cpi_on(env: &Env, args: &[&str]) -> Run {
    Cpi::new(args).db(&env.db).run_async().await
}

/// `cpi import --project p FILE -o json`: the job's outcome.
async fn import_json(env: &Env, name: &str, text: &str) -> serde_json::Value {
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
async fn columns(env: &Env, table: &str) -> Vec<String> {
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
