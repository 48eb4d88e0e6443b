//! The import engine against the real PostgreSQL: modes, dialect,
//! encodings, exactly once, errors (DESIGN §3, §5).

use std::io::Write;

use cpi::import::ImportError;
use cpi::location::FileRef;
use cpi::store::jobs::{self, JobStatus};
use serde_json::json;

use crate::support::import::{assert_failed_with, counts, Env};

const TYPED: &str = "CREATE TABLE t (
    id bigint PRIMARY KEY, name text, amount numeric(12,2), qty int, small smallint,
    at timestamptz, local_at timestamp, day date, ok boolean, uid uuid, doc jsonb, raw json,
    ratio double precision, r4 real, code varchar(5), ch char(3))";

#[tokio::test]
async fn append_encodes_every_common_type() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec(TYPED).await;
    let csv = "id,name,amount,qty,small,at,local_at,day,ok,uid,doc,raw,ratio,r4,code,ch\n\
        1,\"Smith, \"\"Jo\"\"\",12.50,7,-3,2024-03-01T10:20:30.123456+02:00,2024-03-01 10:20:30,2024-03-01,true,0e4b2a2c-3c1f-4a7e-9f0a-5d8e1b2c3d4e,\"{\"\"a\"\": [1, 2]}\",\"{\"\"b\"\":1}\",0.25,1.5,abcde,xy\n\
        2,,-0.01,,,2024-03-01 00:00:00Z,,1999-12-31,no,,,,-1e3,,,\n";
    let o = env.import("t.csv", csv.as_bytes()).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(counts(&o), (2, 2, 0, 0, 0));
    let rows = env
        .rows("SELECT concat_ws('|', id, name, amount, qty, small, at AT TIME ZONE 'UTC', local_at, day, ok, uid, doc, raw, ratio, r4, code, ch) FROM t ORDER BY id")
        .await;
    assert_eq!(
        rows,
        vec![
            "1|Smith, \"Jo\"|12.50|7|-3|2024-03-01 08:20:30.123456|2024-03-01 10:20:30|2024-03-01|t|0e4b2a2c-3c1f-4a7e-9f0a-5d8e1b2c3d4e|{\"a\": [1, 2]}|{\"b\":1}|0.25|1.5|abcde|xy ",
            "2|-0.01|2024-03-01 00:00:00|1999-12-31|f|-1000",
        ]
    );
}

#[tokio::test]
async fn type_error_names_file_line_column_and_value() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, amount numeric(12,2))")
        .await;
    env.exec("INSERT INTO t VALUES (0, 0)").await;
    let mut csv = String::from("id,amount\n");
    for i in 1..=10 {
        let amount = if i == 7 {
            "\"12,5\"".to_string()
        } else {
            format!("{i}.5")
        };
        csv.push_str(&format!("{i},{amount}\n"));
    }
    let o = env.import("orders_07.csv", csv.as_bytes()).await;
    assert_eq!(o.status, JobStatus::Failed);
    // Row 7 is on line 8 of 11 (the header is line 1).
    assert_eq!(
        o.error.as_deref(),
        Some("orders_07.csv:8: column \"amount\": \"12,5\" is not a valid numeric")
    );
    assert_eq!(o.errors[0].line, 8);
    assert_eq!(env.count("t").await, 1, "the table is unchanged");
    let job = jobs::get(&env.pool, o.job_id).await.unwrap().unwrap();
    assert_eq!(job.status.as_str(), "failed");
    assert_eq!(job.error_details.unwrap()["errors"][0]["line"], 8);
}

#[tokio::test]
async fn server_side_error_names_the_line() {
    // A duplicate key in append mode is found by the server, not by cpi.
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    let o = env
        .import("a.csv", b"id,v\n1,a\n\"2\",\"multi\nline\"\n1,b\n")
        .await;
    assert_eq!(o.status, JobStatus::Failed);
    let e = o.error.unwrap();
    assert!(e.starts_with("a.csv:5: duplicate key value"), "{e}");
    assert!(e.contains("(id)=(1)"), "{e}");
    assert_eq!(env.count("t").await, 0);
}

