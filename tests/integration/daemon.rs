//! End-to-end: the real `cpi run` binary on temp folders and the real
//! PostgreSQL (DESIGN §4-6).

use std::time::Duration;

use crate::support::daemon::{csv_rows, Daemon, Setup};
use crate::support::db::{scalar_i64, scalar_text};
use crate::support::manifests::{connection_to, project};
use crate::support::wait::{
    copy_running, exists, http_ok, wait_at_least, wait_for, wait_i64, wait_url,
};
use crate::support::{admin_url, free_port, write, TestDb};

#[tokio::test]
async fn manifests_changes_follow_and_a_broken_set_changes_nothing() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p1", "{}")]);
    let mut d = Daemon::start(&db, &s.manifests(), &s.log("log"), &["--interval", "1h"]);
    let pool = db.pool().await;
    wait_i64(
        &pool,
        20,
        "startup reconcile",
        "SELECT count(*) FROM cpi_projects WHERE managed_by = 'cpi'",
        1,
    )
    .await
    .unwrap();

    // Add, edit.
    write(
        &s.manifests(),
        "projects/p2.yaml",
        &project("p2", "target", &s.inbox("p2"), "{}"),
    );
    write(
        &s.manifests(),
        "connections/target.yaml",
        &connection_to("target", &db, "edited"),
    );
    wait_for("add and edit applied", Duration::from_secs(10), || {
        let c = pool.clone();
        async move {
            let n = scalar_i64(&c, "SELECT count(*) FROM cpi_projects").await;
            let d = scalar_text(
                &c,
                "SELECT description FROM cpi_connections WHERE name = 'target'",
            )
            .await;
            (n == 2 && d.as_deref() == Some("edited")).then_some(())
        }
    })
    .await
    .unwrap();

    // A broken manifest: nothing changes, the reason is logged.
    write(&s.manifests(), "projects/broken.yaml", "apiVersion: cpi/v1\nkind: Project\nmetadata: {name: broken}\nspec: {connection: target, config: {inbox: /x, defaults: {mode: bogus}}}\n");
    std::fs::remove_file(s.manifests().join("projects/p2.yaml")).unwrap();
    wait_for("the error in the log", Duration::from_secs(10), || {
        let log = d.log();
        async move { (log.contains("reconcile failed") && log.contains("broken.yaml")).then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi_projects").await,
        2,
        "p2 must survive a broken set"
    );
    // The log line comes first, then the audit row.
    wait_at_least(&pool, 5, "the failed run recorded", "SELECT count(*) FROM cpi_reconcile_runs WHERE status = 'failed' AND error LIKE '%broken.yaml%'", 1)
        .await
        .unwrap();

    // Fixing it applies (p2's removal included).
    std::fs::remove_file(s.manifests().join("projects/broken.yaml")).unwrap();
    wait_i64(
        &pool,
        15,
        "the fix applied",
        "SELECT count(*) FROM cpi_projects",
        1,
    )
    .await
    .unwrap();
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn an_unreachable_target_leaves_the_file_waiting() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    // The connection points at a port where nothing listens.
    let m = s.manifests();
    let doc = connection_to("target", &db, "down").replace("127.0.0.1:5432", "127.0.0.1:1");
    write(&m, "connections/target.yaml", &doc);
    let d = Daemon::start(&db, &m, &s.log("log"), &[]);
    std::fs::write(s.inbox("p").join("a.csv"), csv_rows(1, 3, "x")).unwrap();
    wait_at_least(
        &pool,
        20,
        "a failed attempt, queued again for its retry",
        "SELECT count(*) FROM cpi_import_jobs WHERE status = 'queued' AND not_before > now() AND attempts = 1 AND error IS NOT NULL",
        1,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        s.inbox("p").join("a.csv").exists(),
        "the file waits in place"
    );
    assert!(!s.inbox("p").join("failed").exists());
    assert!(
        d.log().contains("the file stays in the inbox"),
        "{}",
        d.log()
    );
    assert!(!d.log().contains("pw-1"), "no secret in the log");

    // The retry survives a restart: the same job, still waiting.
    drop(d);
    let _d = Daemon::start(&db, &m, &s.log("log2"), &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi_import_jobs").await,
        1,
        "the retry is the same row"
    );

    // Once the connection is fixed, the waiting file is retried and imported.
    write(
        &m,
        "connections/target.yaml",
        &connection_to("target", &db, "up"),
    );
    wait_i64(
        &pool,
        40,
        "the retry imported the file",
        "SELECT count(*) FROM events",
        3,
    )
    .await
    .unwrap();
    exists(
        &s.inbox("p").join("processed/a.csv"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

/// Rows in the file an import is interrupted in.
const BIG: u64 = 3_000_000;

#[tokio::test]
async fn kill_9_mid_import_then_restart_imports_exactly_once() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    let tmp = s.big_tmp(BIG);
    let mut d = Daemon::start(&db, &s.manifests(), &s.log("log1"), &[]);
    std::fs::rename(&tmp, s.inbox("p").join("big.csv")).unwrap();
    copy_running(&pool, Duration::from_secs(30)).await.unwrap();
    d.signal("-KILL");
    d.wait(Duration::from_secs(10));
    // The server rolls the dead connection's transaction back.
    wait_i64(&pool, 10, "no import session left", "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'COPY%'", 0)
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events").await,
        0,
        "no partial rows"
    );
    assert!(s.inbox("p").join("big.csv").exists());

    let _d2 = Daemon::start(&db, &s.manifests(), &s.log("log2"), &[]);
    wait_i64(
        &pool,
        120,
        "imported after restart",
        "SELECT count(*) FROM cpi_import_jobs WHERE status = 'succeeded'",
        1,
    )
    .await
    .unwrap();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events").await as u64,
        BIG
    );
    assert!(s.inbox("p").join("processed/big.csv").exists());
    let attempts = scalar_i64(
        &pool,
        "SELECT attempts::int8 FROM cpi_import_jobs WHERE status = 'succeeded'",
    )
    .await;
    assert_eq!(attempts, 2, "the dead worker's job was taken over");
}

#[tokio::test]
async fn sigterm_mid_import_exits_0_and_loses_nothing() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    let tmp = s.big_tmp(BIG);
    // A shutdown timeout too short for the import: it is rolled back and requeued.
    let mut d = Daemon::start(
        &db,
        &s.manifests(),
        &s.log("log1"),
        &["--shutdown-timeout", "200ms"],
    );
    std::fs::rename(&tmp, s.inbox("p").join("big.csv")).unwrap();
    copy_running(&pool, Duration::from_secs(30)).await.unwrap();
    d.stop(30);
    assert!(d.log().contains("rolled back, job requeued"), "{}", d.log());
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 0);
    assert!(s.inbox("p").join("big.csv").exists());
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE status = 'queued'"
        )
        .await,
        1
    );

    // With time to finish, a SIGTERM lets the import complete.
    let mut d2 = Daemon::start(
        &db,
        &s.manifests(),
        &s.log("log2"),
        &["--shutdown-timeout", "2m"],
    );
    copy_running(&pool, Duration::from_secs(30)).await.unwrap();
    d2.stop(120);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events").await as u64,
        BIG
    );
    assert!(s.inbox("p").join("processed/big.csv").exists());
}

