//! `cpi check` (issue #24): a dry run of a file. A good, a warning and a
//! failing file answer 0, 2 and 3, with a report of each check; afterwards
//! the target table, its ledger, the job history and the events are as they
//! were, and a table `infer` would create is still missing.

use serde_json::{json, Value};

use crate::contracts::{assert_unchanged, env, file};
use crate::support::bin::{Cpi, Run};
use crate::support::import::Env;
use crate::support::manifests::{connection_to, project};

const CHECKS: &str = r#"[
    {"check": "not_null", "columns": "status"},
    {"check": "range", "column": "amount", "min": 0, "severity": "warn"}
]"#;

async fn check(env: &Env, files: &[&std::path::Path]) -> Run {
    Cpi::new(["check", "-p", "p", "-o", "json"])
        .args(files)
        .db(&env.db)
        .run_async()
        .await
}

/// Nothing an import writes is there: no job, no event, no ledger row.
async fn assert_nothing_written(env: &Env) {
    assert_unchanged(env).await;
    for (q, what) in [
        ("SELECT count(*) FROM cpi_import_jobs", "jobs"),
        ("SELECT count(*) FROM cpi_events", "events"),
        (
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'cpi'",
            "cpi's own tables in the target",
        ),
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(q))
            .fetch_one(&env.pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{what}: {q}");
    }
}

fn reports(r: &Run) -> Vec<Value> {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()))
}

#[tokio::test]
async fn cpi_check_answers_0_2_3_and_writes_nothing() {
    let env = env("upsert", serde_json::from_str(CHECKS).unwrap()).await;
    let good = env.file(
        "good.csv",
        &file(&["2,paid,25,b@x.org,2", "3,new,5,c@x.org,1"]),
    );
    let warn = env.file("warn.csv", &file(&["3,new,-5,c@x.org,1"]));
    let bad = env.file("bad.csv", &file(&["3,new,5,c@x.org,1", "4,,5,d@x.org,1"]));

    let r = check(&env, &[&good]).await;
    r.assert_code(0);
    let g = &reports(&r)[0];
    assert_eq!(g["verdict"], "load", "{g}");
    assert_eq!(
        (g["rows_inserted"].as_u64(), g["rows_updated"].as_u64()),
        (Some(1), Some(1)),
        "{g}"
    );
    assert_eq!(g["checks"][0]["outcome"], "pass", "{g}");

    let r = check(&env, &[&warn]).await;
    r.assert_code(2);
    let w = &reports(&r)[0];
    assert_eq!(w["verdict"], "load_with_warnings", "{w}");
    assert_eq!(w["checks"][1]["outcome"], "warn", "{w}");
    assert_eq!(w["checks"][1]["samples"][0]["line"], 2, "{w}");

    let r = check(&env, &[&bad]).await;
    r.assert_code(3);
    let b = &reports(&r)[0];
    assert_eq!(b["verdict"], "fail", "{b}");
    assert_eq!(b["checks"][0]["outcome"], "error", "{b}");
    assert_eq!(b["checks"][0]["failing"], 1, "{b}");
    let message = b["message"].as_str().unwrap();
    assert!(
        message.contains("failed check(s) not_null(status)"),
        "{message}"
    );

    // Several files: the worst one's code, a report each; text for people.
    let r = Cpi::new(["check", "-p", "p"])
        .args([&good, &warn, &bad])
        .db(&env.db)
        .run_async()
        .await;
    r.assert_code(3)
        .assert_stdout("good.csv: would load into t (upsert): read 2, insert 1, update 1")
        .assert_stdout("warn.csv: would load with warnings")
        .assert_stdout("bad.csv: would fail")
        .assert_stdout("check not_null(status): error (1 of 2 row(s) fail)");

    assert_nothing_written(&env).await;
    // The files stay where they were.
    assert!(good.exists() && warn.exists() && bad.exists());
}