#[tokio::test]
async fn upsert_last_row_wins_and_unchanged_rows_are_not_rewritten() {
    let env = Env::new(json!({"table": "t", "primary_key": "id"})).await;
    env.exec("CREATE TABLE t (id int PRIMARY KEY, name text, keep text DEFAULT 'k')")
        .await;
    env.exec("INSERT INTO t VALUES (1, 'one', 'x'), (2, 'two', 'y')")
        .await;
    let o = env
        .import("a.csv", b"id,name\n1,uno\n3,three\n1,eins\n2,two\n3,drei\n")
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(o.mode.map(|m| m.as_str()), Some("upsert"));
    // 1 updated (last row wins), 2 unchanged, 3 inserted (its last row).
    assert_eq!(counts(&o), (5, 1, 1, 0, 0));
    assert_eq!(
        env.rows("SELECT concat_ws('|', id, name, keep) FROM t ORDER BY id")
            .await,
        vec!["1|eins|x", "2|two|y", "3|drei|k"],
        "columns absent from the file keep their values"
    );
    // The last row of a key wins even when it equals the stored row.
    let o = env.import("c.csv", b"id,name\n1,changed\n1,eins\n").await;
    assert_eq!(counts(&o), (2, 0, 0, 0, 0), "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT name FROM t WHERE id = 1").await,
        vec!["eins"]
    );
    let xmin_before = env.rows("SELECT xmin::text FROM t WHERE id = 2").await;
    let o = env.import("b.csv", b"id,name\n2,two\n1,eins\n").await;
    assert_eq!(counts(&o), (2, 0, 0, 0, 0));
    assert_eq!(
        env.rows("SELECT xmin::text FROM t WHERE id = 2").await,
        xmin_before
    );
}

#[tokio::test]
async fn upsert_compares_json_and_composite_keys() {
    let env = Env::new(json!({"table": "t", "primary_key": ["a", "b"], "mode": "upsert"})).await;
    env.exec("CREATE TABLE t (a int, b text, j json, PRIMARY KEY (a, b))")
        .await;
    let o = env.import("1.csv", b"a,b,j\n1,x,{}\n1,y,[1]\n").await;
    assert_eq!(counts(&o), (2, 2, 0, 0, 0), "{:?}", o.error);
    let o = env.import("2.csv", b"a,b,j\n1,x,{}\n1,y,[2]\n").await;
    assert_eq!(counts(&o), (2, 0, 1, 0, 0), "{:?}", o.error);
}

#[tokio::test]
async fn upsert_without_a_unique_key_index_is_refused_as_before() {
    // MERGE needs no unique index; ON CONFLICT does, and its refusal
    // stays the rule: a key without one is a configuration error.
    let env = Env::new(json!({"table": "t", "primary_key": "id", "mode": "upsert"})).await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    env.exec("INSERT INTO t VALUES (1, 'a'), (1, 'b')").await;
    let o = env.import("a.csv", b"id,v\n1,x\n2,y\n").await;
    assert_eq!(o.status, JobStatus::Failed, "{o:?}");
    let e = o.error.unwrap_or_default();
    assert!(
        e.contains("no unique or exclusion constraint matching the ON CONFLICT"),
        "{e}"
    );
    assert_eq!(
        env.rows("SELECT id || v FROM t ORDER BY v").await,
        vec!["1a", "1b"]
    );
}

/// `head` (a `id,v` file) followed by enough rows (ids from 100,000, value
/// `pad`) that the upsert runs as MERGE (small files use ON CONFLICT).
fn big_enough_for_merge(head: &[u8]) -> Vec<u8> {
    let mut f = head.to_vec();
    for id in 100_000..110_000 {
        f.extend_from_slice(format!("{id},pad\n").as_bytes());
    }
    f
}