/// A stop that waits says what for: an import held by a lock on its
/// table keeps the workers busy past SIGTERM, and the log names them every
/// 5 s until the lock goes and the import finishes.
#[tokio::test]
async fn a_stop_that_waits_says_what_for() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    let mut d = Daemon::start(
        &db,
        &s.manifests(),
        &s.log("log"),
        &["--shutdown-timeout", "2m"],
    );
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    std::fs::write(s.inbox("p").join("a.csv"), csv_rows(1, 3, "r")).unwrap();
    wait_i64(
        &pool,
        30,
        "the import running",
        "SELECT count(*) FROM cpi_import_jobs WHERE status = 'running'",
        1,
    )
    .await
    .unwrap();
    d.signal("-TERM");
    d.wait_log("stopping: still waiting", Duration::from_secs(20))
        .await
        .unwrap();
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("stopping: still waiting"))
        .unwrap();
    assert!(line.contains("the workers"), "{line}");
    assert!(d.wait(Duration::from_millis(100)).is_none(), "it waits");
    lock.commit().await.unwrap();
    assert_eq!(d.wait(Duration::from_secs(30)), Some(0), "{}", d.log());
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 3);
}

#[tokio::test]
async fn two_replicas_import_each_file_once_and_never_interleave_reconciles() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    let _a = Daemon::start(&db, &s.manifests(), &s.log("a"), &["--interval", "1s"]);
    let _b = Daemon::start(&db, &s.manifests(), &s.log("b"), &["--interval", "1s"]);
    for i in 0..60u64 {
        std::fs::write(
            s.inbox("p").join(format!("f_{i:03}.csv")),
            csv_rows(i * 100, 25, "r"),
        )
        .unwrap();
        if i % 10 == 0 {
            // Manifest edits while files flow: both replicas reconcile.
            write(
                &s.manifests(),
                "connections/target.yaml",
                &connection_to("target", &db, &format!("rev {i}")),
            );
        }
    }
    wait_for("all files processed", Duration::from_secs(90), || {
        let inbox = s.inbox("p");
        async move {
            let n = std::fs::read_dir(inbox.join("processed"))
                .map(|d| d.count())
                .unwrap_or(0);
            (n >= 60).then_some(())
        }
    })
    .await
    .unwrap();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events").await,
        60 * 25
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE status = 'failed'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM (SELECT file_name FROM cpi_import_jobs WHERE status = 'succeeded' GROUP BY 1 HAVING count(*) <> 1) x").await,
        0
    );
    // Reconcile runs never overlap in time.
    let overlaps = scalar_i64(
        &pool,
        "SELECT count(*) FROM cpi_reconcile_runs a JOIN cpi_reconcile_runs b ON a.id < b.id
          WHERE a.started_at < b.finished_at AND b.started_at < a.finished_at AND a.status <> 'failed' AND b.status <> 'failed'",
    )
    .await;
    assert_eq!(overlaps, 0);
    // The create and at least one edit; no-op reconciles fold into one row.
    assert!(scalar_i64(&pool, "SELECT count(*) FROM cpi_reconcile_runs").await >= 2);
}

