//! Real-world CSVs (issue 13): public data sets shipped by package
//! registries (tests/data/README.md) load as `psql \copy` loads them, and
//! values only the server reads (`Jan 1 2000`) reach the server.

use std::path::{Path, PathBuf};

use cpi::store::jobs::JobStatus;
use serde_json::json;

use crate::support::import::{assert_failed_with, counts, Env};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Loads `rel` with `psql \copy` into `<table>_psql` and with cpi into
/// `<table>` (both created by `create` with `{t}` for the name) and
/// compares: the same count, `EXCEPT` empty both ways.
async fn same_as_psql(env: &Env, rel: &str, table: &str, create: &str) -> u64 {
    same_as_psql_with(env, rel, table, create, "").await
}

/// [`same_as_psql`] with more `\copy` options (`, DELIMITER ';'`).
async fn same_as_psql_with(
    env: &Env,
    rel: &str,
    table: &str,
    create: &str,
    copy_options: &str,
) -> u64 {
    env.exec(&create.replace("{t}", table)).await;
    env.exec(&create.replace("{t}", &format!("{table}_psql")))
        .await;
    let src = data(rel);
    crate::support::bin::psql_copy(&env.db.url(), &format!("{table}_psql"), &src, copy_options);
    let name = src.file_name().unwrap().to_str().unwrap();
    let o = env.import(name, &std::fs::read(&src).unwrap()).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{rel}: {:?}", o.error);
    let psql = env.count(&format!("{table}_psql")).await;
    assert_eq!(env.count(table).await, psql, "{rel}: row counts");
    for (a, b) in [
        (table.to_string(), format!("{table}_psql")),
        (format!("{table}_psql"), table.to_string()),
    ] {
        let extra = env
            .count(&format!(
                "(SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) x"
            ))
            .await;
        assert_eq!(extra, 0, "{rel}: rows in {a} and not in {b}");
    }
    psql as u64
}

#[tokio::test]
async fn public_data_sets_load_as_psql_copy_loads_them() {
    let env = Env::new(json!({"mode": "append"})).await;
    // `Jan 1 2000`: a date only the server reads (the example).
    let n = same_as_psql(
        &env,
        "vega_datasets/stocks.csv",
        "stocks",
        "CREATE TABLE {t} (symbol text, date date, price numeric)",
    )
    .await;
    assert_eq!(n, 560);
    let note = env
        .rows("SELECT error FROM cpi_import_jobs WHERE file_name = 'stocks.csv'")
        .await;
    assert!(
        note[0].contains(
            "stocks.csv:2: column \"date\": \"Jan 1 2000\" is not a form cpi reads itself"
        ),
        "the decision is in the job: {note:?}"
    );
    // `2012/01/01` dates and decimals: cpi's own fast path.
    let n = same_as_psql(
        &env,
        "vega_datasets/seattle-weather.csv",
        "seattle_weather",
        "CREATE TABLE {t} (date date, precipitation numeric, temp_max numeric,
            temp_min numeric, wind real, weather text)",
    )
    .await;
    assert_eq!(n, 1461);
    let note = env
        .rows("SELECT coalesce(error, '') FROM cpi_import_jobs WHERE file_name = 'seattle-weather.csv'")
        .await;
    assert_eq!(note, vec![String::new()], "binary COPY throughout");
    // Empty ages, quoted addresses, double precision coordinates.
    same_as_psql(
        &env,
        "vega_datasets/la-riots.csv",
        "la_riots",
        "CREATE TABLE {t} (first_name text, last_name text, age int, gender text,
            race text, death_date date, address text, neighborhood text, type text,
            longitude double precision, latitude double precision)",
    )
    .await;
    same_as_psql(
        &env,
        "vega_datasets/iowa-electricity.csv",
        "iowa_electricity",
        "CREATE TABLE {t} (year date, source text, net_generation integer)",
    )
    .await;
}