#[tokio::test]
async fn upsert_into_a_table_with_a_delete_rule_still_works() {
    // MERGE refuses tables with rules; ON CONFLICT takes over.
    let env = Env::new(json!({"table": "t", "primary_key": "id", "mode": "upsert"})).await;
    env.exec("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    env.exec("CREATE TABLE gone (id int)").await;
    env.exec("CREATE RULE t_gone AS ON DELETE TO t DO ALSO INSERT INTO gone VALUES (OLD.id)")
        .await;
    env.exec("INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    let file = big_enough_for_merge(b"id,v\n1,a\n2,x\n3,c\n");
    let o = env.import("a.csv", &file).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(counts(&o), (10_003, 10_001, 1, 0, 0));
    assert_eq!(
        env.rows("SELECT id || v FROM t WHERE id < 100 ORDER BY id")
            .await,
        vec!["1a", "2x", "3c"]
    );
}

#[tokio::test]
async fn upsert_waits_for_a_concurrent_insert_of_its_key_and_updates_it() {
    // Another session inserts key 2 and commits while the import's merge
    // waits on it: the import still succeeds (MERGE's unique violation
    // falls back to ON CONFLICT), the file's row wins, and the counts
    // tell the insert of 3 from the update of 2.
    let env = Env::new(json!({"table": "t", "primary_key": "id", "mode": "upsert"})).await;
    env.exec("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    env.exec("INSERT INTO t VALUES (1, 'a')").await;
    let mut other = env.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO t VALUES (2, 'theirs')")
        .execute(&mut *other)
        .await
        .unwrap();
    let commit_when_blocked = async {
        let mut seen = false;
        for _ in 0..600 {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'
                    AND query LIKE 'MERGE%')",
            )
            .fetch_one(&env.pool)
            .await
            .unwrap();
            if waiting {
                seen = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        other.commit().await.unwrap();
        assert!(seen, "the import's MERGE never waited on the other insert");
    };
    let file = big_enough_for_merge(b"id,v\n1,a\n2,mine\n3,new\n");
    let (o, ()) = tokio::join!(env.import("a.csv", &file), commit_when_blocked);
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(counts(&o), (10_003, 10_001, 1, 0, 0));
    assert_eq!(
        env.rows("SELECT id || v FROM t WHERE id < 100 ORDER BY id")
            .await,
        vec!["1a", "2mine", "3new"]
    );
}

#[tokio::test]
async fn replace_makes_the_table_the_file() {
    let env = Env::new(json!({"table": "t", "mode": "replace"})).await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    env.exec("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await;
    let o = env.import("a.csv", b"id,v\n7,x\n8,y\n").await;
    assert_eq!(counts(&o), (2, 2, 0, 3, 0), "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT id || v FROM t ORDER BY id").await,
        vec!["7x", "8y"]
    );
    // With a key, duplicate keys inside the file: the last row wins.
    let env = Env::new(json!({"table": "t", "mode": "replace", "primary_key": "id"})).await;
    env.exec("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    env.exec("INSERT INTO t VALUES (1, 'a')").await;
    let o = env.import("a.csv", b"id,v\n2,x\n2,y\n").await;
    assert_eq!(counts(&o), (2, 1, 0, 1, 0), "{:?}", o.error);
    assert_eq!(env.rows("SELECT id || v FROM t").await, vec!["2y"]);
}

#[tokio::test]
async fn sync_upserts_then_deletes_missing_keys() {
    let env = Env::new(json!({"table": "t", "mode": "sync", "primary_key": "id"})).await;
    env.exec("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    env.exec("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await;
    let o = env.import("a.csv", b"id,v\n1,a\n2,B\n4,d\n").await;
    assert_eq!(counts(&o), (3, 1, 1, 1, 0), "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT id || v FROM t ORDER BY id").await,
        vec!["1a", "2B", "4d"]
    );
}

#[tokio::test]
async fn dialect_options() {
    let env = Env::new(json!({
        "table": "t", "mode": "append", "header": false, "delimiter": ";", "quote": "'",
        "escape": "\\", "null": ["NULL", "-"], "trim": true
    }))
    .await;
    env.exec("CREATE TABLE t (id int, v text, n int)").await;
    let csv = "1;'it\\'s; here';NULL\n2;  plain  ; - \n3;'';7\n";
    let o = env.import("a.csv", csv.as_bytes()).await;
    assert_eq!(counts(&o), (3, 3, 0, 0, 0), "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT concat_ws('|', id, coalesce(v, '<null>'), coalesce(n::text, '<null>')) FROM t ORDER BY id").await,
        vec!["1|it's; here|<null>", "2|plain|<null>", "3||7"]
    );
}

#[tokio::test]
async fn default_null_is_the_empty_field_and_no_trim_keeps_blanks() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    let o = env.import("a.csv", b"id,v\n1,\n2, x \n").await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT id || ':' || coalesce('[' || v || ']', 'null') FROM t ORDER BY id")
            .await,
        vec!["1:null", "2:[ x ]"]
    );
}

#[tokio::test]
async fn encodings_latin1_windows1252_and_utf8_bom() {
    for (enc, bytes, want) in [
        ("latin1", b"id,v\n1,caf\xE9\n".to_vec(), "café"),
        ("windows-1252", b"id,v\n1,\x80 caf\xE9\n".to_vec(), "€ café"),
        (
            "utf-8",
            b"\xEF\xBB\xBFid,v\n1,caf\xC3\xA9\n".to_vec(),
            "café",
        ),
    ] {
        let env = Env::new(json!({"table": "t", "mode": "append", "encoding": enc})).await;
        env.exec("CREATE TABLE t (id int, v text)").await;
        let o = env.import("a.csv", &bytes).await;
        assert_eq!(o.status, JobStatus::Succeeded, "{enc}: {:?}", o.error);
        assert_eq!(env.rows("SELECT v FROM t").await, vec![want], "{enc}");
    }
}

#[tokio::test]
async fn invalid_utf8_is_a_row_error() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    let o = env.import("a.csv", b"id,v\n1,ok\n2,caf\xE9\n").await;
    assert_failed_with(
        &o,
        "a.csv:3: column \"v\": \"caf\u{FFFD}\" is not valid UTF-8",
    );
}

