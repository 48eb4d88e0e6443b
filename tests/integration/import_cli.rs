//! `cpi import` and `cpi jobs` as the real binary: output, exit codes,
//! secrets, and a SIGKILL in the middle of an import.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::bin::signal;
use crate::support::import::Env;
use crate::support::{fs, wait, Cpi, Run};

/// `cpi ARGS --database-url <the test database>`, off the runtime.
async fn cpi_on(env: &Env, args: &[&str]) -> Run {
    Cpi::new(args).db(&env.db).run_async().await
}

#[tokio::test]
async fn import_prints_a_line_per_file_and_exits_by_outcome() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    let good = env.file("good.csv", b"id,v\n1,a\n2,b\n");
    let bad = env.file("bad.csv", b"id,v\n3,c\nx,d\n");
    let (g, b) = (good.to_str().unwrap(), bad.to_str().unwrap());

    let r = cpi_on(&env, &["import", "--project", "p", g]).await;
    r.assert_code(0)
        .assert_stdout("good.csv: succeeded into t (append): read 2, inserted 2");
    assert!(
        !r.stderr.contains('\r') && !r.stderr.contains("rows"),
        "no progress bar when piped: {}",
        r.stderr
    );

    // A duplicate is fine; a failed file makes the exit code 1.
    let r = cpi_on(&env, &["import", "--project", "p", g, b]).await;
    r.assert_code(1)
        .assert_stdout("good.csv: duplicate")
        .assert_stdout("bad.csv: failed");
    assert!(
        r.stdout.contains("bad.csv:3: column \"v\"")
            || r.stdout
                .contains("bad.csv:3: column \"id\": \"x\" is not a valid integer"),
        "{}",
        r.stdout
    );
    assert_eq!(env.count("t").await, 2);

    let r = cpi_on(&env, &["import", "--project", "p", g, "--output", "json"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["status"], "duplicate");
}

#[tokio::test]
async fn import_argument_and_project_errors_exit_1() {
    let env = Env::new(json!({"table": "t"})).await;
    let f = env.file("a.csv", b"id\n1\n");
    let r = cpi_on(&env, &["import", "--project", "p", "/nonexistent/x.csv"]).await;
    r.assert_code(1)
        .assert_stderr("/nonexistent/x.csv is not a file");
    let r = cpi_on(&env, &["import", "--project", "nope", f.to_str().unwrap()]).await;
    r.assert_code(1)
        .assert_stderr("project \"nope\" does not exist");
    let r = cpi_on(&env, &["import", "--project", "p"]).await;
    assert_eq!(r.code, 1, "usage error: {}", r.all());
}

#[tokio::test]
async fn a_failing_target_never_prints_its_password() {
    let env = Env::new(json!({"table": "t"})).await;
    // Port 1: connection refused. And a real server with a bad database name.
    for url in [
        "postgres://importer:Sup3r%2FS3cret@127.0.0.1:1/abc",
        &format!(
            "postgres://postgres:Sup3r%2FS3cret@127.0.0.1:5432/{}_missing",
            env.db.name
        ),
    ] {
        env.set_project(json!({"name": "p"}), Some(url)).await;
        let f = env.file("a.csv", b"id\n1\n");
        let r = cpi_on(&env, &["import", "--project", "p", f.to_str().unwrap()]).await;
        assert_eq!(r.code, 1, "{}", r.all());
        assert!(
            r.stdout.contains("cannot reach the target database"),
            "{}",
            r.all()
        );
        assert!(!r.all().contains("Sup3r"), "{}", r.all());
        let show = cpi_on(&env, &["jobs", "list", "--output", "json"]).await;
        assert!(!show.all().contains("Sup3r"), "{}", show.all());
    }
}

#[tokio::test]
async fn jobs_list_show_and_retry() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int)").await;
    let f = env.file("a.csv", b"id\n1\nx\n");
    let r = cpi_on(&env, &["import", "--project", "p", f.to_str().unwrap()]).await;
    assert_eq!(r.code, 1);
    let list = cpi_on(
        &env,
        &["jobs", "list", "--status", "failed", "--output", "json"],
    )
    .await;
    assert_eq!(list.code, 0, "{}", list.all());
    let jobs: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    let id = jobs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        jobs[0]["error"],
        "a.csv:3: column \"id\": \"x\" is not a valid integer"
    );

    let text = cpi_on(&env, &["jobs", "list", "--project", "p"]).await;
    assert!(text.stdout.starts_with("ID"), "{}", text.stdout);
    assert!(
        text.stdout.contains(&id) && text.stdout.contains("failed"),
        "{}",
        text.stdout
    );
    let none = cpi_on(
        &env,
        &["jobs", "list", "--project", "other", "--output", "json"],
    )
    .await;
    assert_eq!(none.stdout.trim(), "[]");
    let bad = cpi_on(&env, &["jobs", "list", "--status", "weird"]).await;
    assert_eq!(bad.code, 1);

    let show = cpi_on(&env, &["jobs", "show", &id]).await;
    show.assert_code(0).assert_stdout("line: 3");

    // Fix the file where it is, then retry the same job.
    std::fs::write(&f, b"id\n1\n2\n").unwrap();
    let retry = cpi_on(&env, &["jobs", "retry", &id]).await;
    retry.assert_code(0).assert_stdout("succeeded");
    let job = cpi::store::jobs::get(&env.pool, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.status.as_str(), job.attempts), ("succeeded", 2));
    let again = cpi_on(&env, &["jobs", "retry", &id]).await;
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("only a failed job can be retried"),
        "{}",
        again.stderr
    );
    let missing = cpi_on(
        &env,
        &["jobs", "show", "00000000-0000-0000-0000-000000000000"],
    )
    .await;
    assert_eq!(missing.code, 1);
}

