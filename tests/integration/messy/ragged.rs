//! `ragged_rows` through the real `cpi import`: pad, truncate, rescue,
//! and the default that stays all or nothing.

use serde_json::json;

use super::{columns, cpi_on, differ, import_json, psql_copy};
use crate::support::import::Env;
use crate::support::polluter::{self, Pollution};

#[tokio::test]
async fn ragged_rows_pad_reads_a_header_with_one_separator_too_many() {
    // The header has an empty last name: `column_6`, NULL in every row.
    let env = Env::new(json!({"create_table": true, "ragged_rows": "pad"})).await;
    for (i, clean) in polluter::clean_files().iter().enumerate() {
        let t = format!("t{i}");
        psql_copy(&env, &format!("{t}_psql"), clean).await;
        let text = polluter::pollute(clean, Pollution::HeaderOneTooMany);
        let o = import_json(&env, &format!("{t}.csv"), &text).await;
        assert_eq!(o["status"], "succeeded", "{}: {o}", clean.name);
        let n = clean.rows.len();
        assert!(
            o["error"].as_str().unwrap().contains(&format!(
                "ragged_rows: pad → {n} row(s) with fewer fields than the header loaded, the missing fields NULL"
            )),
            "{}: {o}",
            clean.name
        );
        let extra = format!("column_{}", clean.header.len() + 1);
        let mut want = clean.header.clone();
        want.push(extra.clone());
        assert_eq!(columns(&env, &t).await, want);
        env.exec(&format!("ALTER TABLE {t} DROP COLUMN {extra}"))
            .await;
        assert_eq!(
            differ(&env, &t, &format!("{t}_psql")).await,
            (0, 0),
            "{}",
            clean.name
        );
    }
}

#[tokio::test]
async fn ragged_rows_truncate_pads_short_rows_and_drops_extra_fields() {
    let env =
        Env::new(json!({"table": "t", "create_table": true, "ragged_rows": "truncate"})).await;
    let clean = polluter::products(30);
    psql_copy(&env, "t_psql", &clean).await;
    let o = import_json(&env, "t.csv", &polluter::pollute(&clean, Pollution::Ragged)).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    let note = o["error"].as_str().unwrap();
    assert!(
        note.contains("ragged_rows: truncate → 3 row(s) with more fields"),
        "{o}"
    );
    assert!(
        note.contains("ragged_rows: truncate → 3 row(s) with fewer fields"),
        "{o}"
    );
    assert_eq!(env.count("t").await, 30);
    // Only the three short rows' last cells are missing (NULL).
    assert_eq!(differ(&env, "t", "t_psql").await, (3, 3));
    assert_eq!(env.count("t WHERE in_stock IS NULL").await, 3);

    // The default stays all or nothing: the same file loads nothing.
    let env = Env::new(json!({"table": "t", "create_table": true})).await;
    let o = import_json(&env, "t.csv", &polluter::pollute(&clean, Pollution::Ragged)).await;
    assert_eq!(o["status"], "failed", "{o}");
    assert!(
        o["error"]
            .as_str()
            .unwrap()
            .contains("t.csv:5: expected 5 fields, found 6"),
        "{o}"
    );
}

#[tokio::test]
async fn ragged_rows_rescue_keeps_what_did_not_fit_in_a_rescued_column() {
    let env = Env::new(json!({"create_table": true, "ragged_rows": "rescue"})).await;
    let clean = polluter::products(30);
    let o = import_json(&env, "r.csv", &polluter::pollute(&clean, Pollution::Ragged)).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    let note = o["error"].as_str().unwrap();
    assert!(
        note.contains("ragged_rows: rescue → added \"_rescued\" jsonb to r"),
        "{o}"
    );
    assert!(
        note.contains("ragged_rows: rescue → 3 row(s) with more fields than the header loaded, the extra fields in \"_rescued\""),
        "{o}"
    );
    assert_eq!(env.count("r").await, 30);
    let rescued = env
        .rows("SELECT product_id || ' ' || _rescued::text FROM r WHERE _rescued IS NOT NULL ORDER BY product_id::int")
        .await;
    assert_eq!(
        rescued,
        [
            "4 {\"extra\": [\"stray\"]}",
            "9 {\"missing\": 1}",
            "14 {\"extra\": [\"stray\"]}",
            "19 {\"missing\": 1}",
            "24 {\"extra\": [\"stray\"]}",
            "29 {\"missing\": 1}",
        ]
    );

    // A header with one separator too few: every row's last field is
    // rescued, nothing lost; an existing table gets the column too.
    env.exec("CREATE TABLE f (product_id int, product_name text, description text, \"unit_price in_stock\" text)").await;
    let text = polluter::pollute(&clean, Pollution::HeaderOneTooFew);
    let o = import_json(&env, "f.csv", &text).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    let lost = env.count("f WHERE _rescued->'extra'->>0 IS NULL").await;
    assert_eq!(lost, 0);
    assert_eq!(env.count("f").await, 30);
    assert_eq!(
        env.rows("SELECT _rescued->'extra'->>0 FROM f WHERE product_id = 3")
            .await,
        ["false"]
    );
}