#[tokio::test]
async fn gzip_is_read_transparently() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..5000 {
        writeln!(
            gz,
            "{}",
            if i == 0 {
                "id,v".to_string()
            } else {
                format!("{i},v{i}")
            }
        )
        .unwrap();
    }
    let o = env.import("a.csv.gz", &gz.finish().unwrap()).await;
    assert_eq!(counts(&o), (4999, 4999, 0, 0, 0), "{:?}", o.error);
    assert_eq!(env.count("t").await, 4999);
    // The file is identified by its bytes on disk, the compressed ones.
    let (want, _) = cpi::import::reader::hash_file(&env.inbox().join("a.csv.gz")).unwrap();
    assert_eq!(o.sha256.as_deref(), Some(want.as_str()));
}

#[tokio::test]
async fn same_content_twice_is_a_duplicate_even_without_job_rows() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    let first = env.import("a.csv", b"id,v\n1,a\n2,b\n").await;
    assert_eq!(first.status, JobStatus::Succeeded);
    // Same bytes under another name: still the same file.
    let again = env.import("b.csv", b"id,v\n1,a\n2,b\n").await;
    assert_eq!(again.status, JobStatus::Duplicate);
    assert_eq!(counts(&again), (0, 0, 0, 0, 0));
    assert!(again
        .error
        .as_deref()
        .unwrap()
        .contains(&first.job_id.to_string()));
    assert_eq!(env.count("t").await, 2);
    // The management database forgets every job: the target's ledger remembers.
    env.exec("DELETE FROM cpi_import_jobs").await;
    let third = env.import("c.csv", b"id,v\n1,a\n2,b\n").await;
    assert_eq!(third.status, JobStatus::Duplicate);
    assert_eq!(env.count("t").await, 2);
    assert_eq!(
        env.rows("SELECT job_id::text || ' ' || file_name || ' ' || rows FROM cpi.imported_files")
            .await,
        vec![format!("{} a.csv 2", first.job_id)]
    );
    let job = jobs::get(&env.pool, third.job_id).await.unwrap().unwrap();
    assert_eq!(job.status.as_str(), "duplicate");
    // The sha256 is right whether it was computed before loading (a file
    // of a size seen before) or while streaming (the first one).
    let (want, _) = cpi::import::reader::hash_file(&env.inbox().join("a.csv")).unwrap();
    for o in [&first, &again, &third] {
        assert_eq!(o.sha256.as_deref(), Some(want.as_str()));
    }
    assert_eq!(job.file_sha256.as_deref(), Some(want.as_str()));
}

