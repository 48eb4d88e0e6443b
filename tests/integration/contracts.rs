//! Data contracts (issue #24): checks on the file's rows in the import's
//! transaction. A file past an `error` threshold leaves the target exactly
//! as it was and is reported check by check with its lines; a `warn`
//! loads and the job carries it; both are events of the job's statement.

use cpi::import::checks::CheckResult;
use cpi::import::JobOutcome;
use cpi::store::events::{self, EventFilter};
use cpi::store::jobs::JobStatus;
use serde_json::{json, Value};

use crate::support::import::Env;

/// Table `t` (key `id`) with two rows, a table `customers`, and project
/// `p` loading `*.csv` into `t` in `mode` with these checks.
pub(crate) async fn env(mode: &str, checks: Value) -> Env {
    let key = if mode == "append" {
        json!(null)
    } else {
        json!("id")
    };
    let env =
        Env::new(json!({"table": "t", "mode": mode, "primary_key": key, "checks": checks})).await;
    env.exec(
        "CREATE TABLE customers (id int PRIMARY KEY);
         INSERT INTO customers VALUES (1), (2);
         CREATE TABLE t (id int PRIMARY KEY, status text, amount numeric, email text, cust int);
         INSERT INTO t VALUES (1, 'new', 10, 'a@x.org', 1), (2, 'paid', 20, 'b@x.org', 2);
         CREATE TABLE t_before AS SELECT * FROM t;",
    )
    .await;
    env
}

/// Rows of `t` not in its copy from before, and the other way round.
pub(crate) async fn assert_unchanged(env: &Env) {
    for q in [
        "SELECT count(*) FROM (SELECT * FROM t EXCEPT SELECT * FROM t_before) d",
        "SELECT count(*) FROM (SELECT * FROM t_before EXCEPT SELECT * FROM t) d",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(q))
            .fetch_one(&env.pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{q}");
    }
}

fn results(o: &JobOutcome) -> &[CheckResult] {
    &o.checks
}

async fn event_kinds(env: &Env) -> Vec<(String, Value)> {
    let f = EventFilter {
        limit: 100,
        ..Default::default()
    };
    let mut all: Vec<_> = events::list(&env.pool, &f)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind.starts_with("check."))
        .map(|e| (e.kind, e.payload))
        .collect();
    all.reverse();
    all
}

pub(crate) const HEADER: &str = "id,status,amount,email,cust\n";

pub(crate) fn file(rows: &[&str]) -> Vec<u8> {
    let mut s = HEADER.to_string();
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s.into_bytes()
}

/// A file breaking `check` (the rows at `bad_lines` fail it) is refused:
/// target unchanged, the job's error names the check, the count and lines.
async fn refused(mode: &str, check: Value, rows: &[&str], failing: u64, bad_lines: &[u64]) {
    let env = env(mode, json!([check])).await;
    let o = env.import("f.csv", &file(rows)).await;
    assert_eq!(o.status, JobStatus::Failed, "{:?}", o.error);
    assert_unchanged(&env).await;
    let r = &results(&o)[0];
    let error = o.error.as_deref().unwrap();
    assert!(
        error.starts_with(&format!("f.csv: failed check(s) {}: ", r.check)),
        "{error}"
    );
    assert!(error.contains(&format!("{failing} of ")), "{error}");
    assert_eq!(r.failing, failing, "{r:?}");
    let lines: Vec<u64> = r.samples.iter().filter_map(|s| s.line).collect();
    assert_eq!(lines, bad_lines, "{r:?}");
    let kinds = event_kinds(&env).await;
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    assert_eq!(kinds[0].0, "check.failed");
    assert_eq!(kinds[0].1["check"], json!(r.check));
    assert_eq!(kinds[0].1["failing"], json!(failing));
}

#[tokio::test]
async fn check_not_null_refuses_a_file_with_nulls() {
    refused(
        "upsert",
        json!({"check": "not_null", "columns": ["status", "amount"]}),
        &["3,new,1,c@x.org,1", "4,,1,d@x.org,1", "5,new,,e@x.org,1"],
        2,
        &[3, 4],
    )
    .await;
}

#[tokio::test]
async fn check_unique_refuses_duplicate_keys_in_the_file() {
    refused(
        "append",
        json!({"check": "unique", "columns": "email"}),
        &[
            "3,new,1,c@x.org,1",
            "4,new,1,c@x.org,1",
            "5,new,1,e@x.org,1",
        ],
        2,
        &[2, 3],
    )
    .await;
}

#[tokio::test]
async fn check_unique_scope_table_refuses_keys_the_table_has() {
    refused(
        "append",
        json!({"check": "unique", "columns": "email", "scope": "table"}),
        &["3,new,1,a@x.org,1", "4,new,1,d@x.org,1"],
        1,
        &[2],
    )
    .await;
}