#[tokio::test]
async fn run_listen_serves_health_metrics_and_the_api() {
    let db = TestDb::new().await;
    let (s, _pool) = Setup::events(&db).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let token = s.dir.path().join("token");
    std::fs::write(&token, "t0ken-for-the-api\n").unwrap();
    let mut d = Daemon::start(
        &db,
        &s.manifests(),
        &s.log("log"),
        &[
            "--listen",
            &addr,
            "--api-token-file",
            token.to_str().unwrap(),
            "--anonymous",
            "viewer",
        ],
    );
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    http_ok(&format!("{base}/readyz"), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    std::fs::write(s.inbox("p").join("a.csv"), csv_rows(1, 7, "x")).unwrap();
    wait_for(
        "import counted in the metrics",
        Duration::from_secs(20),
        || {
            let (http, url) = (http.clone(), format!("{base}/metrics"));
            async move {
                let text = http.get(url).send().await.ok()?.text().await.ok()?;
                text.contains("cpi_import_rows_total{outcome=\"inserted\"} 7")
                    .then_some(text)
            }
        },
    )
    .await
    .unwrap();
    let metrics = crate::support::api::body_text(http.get(format!("{base}/metrics"))).await;
    assert!(
        metrics.contains("cpi_reconcile_runs_total{status=\"succeeded\"}"),
        "{metrics}"
    );

    // Rows the manifests manage answer 409 with the manifest path.
    let list: serde_json::Value = http
        .get(format!("{base}/connections"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert!(list[0].get("database_url").is_none());
    let r = http
        .delete(format!("{base}/connections/{id}"))
        .bearer_auth("t0ken-for-the-api")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("connections/target.yaml"));
    assert!(!d.log().contains("t0ken-for-the-api"));
    d.stop(20);
}

#[tokio::test]
async fn startup_waits_for_the_management_database() {
    // The database does not exist yet: cpi retries until it does.
    let db = TestDb {
        name: format!("cpi_test_{}", uuid::Uuid::new_v4().simple()),
    };
    let s = Setup::new(&db, &[("p", "{}")]);
    let d = Daemon::start(&db, &s.manifests(), &s.log("log"), &[]);
    d.wait_log("management database not available", Duration::from_secs(20))
        .await
        .unwrap();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{}\"",
        db.name
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let pool = db.pool().await;
    wait_i64(
        &pool,
        30,
        "reconciled once the database is up",
        "SELECT count(*) FROM cpi_projects",
        1,
    )
    .await
    .unwrap();
    pool.close().await;
    drop(d);
}

#[tokio::test]
async fn regression_rotation_in_a_relative_secrets_dir_is_seen() {
    // Watcher events carry absolute paths; a relative --secrets-dir once
    // made every rotation outside the manifests folder go unnoticed.
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{}")]);
    let secrets = s.dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::rename(
        s.manifests().join("target.pass"),
        secrets.join("target.pass"),
    )
    .unwrap();
    let _d = Daemon::start(
        &db,
        &s.manifests(),
        &s.log("log"),
        &["--secrets-dir", "secrets", "--interval", "1h"],
    );
    let pool = db.pool().await;
    wait_i64(
        &pool,
        20,
        "started",
        "SELECT count(*) FROM cpi_connections",
        1,
    )
    .await
    .unwrap();
    std::fs::write(secrets.join("target.pass"), "pw-rotated\n").unwrap();
    wait_url(
        &pool,
        10,
        "rotation applied without waiting for the interval",
        ":pw-rotated@",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn json_logs_carry_one_span_per_import_with_its_job_id() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    let d = Daemon::start(
        &db,
        &s.manifests(),
        &s.log("log"),
        &["--log-format", "json"],
    );
    std::fs::write(s.inbox("p").join("a.csv"), csv_rows(1, 2, "j")).unwrap();
    let line = wait_for("an import log line", Duration::from_secs(20), || {
        let log = d.log();
        async move {
            log.lines()
                .find(|l| l.contains("import finished"))
                .map(str::to_string)
        }
    })
    .await
    .unwrap();
    for l in d.log().lines() {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let (job_id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM cpi_import_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(v["span"]["name"], "import");
    assert_eq!(v["span"]["job_id"], job_id.to_string());
    assert_eq!(v["fields"]["status"], "succeeded");
    assert!(
        d.log().contains("\"name\":\"reconcile\""),
        "a reconcile span"
    );
}

#[tokio::test]
async fn sigterm_while_waiting_for_the_management_database_exits_0() {
    let db = TestDb {
        name: format!("cpi_test_{}", uuid::Uuid::new_v4().simple()),
    };
    let s = Setup::new(&db, &[("p", "{}")]);
    let mut d = Daemon::start(&db, &s.manifests(), &s.log("log"), &[]);
    d.wait_log("management database not available", Duration::from_secs(20))
        .await
        .unwrap();
    d.stop(20);
    // The database was never created: nothing for TestDb to drop.
}

/// 1,000 projects, each with its own inbox, and an inotify budget of 100
/// watches (the hidden, test-only `--inotify-watch-cap`, standing in for
/// `fs.inotify.max_user_watches` running out): the first 100 inboxes are
/// watched, the other 900 polled, said once at WARN with the sysctl to
/// raise. A file dropped into the first, a middle and the last inbox is
/// imported; the rescan is an hour away, so only the watchers can see them.
#[tokio::test]
async fn a_thousand_inboxes_beyond_the_inotify_budget_are_polled_and_imported() {
    let db = TestDb::new().await;
    let names: Vec<String> = (0..1000).map(|i| format!("p{i:04}")).collect();
    let projects: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "{table: events, mode: append}"))
        .collect();
    let s = Setup::new(&db, &projects);
    let pool = db.pool().await;
    crate::support::daemon::events_table(&pool).await;
    let d = Daemon::start(
        &db,
        &s.manifests(),
        &s.log("log"),
        &[
            "--inotify-watch-cap",
            "100",
            "--rescan",
            "1h",
            "--interval",
            "1h",
        ],
    );
    wait_i64(
        &pool,
        120,
        "1,000 projects reconciled",
        "SELECT count(*) FROM cpi_projects",
        1000,
    )
    .await
    .unwrap();
    d.wait_log("900 folders are polled", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        d.log().contains("fs.inotify.max_user_watches"),
        "{}",
        d.log()
    );
    // Let the pollers take their first look before the files arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, name) in [(0u64, "p0000"), (1, "p0500"), (2, "p0999")] {
        std::fs::write(s.inbox(name).join("drop.csv"), csv_rows(i * 10, 5, name)).unwrap();
    }
    wait_i64(
        &pool,
        60,
        "the three files imported",
        "SELECT count(*) FROM events",
        15,
    )
    .await
    .unwrap();
    let tags: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT tag FROM events ORDER BY tag")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        tags,
        [("p0000".into(),), ("p0500".into(),), ("p0999".into(),)]
    );
    assert_eq!(
        d.log().matches("inotify watches ran out").count(),
        1,
        "one WARN line, not one per inbox: {}",
        d.log()
    );
}