#[tokio::test]
async fn a_failed_file_is_not_in_the_ledger_and_can_be_fixed() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int)").await;
    let bad = env.import("a.csv", b"id\nx\n").await;
    assert_eq!(bad.status, JobStatus::Failed);
    assert_eq!(env.count("cpi.imported_files").await, 0);
    let good = env.import("a.csv", b"id\n1\n").await;
    assert_eq!(good.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn skip_rows_reports_bad_rows_and_loads_the_rest() {
    let env = Env::new(json!({"table": "t", "mode": "append", "on_error": "skip_rows"})).await;
    env.exec("CREATE TABLE t (id int NOT NULL, d date)").await;
    let o = env
        .import(
            "a.csv",
            b"id,d\n1,2024-01-01\nx,2024-01-02\n3,31.12.2024\n4\n,2024-01-05\n6,\n",
        )
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(counts(&o), (6, 2, 0, 0, 4));
    let lines: Vec<u64> = o.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![3, 4, 5, 6]);
    assert_eq!(
        o.errors[1].message,
        // The server's verdict (DateStyle MDY), the row skipped all the same.
        "a.csv:4: column \"d\": date/time field value out of range: \"31.12.2024\""
    );
    assert_eq!(o.errors[2].message, "a.csv:5: expected 2 fields, found 1");
    assert_eq!(
        o.errors[3].message,
        "a.csv:6: column \"id\": null value in a NOT NULL column"
    );
    assert_eq!(
        env.rows("SELECT id::text FROM t ORDER BY id").await,
        vec!["1", "6"]
    );
    let job = jobs::get(&env.pool, o.job_id).await.unwrap().unwrap();
    assert_eq!(job.rows_rejected, 4);
    assert_eq!(
        job.error_details.unwrap()["errors"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn skip_rows_beyond_max_errors_rejects_the_file() {
    let env = Env::new(json!({
        "table": "t", "mode": "append", "on_error": "skip_rows", "max_errors": 1
    }))
    .await;
    env.exec("CREATE TABLE t (id int)").await;
    let o = env.import("a.csv", b"id\n1\nx\n2\ny\n3\n").await;
    assert_failed_with(
        &o,
        "a.csv: more than 1 bad rows (max_errors), the file is rejected",
    );
    assert_eq!(o.errors.len(), 2);
    assert_eq!(env.count("t").await, 0);
    // Within the limit it loads.
    let o = env.import("b.csv", b"id\n1\nx\n2\n").await;
    assert_eq!(counts(&o), (3, 2, 0, 0, 1));
}

#[tokio::test]
async fn abort_at_line_n_of_m_leaves_a_merge_table_unchanged() {
    let env = Env::new(json!({"table": "t", "mode": "sync", "primary_key": "id"})).await;
    env.exec("CREATE TABLE t (id int PRIMARY KEY, v int)").await;
    env.exec("INSERT INTO t SELECT g, g FROM generate_series(1, 100) g")
        .await;
    let mut csv = String::from("id,v\n");
    for i in 1..=3000 {
        csv.push_str(&format!(
            "{i},{}\n",
            if i == 2500 {
                "2.5".into()
            } else {
                (i * 2).to_string()
            }
        ));
    }
    let o = env.import("a.csv", csv.as_bytes()).await;
    assert_eq!(o.status, JobStatus::Failed);
    assert!(
        o.error
            .as_deref()
            .unwrap()
            .starts_with("a.csv:2501: column \"v\""),
        "{:?}",
        o.error
    );
    assert_eq!(env.count("t").await, 100);
    assert_eq!(env.rows("SELECT sum(v)::text FROM t").await, vec!["5050"]);
}

#[tokio::test]
async fn columns_renames_case_and_extra_missing_policies() {
    let env = Env::with_config(|inbox| {
        json!({"name": "p", "inbox": inbox, "tables": [
            {"file_pattern": "r_*.csv", "table": "t", "mode": "append",
             "columns": {"Customer ID": "id", "E-Mail": "email"}},
            {"file_pattern": "x_*.csv", "table": "t", "mode": "append"},
            {"file_pattern": "i_*.csv", "table": "t", "mode": "append", "extra_columns": "ignore"},
            {"file_pattern": "m_*.csv", "table": "t", "mode": "append", "missing_columns": "error"},
        ]})
    })
    .await;
    env.exec("CREATE TABLE t (id int, email text, \"Name\" text)")
        .await;
    let o = env
        .import("r_1.csv", b"customer id,E-MAIL,NAME\n1,a@x,Ann\n")
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT concat_ws('|', id, email, \"Name\") FROM t")
            .await,
        vec!["1|a@x|Ann"]
    );

    let o = env.import("x_1.csv", b"id,extra\n2,zz\n").await;
    assert_failed_with(
        &o,
        "x_1.csv: column \"extra\" of the file is not a column of table t (extra_columns: error)",
    );
    let o = env.import("i_1.csv", b"id,extra\n3,zz\n").await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    let o = env.import("m_1.csv", b"id,email\n4,b@x\n").await;
    assert_eq!(
        o.error.as_deref(),
        Some("m_1.csv: column \"Name\" of table t is not in the file (missing_columns: error)")
    );
    assert_eq!(env.count("t").await, 2);
}

#[tokio::test]
async fn hostile_header_cannot_inject_sql() {
    let evil = "id\"; DROP TABLE x; --";
    let env = Env::with_config(|inbox| {
        json!({"name": "p", "inbox": inbox, "tables": [
            {"file_pattern": "a.csv", "table": "t", "mode": "append"},
            {"file_pattern": "new.csv", "table": "made", "create_table": true, "primary_key": evil},
        ]})
    })
    .await;
    env.exec("CREATE TABLE t (id int); CREATE TABLE x (id int)")
        .await;
    let csv = format!("\"{}\"\n1\n", evil.replace('"', "\"\""));
    let o = env.import("a.csv", csv.as_bytes()).await;
    assert_eq!(o.status, JobStatus::Failed);
    assert!(o
        .error
        .unwrap()
        .contains("column \"id\"\"; DROP TABLE x; --\" of the file is not a column"));
    assert_eq!(env.count("x").await, 0, "table x still exists");
    // Created quoted, and upserted through it.
    let o = env.import("new.csv", csv.as_bytes()).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(env.count("x").await, 0);
    assert_eq!(
        env.rows("SELECT attname::text FROM pg_attribute WHERE attrelid = 'made'::regclass AND attnum > 0").await,
        vec![evil]
    );
}

#[tokio::test]
async fn create_table_from_header_with_key() {
    let env =
        Env::new(json!({"table": "sales.orders", "create_table": true, "primary_key": "Order ID"}))
            .await;
    env.exec("CREATE SCHEMA sales").await;
    let o = env
        .import("a.csv", b"Order ID,Amount\n1,10\n1,11\n2,5\n")
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(counts(&o), (3, 2, 0, 0, 0));
    assert_eq!(
        env.rows("SELECT \"Order ID\" || '=' || \"Amount\" FROM sales.orders ORDER BY 1")
            .await,
        vec!["1=11", "2=5"]
    );
    // A failed create_table import leaves no table behind.
    let env = Env::new(json!({"table": "made", "create_table": true, "mode": "append"})).await;
    let o = env.import("a.csv", b"a,b\n1\n").await;
    assert_eq!(o.status, JobStatus::Failed);
    assert_eq!(
        env.rows("SELECT coalesce(to_regclass('made')::text, 'none')")
            .await,
        vec!["none"]
    );
}

#[tokio::test]
async fn missing_table_without_create_table_fails_clearly() {
    let env = Env::new(json!({"table": "nope", "mode": "append"})).await;
    let o = env.import("a.csv", b"id\n1\n").await;
    assert_failed_with(
        &o,
        "table nope does not exist in the target database (create_table is false)",
    );
}

#[tokio::test]
async fn unknown_types_go_through_text_copy() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TABLE t (id int, ip inet, m mood, tags text[])").await;
    let o = env
        .import("a.csv", b"id,ip,m,tags\n1,10.0.0.1,ok,\"{a,b}\"\n2,,sad,\n")
        .await;
    assert_eq!(counts(&o), (2, 2, 0, 0, 0), "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT concat_ws('|', id, ip, m, tags) FROM t ORDER BY id")
            .await,
        vec!["1|10.0.0.1|ok|{a,b}", "2|sad"]
    );
    let o = env
        .import(
            "b.csv",
            b"id,ip,m,tags\n3,10.0.0.1,ok,\n4,10.0.0.2,happy,\n",
        )
        .await;
    assert_eq!(o.status, JobStatus::Failed);
    let e = o.error.unwrap();
    assert!(
        e.starts_with("b.csv:3: column \"m\": invalid input value for enum mood: \"happy\""),
        "{e}"
    );
}