#[tokio::test]
async fn check_accepted_values_refuses_an_unknown_status() {
    refused(
        "upsert",
        json!({"check": "accepted_values", "column": "status", "values": ["new", "paid"]}),
        &["1,paid,1,a@x.org,1", "3,lost,1,c@x.org,1", "4,,1,d@x.org,1"],
        1,
        &[3],
    )
    .await;
}

#[tokio::test]
async fn check_range_refuses_a_negative_amount() {
    refused(
        "upsert",
        json!({"check": "range", "column": "amount", "min": 0, "max": 100}),
        &[
            "3,new,-1,c@x.org,1",
            "4,new,100,d@x.org,1",
            "5,new,100.5,e@x.org,1",
        ],
        2,
        &[2, 4],
    )
    .await;
}

#[tokio::test]
async fn check_matches_refuses_a_bad_email() {
    refused(
        "upsert",
        json!({"check": "matches", "column": "email", "pattern": "^[^@]+@[^@]+$"}),
        &["3,new,1,nope,1", "4,new,1,d@x.org,1"],
        1,
        &[2],
    )
    .await;
}

#[tokio::test]
async fn check_max_length_refuses_a_long_value() {
    refused(
        "upsert",
        json!({"check": "max_length", "column": "email", "max": 7}),
        &["3,new,1,c@x.org,1", "4,new,1,long@x.org,1"],
        1,
        &[3],
    )
    .await;
}

#[tokio::test]
async fn check_relationship_refuses_an_unknown_customer() {
    refused(
        "upsert",
        json!({"check": "relationship", "column": "cust", "to": "customers.id"}),
        &["3,new,1,c@x.org,9", "4,new,1,d@x.org,", "5,new,1,e@x.org,2"],
        1,
        &[2],
    )
    .await;
}

#[tokio::test]
async fn check_expression_refuses_rows_where_it_is_false() {
    refused(
        "replace",
        json!({"check": "expression", "name": "positive", "sql": "amount >= 0 OR status = 'refund'"}),
        &["3,refund,-1,c@x.org,1", "4,new,-2,d@x.org,1", "5,new,3,e@x.org,1"],
        1,
        &[3],
    )
    .await;
}

#[tokio::test]
async fn check_row_count_refuses_an_empty_export() {
    let env = env("upsert", json!([{"check": "row_count", "min": 1}])).await;
    let o = env.import("f.csv", HEADER.as_bytes()).await;
    assert_eq!(o.status, JobStatus::Failed);
    assert_eq!(
        o.error.as_deref(),
        Some("f.csv: failed check(s) row_count: check row_count: 0 row(s), expected at least 1")
    );
    assert_unchanged(&env).await;
}

