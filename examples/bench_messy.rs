//! Cells recovered per pollution kind (issue 27), in one run on this
//! machine: `cargo run --release --example bench_messy` (not run in CI).
//!
//! Each clean file of the test polluter (tests/integration/support/
//! polluter.rs: three public data sets and a generated one) is loaded
//! with `psql \copy` into an all-`text` table, then each pollution of it
//! is imported by cpi (the library, as `cpi import` runs a file) with the
//! automatic options below into a table of its own. A pollution's score
//! is the share of the clean cells found in the loaded table, column by
//! column (the multiset of a clean column's values against the loaded
//! column at the same position; a file that failed scores 0). The server
//! is `CPI_BENCH_ADMIN_URL` (default the local one); a fresh database is
//! created and dropped.

#[path = "bench_support/mod.rs"]
mod bench_support;
#[path = "../tests/integration/support/polluter.rs"]
mod polluter;

use std::collections::HashMap;

use polluter::{Clean, Pollution};
use serde_json::json;
use sqlx::PgPool;

/// The options every polluted file is imported with.
fn config(inbox: &str) -> serde_json::Value {
    json!({
        "name": "p",
        "inbox": inbox,
        "defaults": {
            "create_table": true,
            "header": "auto",
            "skip_lines": "auto",
            "comment": "#",
            "delimiter": "auto",
            "quote": "auto",
            "ragged_rows": "rescue",
            "on_error": "skip_rows"
        }
    })
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every row of `table`, each column as text (NULL as `None`).
async fn table_rows(pool: &PgPool, table: &str) -> Vec<Vec<Option<String>>> {
    let rows: Vec<serde_json::Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT json_agg(x) FROM (SELECT (SELECT json_agg(v) FROM json_each_text(row_to_json(t)) AS e(k, v)) AS x FROM {table} t) y"
    )))
    .fetch_one(pool)
    .await
    .ok()
    .and_then(|v: Option<serde_json::Value>| v)
    .and_then(|v| v.as_array().cloned())
    .unwrap_or_default();
    rows.iter()
        .map(|r| {
            r.as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .collect()
}

/// Clean cells found in `loaded`, column by column (multisets).
fn recovered(clean: &[Vec<Option<String>>], loaded: &[Vec<Option<String>>]) -> usize {
    let width = clean.first().map_or(0, Vec::len);
    let mut found = 0;
    for c in 0..width {
        let mut have: HashMap<&Option<String>, usize> = HashMap::new();
        for r in loaded {
            if let Some(v) = r.get(c) {
                *have.entry(v).or_default() += 1;
            }
        }
        for r in clean {
            if let Some(n) = have.get_mut(&r[c]).filter(|n| **n > 0) {
                *n -= 1;
                found += 1;
            }
        }
    }
    found
}

async fn psql_copy(url: &str, pool: &PgPool, table: &str, clean: &Clean, dir: &std::path::Path) {
    let cols: Vec<String> = clean
        .header
        .iter()
        .map(|h| format!("{} text", cpi::config::quote_ident(h)))
        .collect();
    exec(pool, &format!("CREATE TABLE {table} ({})", cols.join(", "))).await;
    let src = dir.join(format!("{table}.clean"));
    std::fs::write(&src, polluter::clean_text(clean)).unwrap();
    let ok = std::process::Command::new("psql")
        .args([
            url,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            &format!(
                "\\copy {table} FROM '{}' WITH (FORMAT csv, HEADER)",
                src.display()
            ),
        ])
        .status()
        .expect("psql")
        .success();
    assert!(ok, "psql \\copy {table}");
}

#[tokio::main]
async fn main() {
    let db = bench_support::fresh_database("cpi_bench_messy").await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    cpi::store::migrate(&pool).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().to_str().unwrap().to_string();
    let conn: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO cpi_connections (name, database_url) VALUES ('c', $1) RETURNING id",
    )
    .bind(&db.url)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO cpi_projects (name, connection_id, config) VALUES ('p', $1, $2)")
        .bind(conn)
        .bind(config(&inbox))
        .execute(&pool)
        .await
        .unwrap();

    let files = polluter::clean_files();
    let mut clean_rows = Vec::new();
    for (i, clean) in files.iter().enumerate() {
        let t = format!("clean_{i}");
        psql_copy(&db.url, &pool, &t, clean, dir.path()).await;
        clean_rows.push(table_rows(&pool, &t).await);
    }
    println!("options: {}", config("INBOX")["defaults"]);
    println!(
        "{:<22} {:>8} {:>8} {:>9} {:>9}  per file",
        "pollution", "cells", "found", "share", "of held"
    );
    let mut known = cpi::import::Known::default();
    for (k, &p) in Pollution::ALL.iter().enumerate() {
        let (mut total, mut found, mut removed) = (0usize, 0usize, 0usize);
        let mut each = Vec::new();
        for (i, clean) in files.iter().enumerate() {
            let name = format!("m_{k}_{i}.csv");
            let path = dir.path().join(&name);
            std::fs::write(&path, polluter::pollute(clean, p)).unwrap();
            let created = cpi::store::jobs::create_started(
                &pool,
                "p",
                &cpi::location::FileRef::local(&path),
                "bench",
            )
            .await
            .unwrap();
            let out = cpi::import::run_created(&pool, &created, "bench", None, &mut known).await;
            let ok = matches!(&out, Ok(o) if o.status != cpi::store::jobs::JobStatus::Failed);
            let loaded = if ok {
                table_rows(&pool, &format!("m_{k}_{i}")).await
            } else {
                Vec::new()
            };
            let cells: usize = clean_rows[i].iter().map(Vec::len).sum();
            let got = recovered(&clean_rows[i], &loaded);
            total += cells;
            found += got;
            removed += polluter::removed_cells(clean, p);
            each.push(format!(
                "{} {:.1}%",
                clean.name,
                100.0 * got as f64 / cells.max(1) as f64
            ));
        }
        // "Of held": of the cells the polluted file still holds (a ragged
        // row's dropped field is in no file).
        println!(
            "{:<22} {:>8} {:>8} {:>8.2}% {:>8.2}%  {}",
            p.name(),
            total,
            found,
            100.0 * found as f64 / total.max(1) as f64,
            100.0 * found as f64 / (total - removed).max(1) as f64,
            each.join(", ")
        );
    }
    pool.close().await;
    db.drop_db().await;
}