#[tokio::test]
async fn two_imports_into_one_table_queue_on_the_lock() {
    let env = Env::new(json!({"table": "t", "primary_key": "id"})).await;
    env.exec("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    let mut a = String::from("id,v\n");
    let mut b = String::from("id,v\n");
    for i in 0..20000 {
        a.push_str(&format!("{i},a\n"));
        b.push_str(&format!("{},b\n", 19999 - i));
    }
    let (ra, rb) = tokio::join!(
        env.try_import("a.csv", a.as_bytes()),
        env.try_import("b.csv", b.as_bytes())
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.status, JobStatus::Succeeded, "{:?}", ra.error);
    assert_eq!(rb.status, JobStatus::Succeeded, "{:?}", rb.error);
    assert_eq!(ra.counts.rows_inserted + rb.counts.rows_inserted, 20000);
    assert_eq!(ra.counts.rows_updated + rb.counts.rows_updated, 20000);
    assert_eq!(env.count("t").await, 20000);
}

#[tokio::test]
async fn the_three_connection_errors_are_distinct() {
    let env = Env::new(json!({"table": "t"})).await;
    let path = env.file("a.csv", b"id\n1\n");

    // (1) The project is gone by the time the job runs.
    let id = jobs::create_started(&env.pool, "p", &FileRef::local(&path), "test")
        .await
        .unwrap()
        .job
        .id;
    env.exec("DELETE FROM cpi_projects").await;
    let e = cpi::import::run_job(&env.pool, id, "test", None)
        .await
        .unwrap_err();
    assert!(matches!(e, ImportError::ProjectNotFound(_)), "{e}");
    assert_eq!(
        e.to_string(),
        "project \"p\" does not exist in the management database"
    );
    let job = jobs::get(&env.pool, id).await.unwrap().unwrap();
    assert_eq!(
        (job.status.as_str(), job.error.as_deref()),
        ("failed", Some(e.to_string().as_str()))
    );

    // (2) No connection_id.
    env.set_project(json!({"name": "p"}), None).await;
    let e = env.run(&path).await.unwrap_err();
    assert!(matches!(e, ImportError::NoConnection(_)), "{e}");
    assert!(e.to_string().contains("has no connection"), "{e}");
    assert!(!e.retryable());

    // (3) A connection_id whose row does not exist (the FK normally
    // prevents it: bypass it the way a restore or a manual edit could).
    env.set_project(json!({"name": "p"}), Some("postgres://x@127.0.0.1:1/x"))
        .await;
    env.exec(
        "SET session_replication_role = replica; DELETE FROM cpi_connections; SET session_replication_role = DEFAULT",
    )
    .await;
    let e = env.run(&path).await.unwrap_err();
    assert!(matches!(e, ImportError::ConnectionNotFound { .. }), "{e}");
    assert!(
        e.to_string().contains("its connection") && e.to_string().contains("does not exist"),
        "{e}"
    );
}

#[tokio::test]
async fn a_legacy_env_var_config_is_refused_with_the_way_out() {
    let env = Env::new(json!({"table": "t"})).await;
    env.set_project(
        json!({"name": "p", "connection": {"env_var": "ABC_DATABASE_URL"}}),
        Some(&env.db.url()),
    )
    .await;
    let path = env.file("a.csv", b"id\n1\n");
    let e = env.run(&path).await.unwrap_err();
    assert!(e.to_string().contains("cpi convert-legacy"), "{e}");
}

#[tokio::test]
async fn unreachable_target_is_retryable_and_never_shows_the_password() {
    let env = Env::new(json!({"table": "t"})).await;
    env.set_project(
        json!({"name": "p"}),
        Some("postgres://importer:Sup3rS3cret@127.0.0.1:1/x"),
    )
    .await;
    let path = env.file("a.csv", b"id\n1\n");
    let e = env.run(&path).await.unwrap_err();
    assert!(e.retryable(), "{e}");
    assert!(matches!(e, ImportError::TargetUnreachable { .. }), "{e}");
    assert!(!format!("{e} {e:?}").contains("Sup3rS3cret"), "{e:?}");
}

/// The binary encoders agree with PostgreSQL's own text input functions.
#[tokio::test]
async fn binary_values_equal_what_postgres_parses_from_text() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec(
        "CREATE TABLE t (raw text, n numeric, ts timestamptz, lts timestamp, d date, f float8, r real, i int8)",
    )
    .await;
    let numbers = [
        "0",
        "-0",
        "1e3",
        "0.0001",
        "123456789.123456789",
        "1.5e-7",
        "-99999999999999999999.5",
        "NaN",
        "-Infinity",
        "0.00",
        "10000",
        "-123456.7",
        "+7",
        ".5",
        "5.",
        "1E+2",
        "0.000000000001",
    ];
    let times = [
        "2024-02-29 23:59:59.999999+05:30",
        "1970-01-01",
        "2000-01-01T00:00:00Z",
        "1900-03-01 12:00",
        "2038-01-19 03:14:07.5-0800",
        "1999-12-31 23:59:60",
        "infinity",
        "2024-06-30 24:00:00",
    ];
    let mut csv = String::from("raw,n,ts,lts,d,f,r,i\n");
    for n in numbers {
        csv.push_str(&format!("{n},{n},,,,,,\n"));
    }
    for t in times {
        let d = if t == "infinity" {
            t.to_string()
        } else {
            t[..10].to_string()
        };
        csv.push_str(&format!("{t},,{t},{t},{d},,,\n"));
    }
    for f in [
        "1.5",
        "-0",
        "1e-30",
        "3.4028235e38",
        "-Infinity",
        "NaN",
        "0.1",
    ] {
        csv.push_str(&format!("{f},,,,,{f},{f},\n"));
    }
    for i in ["-9223372036854775808", "9223372036854775807", "+42", " 7 "] {
        csv.push_str(&format!("\"{i}\",,,,,,,\"{i}\"\n"));
    }
    let o = env.import("a.csv", csv.as_bytes()).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    let mut c = env.db.connect().await;
    sqlx::query("SET TimeZone = 'UTC'")
        .execute(&mut c)
        .await
        .unwrap();
    let bad: Vec<String> = sqlx::query_scalar(
        "SELECT raw FROM t WHERE (n IS NOT NULL AND n::text <> raw::numeric::text)
            OR (ts IS NOT NULL AND ts <> raw::timestamptz)
            OR (lts IS NOT NULL AND lts <> raw::timestamp)
            OR (d IS NOT NULL AND d <> left(raw, 10)::date AND raw <> 'infinity')
            OR (f IS NOT NULL AND f::text <> raw::float8::text)
            OR (r IS NOT NULL AND r::text <> raw::real::text)
            OR (i IS NOT NULL AND i <> raw::int8)",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(
        bad.is_empty(),
        "values that differ from PostgreSQL's parse: {bad:?}"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n as usize, numbers.len() + times.len() + 7 + 4);
}