#[tokio::test]
async fn check_of_severity_warn_loads_and_the_job_carries_it() {
    let env = env(
        "upsert",
        json!([{"check": "accepted_values", "column": "status", "values": ["new"], "severity": "warn"}]),
    )
    .await;
    let o = env
        .import("f.csv", &file(&["3,new,1,c@x.org,1", "4,odd,1,d@x.org,1"]))
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(env.count("t").await, 4);
    let note = o.error.as_deref().unwrap();
    assert!(
        note.contains("warning: f.csv: check accepted_values(status): 1 of 2 row(s) fail (line 3)"),
        "{note}"
    );
    let details: Value =
        sqlx::query_scalar("SELECT error_details FROM cpi_import_jobs WHERE id = $1")
            .bind(o.job_id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(details["checks"][0]["outcome"], json!("warn"), "{details}");
    assert_eq!(
        details["checks"][0]["samples"][0]["line"],
        json!(3),
        "{details}"
    );
    let kinds = event_kinds(&env).await;
    assert_eq!(kinds.len(), 1);
    assert_eq!(kinds[0].0, "check.warned");
}

#[tokio::test]
async fn check_thresholds_as_a_count_and_as_a_fraction() {
    // error_if "> 1": one bad row warns, two refuse.
    let by_count = json!([{"check": "not_null", "columns": "status", "error_if": "> 1"}]);
    let env1 = env("upsert", by_count).await;
    let one = env1
        .import("a.csv", &file(&["3,,1,c@x.org,1", "4,new,1,d@x.org,1"]))
        .await;
    assert_eq!(one.status, JobStatus::Succeeded, "{:?}", one.error);
    assert_eq!(one.checks[0].outcome, cpi::config::checks::Outcome::Warn);
    let two = env1
        .import("b.csv", &file(&["5,,1,c@x.org,1", "6,,1,d@x.org,1"]))
        .await;
    assert_eq!(two.status, JobStatus::Failed);

    // error_if "> 50%": one bad row of four warns, three refuse;
    // warn_if "> 30%" keeps the one of four quiet.
    let by_share = json!([{"check": "not_null", "columns": "status", "error_if": "> 50%", "warn_if": "> 30%"}]);
    let env2 = env("upsert", by_share).await;
    let rows = [
        "3,,1,c@x.org,1",
        "4,new,1,d@x.org,1",
        "5,new,1,e@x.org,1",
        "6,new,1,f@x.org,1",
    ];
    let quiet = env2.import("a.csv", &file(&rows)).await;
    assert_eq!(quiet.status, JobStatus::Succeeded);
    assert_eq!(quiet.checks[0].outcome, cpi::config::checks::Outcome::Pass);
    assert!(event_kinds(&env2).await.is_empty());
    env2.exec("TRUNCATE t_before; INSERT INTO t_before SELECT * FROM t")
        .await;
    let rows = [
        "7,,1,c@x.org,1",
        "8,,1,d@x.org,1",
        "9,,1,e@x.org,1",
        "10,new,1,f@x.org,1",
    ];
    let bad = env2.import("b.csv", &file(&rows)).await;
    assert_eq!(bad.status, JobStatus::Failed);
    assert_eq!(bad.checks[0].failing, 3);
    assert_unchanged(&env2).await;
}

#[tokio::test]
async fn check_expression_that_names_a_missing_column_fails_by_name() {
    let env = env(
        "upsert",
        json!([{"check": "expression", "name": "weird", "sql": "nosuch > 0"}]),
    )
    .await;
    let o = env.import("f.csv", &file(&["3,new,1,c@x.org,1"])).await;
    assert_eq!(o.status, JobStatus::Failed);
    let e = o.error.unwrap();
    assert!(e.starts_with("f.csv: check weird cannot run: "), "{e}");
    assert_unchanged(&env).await;
}

#[tokio::test]
async fn check_staged_append_keeps_every_row() {
    let env = env("append", json!([{"check": "not_null", "columns": "id"}])).await;
    env.exec("ALTER TABLE t DROP CONSTRAINT t_pkey").await;
    let o = env
        .import("f.csv", &file(&["3,new,1,c@x.org,1", "3,new,1,c@x.org,1"]))
        .await;
    assert_eq!(o.status, JobStatus::Succeeded, "{:?}", o.error);
    assert_eq!(o.counts.rows_inserted, 2);
    assert_eq!(env.count("t").await, 4);
}

/// The plan of a check's statement over a staged file of 100 rows against
/// a table of 1,000,000: `relationship` and `unique` with `scope: table`
/// look each staged row up by index, never scan the big table.
#[tokio::test]
async fn check_relationship_and_table_scope_run_on_indexes() {
    let env = Env::new(json!({})).await;
    env.exec(
        "CREATE TABLE big (id int PRIMARY KEY, email text UNIQUE);
         INSERT INTO big SELECT g, 'e' || g FROM generate_series(1, 1000000) g;
         ANALYZE big;
         CREATE TABLE st (id int, email text, __cpi_row int8);
         INSERT INTO st SELECT g, 'e' || g, g FROM generate_series(1, 100) g;
         ANALYZE st;",
    )
    .await;
    for check in [
        json!({"check": "relationship", "column": "id", "to": "big.id"}),
        json!({"check": "unique", "columns": "email", "scope": "table"}),
    ] {
        let c = serde_json::from_value::<cpi::config::checks::CheckSpec>(check)
            .unwrap()
            .parse("t")
            .unwrap();
        let q = cpi::import::checks::check_sql(&c, "st", "\"big\"").unwrap();
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {q}")))
            .fetch_all(&env.pool)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("Index"), "{}: {plan}", c.name);
        assert!(!plan.contains("Seq Scan on big"), "{}: {plan}", c.name);
    }
}

/// An expression runs read-only: a function that would write (here a
/// sequence's `nextval`) fails the check by name, and nothing is loaded.
#[tokio::test]
async fn check_expression_cannot_write() {
    let env = env(
        "upsert",
        json!([{"check": "expression", "name": "sneaky", "sql": "nextval('s') > 0"}]),
    )
    .await;
    env.exec("CREATE SEQUENCE s").await;
    let o = env.import("f.csv", &file(&["3,new,1,c@x.org,1"])).await;
    assert_eq!(o.status, JobStatus::Failed);
    let e = o.error.unwrap();
    assert!(e.starts_with("f.csv: check sneaky cannot run: "), "{e}");
    assert!(e.contains("read-only"), "{e}");
    assert_unchanged(&env).await;
    let called: bool = sqlx::query_scalar("SELECT is_called FROM s")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(!called);
}