/// SIGKILL while COPY streams: the target is exactly as before, the next
/// import loads the file once.
#[tokio::test]
async fn sigkill_mid_import_leaves_the_target_unchanged() {
    let env = Env::new(json!({"table": "t", "primary_key": "id", "mode": "upsert"})).await;
    env.exec("CREATE TABLE t (id bigint PRIMARY KEY, name text, amount numeric(12,2))")
        .await;
    env.exec("INSERT INTO t SELECT g, 'before', 1 FROM generate_series(1, 10) g")
        .await;
    let rows = 1_000_000u64;
    // Once the COPY is streaming into the target, a little more.
    let (path, mut child) = import_mid_copy(&env, rows, Stdio::null).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "cpi finished before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(env.count("t").await, 10);
    assert_eq!(
        env.rows("SELECT DISTINCT name FROM t").await,
        vec!["before"]
    );
    assert_eq!(env.count("cpi.imported_files").await, 0);
    let (job_id, status): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, status FROM cpi_import_jobs")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(status, "running", "the killed job never finished");

    // One active job per file (the daemon's queue has this index; created
    // here too so the test does not depend on it).
    env.exec(
        "CREATE UNIQUE INDEX IF NOT EXISTS cpi_import_jobs_one_active_per_file
           ON cpi_import_jobs (file_path) WHERE status IN ('queued', 'running')",
    )
    .await;
    let id = job_id.to_string();
    let r = cpi_on(&env, &["import", "--project", "p", path.to_str().unwrap()]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains(&format!("already has an active import job {id}"))
            && r.stderr.contains(&format!("cpi jobs retry --force {id}")),
        "{}",
        r.stderr
    );
    // The operator takes the dead job over.
    let r = cpi_on(&env, &["jobs", "retry", &id]).await;
    r.assert_code(1).assert_stderr("--force");
    let r = cpi_on(&env, &["jobs", "retry", "--force", &id]).await;
    r.assert_code(0)
        .assert_stdout(&format!("read {rows}, inserted {}, updated 10", rows - 10));
    assert_eq!(env.count("t").await, rows as i64);
    let r = cpi_on(&env, &["import", "--project", "p", path.to_str().unwrap()]).await;
    r.assert_code(0).assert_stdout("big.csv: duplicate");
    assert_eq!(env.count("t").await, rows as i64);
}

/// Ctrl-C while COPY streams: the import rolls back, the job is marked
/// failed (not left `running` to block the file), and a new import works.
#[tokio::test]
async fn sigint_mid_import_rolls_back_and_frees_the_file() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id bigint PRIMARY KEY, name text, amount numeric(12,2))")
        .await;
    env.exec(
        "CREATE UNIQUE INDEX IF NOT EXISTS cpi_import_jobs_one_active_per_file
           ON cpi_import_jobs (file_path) WHERE status IN ('queued', 'running')",
    )
    .await;
    let rows = 1_000_000u64;
    let (path, child) = import_mid_copy(&env, rows, Stdio::piped).await;
    signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGINT: rolled back"),
        "{stderr}"
    );
    assert_eq!(env.count("t").await, 0);
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM cpi_import_jobs")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(error.unwrap_or_default().contains("interrupted by SIGINT"));

    // No `retry --force` needed: the file is free.
    let r = cpi_on(&env, &["import", "--project", "p", path.to_str().unwrap()]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(env.count("t").await, rows as i64);
}

/// Starts `cpi import` of a `rows`-row file (its outputs to `out()`) and
/// returns once its COPY streams into the target.
async fn import_mid_copy(env: &Env, rows: u64, out: fn() -> Stdio) -> (PathBuf, Child) {
    let path = big_file(env, rows);
    let mut child = Cpi::new(["import", "--project", "p", path.to_str().unwrap()])
        .db(&env.db)
        .command()
        .stdout(out())
        .stderr(out())
        .spawn()
        .unwrap();
    wait::copy_streaming(&env.pool, &mut child, Duration::from_secs(60))
        .await
        .unwrap();
    (path, child)
}

/// A 3-column CSV of `rows` rows in the inbox, big enough to interrupt.
fn big_file(env: &Env, rows: u64) -> PathBuf {
    let path = env.inbox().join("big.csv");
    fs::write_csv(&path, "id,name,amount", rows, |i| {
        format!("{i},name {i},{}.{:02}", i % 100000, i % 100)
    });
    path
}