#[tokio::test]
async fn a_finished_job_keeps_its_result_and_a_moved_failed_file_is_found() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int)").await;
    let ok = env.import("a.csv", b"id\n1\n").await;
    let e = cpi::import::run_job(&env.pool, ok.job_id, "test", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is succeeded"), "{e}");
    let job = jobs::get(&env.pool, ok.job_id).await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.attempts), ("succeeded", 1));

    // The daemon moved the failed file to <inbox>/failed/, where it is fixed.
    let bad = env.import("b.csv", b"id\nx\n").await;
    assert_eq!(bad.status, JobStatus::Failed);
    std::fs::create_dir(env.inbox().join("failed")).unwrap();
    std::fs::remove_file(env.inbox().join("b.csv")).unwrap();
    std::fs::write(env.inbox().join("failed/b.csv"), b"id\n2\n").unwrap();
    let by = cpi::store::queue::Actor {
        who: "test",
        reason: Some("fixed"),
        audit: None,
    };
    let retried = cpi::controls::retry(&env.pool, bad.job_id, false, &by)
        .await
        .unwrap();
    // Back in the inbox, to be finished from there.
    assert!(retried.returned);
    let back = env.inbox().join("b.csv");
    assert_eq!(retried.job.file_path, back.to_str().unwrap());
    assert!(back.is_file() && !env.inbox().join("failed/b.csv").exists());
    let o = cpi::import::run_job(&env.pool, bad.job_id, "test", None)
        .await
        .unwrap();
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(env.count("t").await, 2);
}