#[tokio::test]
async fn ragged_rows_rescue_goes_through_the_merge_of_upsert() {
    let env = Env::new(json!({"table": "u", "create_table": "infer", "primary_key": "product_id", "ragged_rows": "rescue"})).await;
    let clean = polluter::products(30);
    let text = polluter::pollute(&clean, Pollution::Ragged);
    let o = import_json(&env, "u.csv", &text).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(o["rows_inserted"], 30, "{o}");
    let second = text.replace("stray", "again");
    let o = import_json(&env, "u2.csv", &second).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(o["rows_updated"], 3, "{o}");
    assert_eq!(
        env.rows("SELECT _rescued::text FROM u WHERE product_id = 4")
            .await,
        ["{\"extra\": [\"again\"]}"]
    );
}

#[tokio::test]
async fn rejects_table_keeps_every_skipped_row_in_the_imports_transaction() {
    let env = Env::new(
        json!({"table": "t", "create_table": true, "on_error": "skip_rows", "rejects": "table"}),
    )
    .await;
    let clean = polluter::products(30);
    let text = polluter::pollute(&clean, Pollution::Ragged);
    let o = import_json(&env, "t.csv", &text).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(
        (o["rows_inserted"].as_u64(), o["rows_rejected"].as_u64()),
        (Some(24), Some(6)),
        "{o}"
    );
    assert!(
        o["error"]
            .as_str()
            .unwrap()
            .contains("rejects: table → 6 skipped row(s) in cpi.rejected_rows"),
        "{o}"
    );
    let job = o["job_id"].as_str().unwrap();
    let rows = env
        .rows(&format!(
            "SELECT concat_ws(' | ', file_name, target_table, line, raw, error) FROM cpi.rejected_rows \
             WHERE job_id = '{job}' ORDER BY line"
        ))
        .await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 6, "{rows:?}");
    for (r, line) in rows.iter().zip([5, 10, 15, 20, 25, 30]) {
        let found = if line % 10 == 5 { 6 } else { 4 };
        assert_eq!(
            r,
            &format!(
                "t.csv | \"t\" | {line} | {} | t.csv:{line}: expected 5 fields, found {found}",
                lines[line - 1]
            )
        );
    }
    // Nothing lost: every line of the file is loaded or kept.
    assert_eq!(env.count("t").await + 6, 30);
    // Listed on the job: `cpi jobs show ID --rejected N`, first N by line.
    let r = cpi_on(
        &env,
        &["jobs", "show", &job[..8], "--rejected", "2", "-o", "json"],
    )
    .await;
    r.assert_code(0);
    let shown: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let kept = &shown["rejected_rows"];
    assert_eq!(kept["total"], 6, "{shown}");
    assert_eq!(kept["rows"].as_array().unwrap().len(), 2, "{shown}");
    assert_eq!(kept["rows"][0]["line"], 5, "{shown}");
    assert_eq!(kept["rows"][0]["raw"], lines[4], "{shown}");
    assert_eq!(
        kept["rows"][1]["error"], "t.csv:10: expected 5 fields, found 4",
        "{shown}"
    );
    let plain = cpi_on(&env, &["jobs", "show", &job[..8], "-o", "json"]).await;
    assert!(
        !plain.stdout.contains("rejected_rows\""),
        "only when asked: {}",
        plain.stdout
    );

    // A file that fails leaves no rejected row behind (one transaction).
    let env = Env::new(json!({"table": "t", "create_table": true, "on_error": "skip_rows", "max_errors": 2, "rejects": "table"})).await;
    let o = import_json(&env, "t.csv", &text).await;
    assert_eq!(o["status"], "failed", "{o}");
    assert_eq!(env.count("cpi.rejected_rows").await, 0);
}