#[tokio::test]
async fn cpi_check_shows_the_create_table_of_a_missing_table_and_creates_nothing() {
    let env = Env::new(json!({"table": "fresh", "create_table": "infer"})).await;
    let f = env.file(
        "f.csv",
        b"id,amount,day\n1,2.5,2024-01-02\n2,3,2024-01-03\n",
    );
    let r = check(&env, &[&f]).await;
    r.assert_code(0);
    let rep = &reports(&r)[0];
    let create = rep["create_table"]
        .as_str()
        .unwrap_or_else(|| panic!("{rep}"));
    assert!(create.starts_with("CREATE TABLE \"fresh\""), "{create}");
    assert!(create.contains("\"day\" date"), "{create}");
    assert_eq!(rep["rows_inserted"], 2, "{rep}");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('fresh') IS NOT NULL")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(!exists, "the check created the table");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'cpi'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "the check left cpi's ledger in the target");
}

/// `--from-manifests`: a pull request's project, before it is applied, with
/// no management database: only the connection's secret file.
#[tokio::test]
async fn cpi_check_from_manifests_uses_the_folder_and_needs_no_management_database() {
    let env = env("upsert", json!([])).await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    std::fs::write(m.join("c.yaml"), connection_to("c", &env.db, "target")).unwrap();
    std::fs::write(m.join("c.pass"), "unused").unwrap();
    let defaults = r#"{table: t, mode: upsert, primary_key: id, checks: [{check: accepted_values, column: status, values: [new, paid]}]}"#;
    std::fs::write(m.join("p.yaml"), project("p", "c", env.inbox(), defaults)).unwrap();
    let f = env.file("f.csv", &file(&["3,lost,5,c@x.org,1"]));
    // A state dir with no embedded server: a management database would be
    // started there if the command wanted one.
    let state = tempfile::tempdir().unwrap();
    let r = Cpi::new(["check", "-p", "p", "--from-manifests"])
        .args([&f])
        .manifests(m)
        .state_dir(state.path())
        .run_async()
        .await;
    r.assert_code(3)
        .assert_stdout("f.csv: would fail")
        .assert_stdout("check accepted_values(status): error (1 of 1 row(s) fail)");
    assert!(
        std::fs::read_dir(state.path()).unwrap().next().is_none(),
        "a management database was started"
    );
    assert_nothing_written(&env).await;
}

/// `POST /projects/{name}/check`: the same dry run on the request's body,
/// token required, size-capped; nothing written.
#[tokio::test]
async fn post_check_answers_the_report_and_writes_nothing() {
    use crate::support::api::{Server, TOKEN};
    let s = Server::start().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE t (id int PRIMARY KEY, status text);
         INSERT INTO cpi_connections (name, database_url) VALUES ('c', '{}');
         INSERT INTO cpi_projects (name, connection_id, config)
           SELECT 'p', id, '{{\"inbox\": \"/nowhere\", \"defaults\": {{\"table\": \"t\", \"mode\": \"append\",
             \"checks\": [{{\"check\": \"not_null\", \"columns\": \"status\"}}]}}}}' FROM cpi_connections",
        s.db.url()
    )))
    .execute(&s.pool)
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>, token: Option<&str>| {
        let mut req = client.post(format!("{}{path}", s.base)).body(body);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req.send()
    };
    let r = post(
        "/projects/p/check?file=a.csv",
        b"id,status\n1,new\n2,\n".to_vec(),
        Some(TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let rep: Value = r.json().await.unwrap();
    assert_eq!(rep["verdict"], "fail", "{rep}");
    assert_eq!(rep["checks"][0]["samples"][0]["line"], 3, "{rep}");

    let r = post(
        "/projects/p/check?file=a.csv",
        b"id,status\n1,new\n".to_vec(),
        Some(TOKEN),
    )
    .await
    .unwrap();
    let rep: Value = r.json().await.unwrap();
    assert_eq!(
        (rep["verdict"].as_str(), rep["rows_inserted"].as_u64()),
        (Some("load"), Some(1)),
        "{rep}"
    );

    let r = post("/projects/p/check?file=a.csv", b"id\n1\n".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post(
        "/projects/nope/check?file=a.csv",
        b"id\n1\n".to_vec(),
        Some(TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let big = vec![b'1'; (64 << 20) + 1];
    let r = post("/projects/p/check?file=a.csv", big, Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM cpi_import_jobs)
              + (SELECT count(*) FROM cpi_events)",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(n, 0, "the checks wrote rows, jobs or events");
}