#[tokio::test]
async fn crlf_line_ends_and_quoted_newlines() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    let o = env
        .import("a.csv", b"id,v\r\n1,\"two\r\nlines\"\r\n2,x\r\n")
        .await;
    assert_eq!(counts(&o), (2, 2, 0, 0, 0), "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT v FROM t ORDER BY id").await,
        vec!["two\r\nlines", "x"]
    );
}

/// `cpi import` starts each file's job in the insert that creates it, and
/// keeps the project it read for the next file while the project's and
/// connection's rows are unchanged: a change between two files of one call
/// applies to the second.
#[tokio::test]
async fn a_project_changed_between_two_files_of_one_call_applies_to_the_second() {
    let env = Env::new(json!({"table": "t"})).await;
    env.exec("CREATE TABLE t (id int)").await;
    env.exec("CREATE TABLE t2 (id int)").await;
    let mut known = cpi::import::Known::default();
    let env = &env;
    let run = |name: &str, body: &[u8]| {
        let path = env.file(name, body);
        async move {
            jobs::create_started(&env.pool, "p", &FileRef::local(&path), "cli:1")
                .await
                .unwrap()
        }
    };

    let a = run("a.csv", b"id\n1\n").await;
    assert_eq!((a.job.status, a.job.attempts), (JobStatus::Running, 1));
    assert!(a.job.started_at.is_some() && a.target_version.is_some());
    let o = cpi::import::run_created(&env.pool, &a, "cli:1", None, &mut known)
        .await
        .unwrap();
    assert_eq!(o.target_table.as_deref(), Some("t"));

    // A reconcile changes the project's table (an update of its row).
    env.exec("UPDATE cpi_projects SET config = jsonb_set(config, '{defaults,table}', '\"t2\"')")
        .await;
    let b = run("b.csv", b"id\n2\n").await;
    let o = cpi::import::run_created(&env.pool, &b, "cli:1", None, &mut known)
        .await
        .unwrap();
    assert_eq!(
        (o.status, o.target_table.as_deref()),
        (JobStatus::Succeeded, Some("t2"))
    );
    assert_eq!((env.count("t").await, env.count("t2").await), (1, 1));
    let job = jobs::get(&env.pool, b.job.id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 1));
}