#[tokio::test]
async fn server_refusal_names_file_line_column_and_value() {
    // Staged (upsert): the text COPY goes to the staging table.
    let env = Env::new(json!({"table": "t", "primary_key": "id"})).await;
    env.exec("CREATE TABLE t (id int PRIMARY KEY, day date)")
        .await;
    let o = env
        .import("t.csv", b"id,day\n1,Jan 1 2000\n2,\"multi\nline\"\n")
        .await;
    assert_failed_with(
        &o,
        "t.csv:3: column \"day\": invalid input syntax for type date: \"multi\nline\"",
    );
    assert_eq!(env.count("t").await, 0);
    let o = env
        .import(
            "t2.csv",
            b"id,day\n1,2000-01-01\n2,Feb 3 2001\n3,20010304\n",
        )
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(counts(&o), (3, 3, 0, 0, 0));
    assert_eq!(
        env.rows("SELECT string_agg(day::text, ' ' ORDER BY id) FROM t")
            .await,
        vec!["2000-01-01 2001-02-03 2001-03-04"]
    );
}

#[tokio::test]
async fn date_order_sets_how_the_server_reads_dates() {
    for (order, want) in [("MDY", "2024-01-02"), ("DMY", "2024-02-01")] {
        let env = Env::new(json!({"mode": "append", "date_order": order})).await;
        env.exec("CREATE TABLE t (day date, at timestamp)").await;
        let o = env
            .import("t.csv", b"day,at\n01/02/2024,01/02/2024 10:00\n")
            .await;
        assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
        assert_eq!(
            env.rows("SELECT day::text || ' ' || at::text FROM t").await,
            vec![format!("{want} {want} 10:00:00")],
            "{order}"
        );
    }
}

#[tokio::test]
async fn value_options_read_spreadsheet_spellings() {
    let env = Env::new(json!({
        "table": "t",
        "mode": "append",
        "delimiter": ";",
        "decimal_separator": ",",
        "thousands_separator": ".",
        "true_values": ["Ja"],
        "false_values": ["Nein"],
        "date_format": {"booked": "%d.%m.%Y"},
        "timestamp_format": "%d.%m.%Y %H:%M",
    }))
    .await;
    env.exec("CREATE TABLE t (amount numeric(12,2), n int, paid boolean, booked date, due date, at timestamp)")
        .await;
    let o = env
        .import(
            "t.csv",
            "amount;n;paid;booked;due;at\n1.234,56;1.000;Ja;31.12.2024;2024-12-31;01.02.2024 10:30\n-0,5;7;nein;01.01.2025;;\n"
                .as_bytes(),
        )
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT concat_ws('|', amount, n, paid, booked, due, at) FROM t ORDER BY n DESC")
            .await,
        vec![
            "1234.56|1000|t|2024-12-31|2024-12-31|2024-02-01 10:30:00",
            "-0.50|7|f|2025-01-01"
        ]
    );
    // An explicit format is the operator's word: no server fallback.
    let o = env
        .import("u.csv", b"amount;n;paid;booked\n1;1;t;2024-12-31\n")
        .await;
    assert_failed_with(
        &o,
        "u.csv:2: column \"booked\": \"2024-12-31\" does not match the format \"%d.%m.%Y\"",
    );
}

#[tokio::test]
async fn skip_rows_skips_rows_the_server_refuses() {
    let env = Env::new(json!({"table": "t", "mode": "append", "on_error": "skip_rows"})).await;
    env.exec("CREATE TABLE t (id int, day date CHECK (day > '1990-01-01'))")
        .await;
    let o = env
        .import(
            "a.csv",
            b"id,day\n1,Jan 1 2000\n2,Febtember 3\n3,2000-01-03\n4,Jan 1 1980\n",
        )
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(counts(&o), (4, 2, 0, 0, 2));
    let lines: Vec<(u64, Option<String>)> = o
        .errors
        .iter()
        .map(|e| (e.line, e.column.clone()))
        .collect();
    assert_eq!(
        lines,
        vec![(3, Some("day".into())), (5, None)],
        "{:?}",
        o.errors
    );
    assert_eq!(
        o.errors[0].message,
        "a.csv:3: column \"day\": invalid input syntax for type date: \"Febtember 3\""
    );
    assert!(
        o.errors[1]
            .message
            .starts_with("a.csv:5: new row for relation \"t\" violates check constraint"),
        "{:?}",
        o.errors[1]
    );
    assert_eq!(
        env.rows("SELECT string_agg(id::text, ',' ORDER BY id) FROM t")
            .await,
        vec!["1,3"]
    );
}