/// A header with one separator too few (two names run together) or one
/// too many (a trailing comma) is read for what it is with `header: auto`:
/// each value under its position, every row loaded, the decision on the
/// job. On main every row was rejected (`expected 4 fields, found 5`).
#[tokio::test]
async fn regression_a_header_off_by_one_separator_rejects_every_row() {
    let env = Env::new(json!({"create_table": true, "header": "auto"})).await;
    for (i, clean) in polluter::clean_files().iter().enumerate() {
        for (k, p) in [
            ("few", Pollution::HeaderOneTooFew),
            ("many", Pollution::HeaderOneTooMany),
        ] {
            let t = format!("h{i}_{k}");
            psql_copy(&env, &format!("{t}_psql"), clean).await;
            let o = import_json(&env, &format!("{t}.csv"), &polluter::pollute(clean, p)).await;
            assert_eq!(o["status"], "succeeded", "{} {k}: {o}", clean.name);
            let note = o["error"].as_str().unwrap_or_default();
            assert!(note.contains("the rows below"), "{} {k}: {o}", clean.name);
            let cols = columns(&env, &t).await;
            assert_eq!(
                cols.len(),
                clean.header.len(),
                "{} {k}: {cols:?}",
                clean.name
            );
            if p == Pollution::HeaderOneTooFew {
                assert_eq!(
                    cols.last().unwrap(),
                    &format!("column_{}", clean.header.len()),
                    "{}",
                    clean.name
                );
            } else {
                assert_eq!(cols, clean.header, "{}", clean.name);
            }
            assert_eq!(
                differ(&env, &t, &format!("{t}_psql")).await,
                (0, 0),
                "{} {k}",
                clean.name
            );
        }
    }
}

/// A second table after the rows (a summary under the data) ends the first
/// table at its header: the default fails the file naming that line; with
/// `on_error: skip_rows` and `rejects: table` its lines are kept in
/// `cpi.rejected_rows`; with `ragged_rows: rescue` they are loaded whole
/// in `_rescued`. On main its rows were loaded as data of the first table.
#[tokio::test]
async fn regression_a_second_table_in_the_file_is_loaded_as_rows_of_the_first() {
    let clean = polluter::products(30);
    let text = polluter::pollute(&clean, Pollution::SecondTable);
    // Header line 1, 30 rows, a blank line, then the summary's header.
    let at = 33;
    assert!(
        text.lines().nth(at - 1).unwrap().starts_with("summary,"),
        "{text}"
    );

    let env = Env::new(json!({"table": "t", "create_table": true, "ragged_rows": "pad"})).await;
    let o = import_json(&env, "t.csv", &text).await;
    assert_eq!(o["status"], "failed", "{o}");
    let error = o["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("t.csv:{at}: a second table starts here"))
            && error.contains(&format!("the first table ends at line {}", at - 1)),
        "{o}"
    );

    let env = Env::new(
        json!({"table": "t", "create_table": true, "ragged_rows": "pad",
        "on_error": "skip_rows", "rejects": "table"}),
    )
    .await;
    let o = import_json(&env, "t.csv", &text).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(env.count("t").await, 30);
    assert_eq!(
        env.rows("SELECT line || ' ' || raw FROM cpi.rejected_rows ORDER BY line")
            .await,
        [
            "33 summary,count".to_string(),
            "34 rows,30".into(),
            "35 source,products".into()
        ]
    );

    let env = Env::new(json!({"table": "r", "create_table": true, "ragged_rows": "rescue"})).await;
    psql_copy(&env, "r_psql", &clean).await;
    let o = import_json(&env, "r.csv", &text).await;
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(
        env.rows(
            "SELECT _rescued::text FROM r WHERE _rescued IS NOT NULL ORDER BY _rescued->>'fields'"
        )
        .await,
        [
            "{\"fields\": [\"rows\", \"30\"], \"second_table\": 33}".to_string(),
            "{\"fields\": [\"source\", \"products\"], \"second_table\": 33}".into(),
            "{\"fields\": [\"summary\", \"count\"], \"second_table\": 33}".into(),
        ]
    );
    let cols = clean
        .header
        .iter()
        .map(|h| cpi::config::quote_ident(h))
        .collect::<Vec<_>>()
        .join(", ");
    env.exec(&format!(
        "CREATE TABLE r_first AS SELECT {cols} FROM r WHERE _rescued IS NULL"
    ))
    .await;
    assert_eq!(differ(&env, "r_first", "r_psql").await, (0, 0));
}