/// An expression the target's server cannot plan over its table (a
/// misspelt column) refuses `cpi apply`: nothing applied, the run recorded,
/// the message naming project, key, check and the server's words. Fixed,
/// it applies.
#[tokio::test]
async fn apply_refuses_an_expression_the_target_cannot_plan() {
    use crate::support::bin::Cpi;
    use crate::support::manifests::{connection_to, project};
    let db = crate::support::TestDb::new().await;
    let pool = db.pool().await;
    sqlx::query("CREATE TABLE orders (id int, amount numeric)")
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    std::fs::write(m.join("c.yaml"), connection_to("c", &db, "target")).unwrap();
    std::fs::write(m.join("c.pass"), "unused").unwrap();
    let write_project = |sql: &str| {
        let defaults = format!(
            "{{table: orders, checks: [{{check: expression, name: positive, sql: \"{sql}\"}}]}}"
        );
        std::fs::write(m.join("p.yaml"), project("p", "c", m, &defaults)).unwrap();
    };
    write_project("amont >= 0");
    let r = Cpi::new(["apply"]).db(&db).manifests(m).run_async().await;
    r.assert_code(1).assert_stderr(
        "project p: defaults.checks[0] (positive): the server refuses the expression over orders: column \"amont\" does not exist",
    );
    let (projects, runs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM cpi_projects), (SELECT count(*) FROM cpi_reconcile_runs WHERE error LIKE '%amont%')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((projects, runs), (0, 1));
    write_project("amount >= 0");
    Cpi::new(["apply"])
        .db(&db)
        .manifests(m)
        .run_async()
        .await
        .assert_code(0);
}

/// The daemon's reconcile refuses the same expression through the same
/// check, and records the run once, as `refused` (a guard said no, nothing
/// failed). It was recorded as `failed`; a refusal of the apply itself (a
/// conflict) was recorded twice, `refused` by the apply and `failed` by
/// the daemon.
#[tokio::test]
async fn regression_the_daemon_records_a_refused_reconcile_once_as_refused() {
    use crate::support::daemon::Daemon;
    use crate::support::manifests::{connection_to, project};
    let db = crate::support::TestDb::new().await;
    let pool = db.pool().await;
    sqlx::query("CREATE TABLE orders (id int, amount numeric)")
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("c.yaml"), connection_to("c", &db, "target")).unwrap();
    std::fs::write(m.join("c.pass"), "unused").unwrap();
    let defaults =
        "{table: orders, checks: [{check: expression, name: positive, sql: \"amont >= 0\"}]}";
    std::fs::write(m.join("p.yaml"), project("p", "c", dir.path(), defaults)).unwrap();
    let d = Daemon::start(&db, &m, &dir.path().join("log"), &["--interval", "1s"]);
    crate::support::wait::wait_i64(
        &pool,
        30,
        "the refusal recorded",
        "SELECT count(*) FROM cpi_reconcile_runs WHERE error LIKE '%amont%'",
        1,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    // Several reconciles later, still one row, and it says refused.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let statuses = || async {
        let runs: Vec<String> =
            sqlx::query_scalar("SELECT status::text FROM cpi_reconcile_runs ORDER BY started_at")
                .fetch_all(&pool)
                .await
                .unwrap();
        runs
    };
    let runs = statuses().await;
    assert_eq!(runs, ["refused"], "{}", d.log());

    // A conflict (a project row of another owner): the apply records it;
    // the daemon adds no second row.
    std::fs::write(
        m.join("p.yaml"),
        project("p", "c", dir.path(), "{table: orders}"),
    )
    .unwrap();
    sqlx::query(
        "INSERT INTO cpi_projects (name, config, managed_by) VALUES ('p', '{}', 'someone-else')",
    )
    .execute(&pool)
    .await
    .unwrap();
    crate::support::wait::wait_i64(
        &pool,
        30,
        "the conflict recorded",
        "SELECT count(*) FROM cpi_reconcile_runs WHERE error LIKE '%conflict%'",
        1,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let runs = statuses().await;
    assert_eq!(runs, ["refused", "refused"], "{}", d.log());
    // Each recorded run is an audit row of the manifests' revision and a
    // reconcile.failed event for whoever is told, in the same statement.
    let (audited, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM cpi_audit WHERE actor = 'manifests@unknown' AND action LIKE 'reconcile (%' AND outcome = 'refused'),
                (SELECT count(*) FROM cpi_events WHERE kind = 'reconcile.failed' AND payload->>'status' = 'refused')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((audited, events), (2, 2));
}