/// `column type, …` of a table, in column order.
async fn types(env: &Env, table: &str) -> String {
    env.rows(&format!(
        "SELECT string_agg(column_name || ' ' || data_type || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END, ', ' ORDER BY ordinal_position)
         FROM information_schema.columns WHERE table_name = '{table}'"
    ))
    .await
    .remove(0)
}

#[tokio::test]
async fn create_table_infer_types_real_files_and_the_feed_goes_on() {
    let env = Env::new(json!({"mode": "append", "create_table": "infer"})).await;
    // The first half of the stocks feed creates the table …
    let text = std::fs::read_to_string(data("vega_datasets/stocks.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first = format!("{}\n{}\n", lines[0], lines[1..281].join("\n"));
    let second = format!("{}\n{}\n", lines[0], lines[281..].join("\n"));
    let o = env.import("stocks.csv", first.as_bytes()).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(
        types(&env, "stocks").await,
        "symbol text, date date, price numeric"
    );
    assert!(
        o.error
            .as_deref()
            .unwrap_or("")
            .contains("created CREATE TABLE \"stocks\""),
        "the decision is in the job: {:?}",
        o.error
    );
    // … and the second half of the same feed imports into it cleanly.
    let env2_file = env.file("stocks_2.csv", second.as_bytes());
    sqlx::query(
        "UPDATE cpi_projects SET config = jsonb_set(config, '{defaults,table}', '\"stocks\"')",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    let o = env.run(&env2_file).await.unwrap();
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(env.count("stocks").await, 560);
    assert_eq!(
        env.rows("SELECT max(date)::text FROM stocks").await,
        vec!["2010-03-01"]
    );
    sqlx::query("UPDATE cpi_projects SET config = config #- '{defaults,table}'")
        .execute(&env.pool)
        .await
        .unwrap();
    for (rel, table, want) in [
        (
            "vega_datasets/seattle-weather.csv",
            "seattle_weather",
            "date date, precipitation numeric, temp_max numeric, temp_min numeric, wind numeric, weather text",
        ),
        (
            "vega_datasets/la-riots.csv",
            "la_riots",
            "first_name text, last_name text, age smallint, gender text, race text, death_date date, address text, neighborhood text, type text, longitude numeric, latitude numeric",
        ),
        (
            "vega_datasets/iowa-electricity.csv",
            "iowa_electricity",
            "year date, source text, net_generation integer",
        ),
    ] {
        let name = rel.rsplit('/').next().unwrap();
        let o = env.import(name, &std::fs::read(data(rel)).unwrap()).await;
        assert_eq!(o.status, JobStatus::Succeeded, "{rel}: {:?}", o.error);
        assert_eq!(types(&env, table).await, want, "{rel}");
    }
}

#[tokio::test]
async fn infer_widens_falls_back_and_keys_are_not_null() {
    let env = Env::new(json!({"table": "t", "primary_key": "id", "create_table": "infer"})).await;
    let o = env
        .import(
            "t.csv",
            b"id,n,at,flag\n1,5,2024-01-01 10:00:00,yes\n2,5.5,2024-01-01 10:00:00+02,no\n70000,,soon,t\n",
        )
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(
        types(&env, "t").await,
        "id integer not null, n numeric, at text, flag boolean"
    );
    let note = o.error.unwrap();
    assert!(
        note.contains("column \"at\": \"soon\" on line 4 is not timestamptz: falls back to text"),
        "{note}"
    );
    assert!(
        note.contains("column \"n\": \"5.5\" on line 3 is not smallint: widens to numeric"),
        "{note}"
    );
}

#[test]
fn cpi_infer_prints_the_create_table() {
    let run = crate::support::cpi(&["infer", data("vega_datasets/stocks.csv").to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        run.stdout.trim_start_matches(|c| c != '\n').trim(),
        "CREATE TABLE \"stocks\" (\n  \"symbol\" text,\n  \"date\" date,\n  \"price\" numeric\n);"
    );
}

#[tokio::test]
async fn tsv_and_txt_files_by_pattern() {
    let env = Env::with_config(|inbox| {
        json!({"name": "p", "inbox": inbox, "tables": [
            {"file_pattern": "*.tsv", "table": "t", "mode": "append", "delimiter": "\t"},
            {"file_pattern": "*.txt", "table": "t", "mode": "append", "delimiter": "|"},
        ]})
    })
    .await;
    env.exec("CREATE TABLE t (id int, name text)").await;
    let o = env.import("a.tsv", b"id\tname\n1\tSmith, Jo\n").await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    let o = env.import("b.txt", b"id|name\n2|x\ty\n").await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT string_agg(name, '/' ORDER BY id) FROM t")
            .await,
        vec!["Smith, Jo/x\ty"]
    );
}

#[tokio::test]
async fn encoding_and_delimiter_auto_decide_per_file_and_say_so() {
    let env =
        Env::new(json!({"table": "t", "mode": "append", "encoding": "auto", "delimiter": "auto"}))
            .await;
    env.exec("CREATE TABLE t (id int, name text)").await;
    // A spreadsheet export: windows-1252, semicolons.
    let o = env.import("a.csv", b"id;name\n1;Jos\xE9 \x80\n").await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(
        o.error.as_deref(),
        Some("a.csv: encoding: auto → windows-1252 (the file is not valid UTF-8); a.csv: delimiter: auto → \";\"")
    );
    // UTF-8 with a BOM, tabs.
    let o = env
        .import("b.csv", "\u{feff}id\tname\n2\tJosé €\n".as_bytes())
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert!(o.error.unwrap().contains("utf-8 (byte order mark)"));
    assert_eq!(
        env.rows("SELECT string_agg(name, '|' ORDER BY id) FROM t")
            .await,
        vec!["José €|José €"]
    );
    let job = env
        .rows("SELECT error FROM cpi_import_jobs WHERE file_name = 'b.csv'")
        .await;
    assert!(job[0].contains("delimiter: auto → \"\\\\t\""), "{job:?}");
}

/// `format_type` of each column of `t`, in table order.
async fn column_types(env: &Env, table: &str) -> Vec<String> {
    env.rows(&format!(
        "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
          WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    ))
    .await
}

#[tokio::test]
async fn extra_columns_add_adds_typed_columns_in_the_import_transaction() {
    let env =
        Env::new(json!({"table": "sales", "primary_key": "id", "extra_columns": "add"})).await;
    env.exec("CREATE TABLE sales (id int PRIMARY KEY, amount numeric)")
        .await;
    let o = env.import("sales_01.csv", b"id,amount\n1,10\n2,20\n").await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    // Next month's file has three new columns (and `Amount` in another case).
    let o = env
        .import(
            "sales_02.csv",
            b"id,Amount,qty,sold on,region\n2,21.5,7,2024-02-01,north\n3,5,70000,2024-02-03,\"south, east\"\n4,1,,,\n",
        )
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(counts(&o), (3, 2, 1, 0, 0));
    assert_eq!(
        column_types(&env, "sales").await,
        vec![
            "id integer",
            "amount numeric",
            "qty integer",
            "sold on date",
            "region text"
        ]
    );
    assert_eq!(
        env.rows(
            "SELECT concat_ws('|', id, amount, qty, \"sold on\", region) FROM sales ORDER BY id"
        )
        .await,
        vec![
            "1|10",
            "2|21.5|7|2024-02-01|north",
            "3|5|70000|2024-02-03|south, east",
            "4|1"
        ]
    );
    // The decision is in the job row (`cpi jobs show`, the API's job).
    let note = env
        .rows("SELECT error FROM cpi_import_jobs WHERE file_name = 'sales_02.csv'")
        .await;
    assert_eq!(
        note,
        vec!["sales_02.csv: column \"qty\": \"70000\" on line 3 is not smallint: widens to integer; \
              sales_02.csv: extra_columns: add → added to sales: \"qty\" integer, \"sold on\" date, \"region\" text"]
    );
    // A bad row later in the file rolls the new column back with the rows.
    let o = env
        .import("sales_03.csv", b"id,amount,discount\n5,1,0.5\n6,oops,0.1\n")
        .await;
    assert_failed_with(
        &o,
        "sales_03.csv:3: column \"amount\": \"oops\" is not a valid numeric",
    );
    assert_eq!(
        column_types(&env, "sales").await.len(),
        5,
        "no discount column"
    );
    assert_eq!(env.count("sales").await, 4);
    // A file without the new columns: they are the missing ones now.
    let o = env.import("sales_04.csv", b"id,amount\n9,1\n").await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(
        o.error.as_deref(),
        Some("sales_04.csv: missing_columns: ignore → not in the file: \"qty\", \"sold on\", \"region\" \
              (new rows get NULL or the column's default, updated rows keep their value)")
    );
}

#[tokio::test]
async fn extra_and_missing_column_decisions_are_in_the_job() {
    let env = Env::new(json!({"table": "t", "mode": "append", "extra_columns": "ignore"})).await;
    env.exec("CREATE TABLE t (a int, b text, c date)").await;
    let o = env.import("t.csv", b"a,x,b,y\n1,2,z,3\n").await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(
        env.rows("SELECT error FROM cpi_import_jobs").await,
        vec!["t.csv: extra_columns: ignore → not loaded: \"x\", \"y\"; \
              t.csv: missing_columns: ignore → not in the file: \"c\" (NULL or the column's default)"]
    );
    // Refusals are the import's error.
    env.set_project(
        json!({"name": "p", "inbox": env.inbox(), "defaults": {"table": "t", "mode": "append", "missing_columns": "error"}}),
        Some(&env.db.url()),
    )
    .await;
    let o = env.import("u.csv", b"a,x\n1,2\n").await;
    assert_failed_with(
        &o,
        "u.csv: column \"x\" of the file is not a column of table t (extra_columns: error); \
              column \"b\" of table t is not in the file (missing_columns: error); \
              column \"c\" of table t is not in the file (missing_columns: error)",
    );
}

#[tokio::test]
async fn merge_errors_name_the_file_line_in_every_merging_mode() {
    let env = Env::new(json!({"table": "t", "primary_key": "id"})).await;
    env.exec(
        "CREATE TABLE c (id int PRIMARY KEY);
         INSERT INTO c VALUES (1), (2);
         CREATE TABLE t (id int PRIMARY KEY, amount numeric CHECK (amount > 0),
                         cust int REFERENCES c (id), region text NOT NULL DEFAULT 'x');
         ALTER TABLE t ALTER COLUMN region DROP DEFAULT;
         INSERT INTO t VALUES (1, 1, 1, 'north'), (2, 2, 2, 'south');",
    )
    .await;
    let before = env
        .rows("SELECT string_agg(concat_ws('|', id, amount, cust, region), ' ' ORDER BY id) FROM t")
        .await;
    for (mode, csv, want) in [
        // A check constraint, after a field over two lines.
        (
            "upsert",
            "id,amount,cust,region\n1,3,1,\"multi\nline\"\n2,-1,2,s\n",
            "t.csv:4: new row for relation \"t\" violates check constraint \"t_amount_check\"",
        ),
        // A foreign key (the table was emptied first: every row is inserted).
        (
            "replace",
            "id,amount,cust,region\n1,3,1,n\n2,4,2,s\n3,5,9,e\n4,6,1,w\n",
            "t.csv:4: insert or update on table \"t\" violates foreign key constraint \"t_cust_fkey\"",
        ),
        // A foreign key in an update.
        (
            "sync",
            "id,amount,cust,region\n1,3,1,n\n3,5,2,e\n2,4,9,s\n",
            "t.csv:4: insert or update on table \"t\" violates foreign key constraint \"t_cust_fkey\"",
        ),
        // NOT NULL on a column the file lacks: the server checks the row
        // it would insert before it finds the key's row, so the first row
        // is to blame even for a key the table has.
        (
            "sync",
            "id,amount\n1,3\n3,5\n2,4\n",
            "t.csv:2: column \"region\": null value in column \"region\" of relation \"t\" violates not-null constraint",
        ),
    ] {
        env.set_project(
            json!({"name": "p", "inbox": env.inbox(), "defaults": {"table": "t", "primary_key": "id", "mode": mode}}),
            Some(&env.db.url()),
        )
        .await;
        let o = env.import("t.csv", csv.as_bytes()).await;
        assert_eq!(o.status, JobStatus::Failed, "{mode}");
        let error = o.error.clone().unwrap_or_default();
        assert!(error.starts_with(want), "{mode}: {error}");
        let line: u64 = want[6..7].parse().unwrap();
        let details = env
            .rows("SELECT error_details::text FROM cpi_import_jobs ORDER BY created_at DESC LIMIT 1")
            .await;
        assert!(
            details[0].contains(&format!("\"line\": {line}")),
            "{mode}: {details:?}"
        );
        assert_eq!(
            env.rows("SELECT string_agg(concat_ws('|', id, amount, cust, region), ' ' ORDER BY id) FROM t")
                .await,
            before,
            "{mode}: nothing changed"
        );
        std::fs::remove_file(env.inbox().join("t.csv")).unwrap();
    }
}

/// A second origin and dialect: Rmetrics' Microsoft prices, `;`-separated
/// as R's `data()` wants a `.csv` (Debian's r-cran-timeseries).
#[tokio::test]
async fn semicolon_separated_rmetrics_file_loads_as_psql_copy_and_infers() {
    let env = Env::new(json!({"mode": "append", "delimiter": "auto"})).await;
    let n = same_as_psql_with(
        &env,
        "rmetrics_timeseries/msft.csv",
        "msft",
        "CREATE TABLE {t} (\"%Y-%m-%d\" date, \"Open\" numeric, \"High\" numeric,
            \"Low\" numeric, \"Close\" numeric, \"Volume\" bigint)",
        ", DELIMITER ';'",
    )
    .await;
    assert_eq!(n, 249);
    assert_eq!(
        env.rows("SELECT error FROM cpi_import_jobs WHERE file_name = 'msft.csv'")
            .await,
        vec!["msft.csv: delimiter: auto → \";\""]
    );
    // create_table: infer on the first half of the feed, then the second
    // half into the inferred table.
    let env = Env::new(
        json!({"table": "msft", "mode": "append", "delimiter": ";", "create_table": "infer"}),
    )
    .await;
    let text = std::fs::read_to_string(data("rmetrics_timeseries/msft.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first = format!("{}\n{}\n", lines[0], lines[1..125].join("\n"));
    let second = format!("{}\n{}\n", lines[0], lines[125..].join("\n"));
    let o = env.import("msft_1.csv", first.as_bytes()).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(
        types(&env, "msft").await,
        "%Y-%m-%d date, Open numeric, High numeric, Low numeric, Close numeric, Volume integer"
    );
    let o = env.import("msft_2.csv", second.as_bytes()).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(env.count("msft").await, 249);
    assert_eq!(
        env.rows("SELECT concat_ws(' ', min(\"%Y-%m-%d\"), max(\"%Y-%m-%d\"), max(\"Volume\")) FROM msft")
            .await,
        vec!["2000-09-27 2001-09-27 128496600"]
    );
}
