//! End-to-end: the real `cpi run` binary on temp folders and the real
//! PostgreSQL (DESIGN §4-6).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::common::{cpi_command, write, TestDb};

/// A running `cpi run`, killed when dropped; its log goes to a file.
pub(crate) struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    pub(crate) fn start(db: &TestDb, manifests: &Path, log: &Path, extra: &[&str]) -> Daemon {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd: Command = cpi_command();
        cmd.args([
            "run",
            "--database-url",
            &db.url(),
            "--manifests",
            manifests.to_str().unwrap(),
        ])
        .args(extra);
        // Defaults a test may override (clap takes each flag once).
        for (flag, value) in [
            ("--interval", "2s"),
            ("--rescan", "1s"),
            ("--settle", "300ms"),
            ("--lease", "3s"),
        ] {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        // The log's folder is the working directory (relative paths in tests).
        cmd.env("CPI_LOG", "info,sqlx=warn")
            .current_dir(log.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(file);
        Daemon {
            child: Some(cmd.spawn().expect("start cpi run")),
            log: log.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; its exit code.
    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- {} (last lines) ---", self.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `check` until it returns `Some`, or fails the test with `what`.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_as::<_, (i64,)>(sql)
        .fetch_one(pool)
        .await
        .map(|r| r.0)
        .unwrap_or(-1)
}

/// Waits until `sql` (one bigint) returns `want`.
pub(crate) async fn wait_i64(pool: &PgPool, secs: u64, what: &str, sql: &str, want: i64) {
    eventually(Duration::from_secs(secs), what, || {
        let c = pool.clone();
        async move { (scalar_i64(&c, sql).await == want).then_some(()) }
    })
    .await
}

/// Waits until the connection's stored URL contains `needle`.
pub(crate) async fn wait_url(pool: &PgPool, secs: u64, what: &str, needle: &str) {
    eventually(Duration::from_secs(secs), what, || {
        let c = pool.clone();
        async move {
            let url = scalar_text(&c, "SELECT database_url FROM cpi_connections")
                .await
                .unwrap_or_default();
            url.contains(needle).then_some(())
        }
    })
    .await
}

pub(crate) async fn scalar_text(pool: &PgPool, sql: &str) -> Option<String> {
    sqlx::query_as::<_, (Option<String>,)>(sql)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
        .and_then(|r| r.0)
}

pub(crate) fn connection_doc(name: &str, db: &TestDb, description: &str) -> String {
    format!(
        "apiVersion: cpi/v1\nkind: Connection\nmetadata:\n  name: {name}\nspec:\n  description: {description}\n  database_url: postgresql://postgres@127.0.0.1:5432/{}\n  password_file: {name}.pass\n",
        db.name
    )
}

pub(crate) fn project_doc(name: &str, connection: &str, inbox: &Path, defaults: &str) -> String {
    format!(
        "apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: {name}\nspec:\n  connection: {connection}\n  config:\n    inbox: {}\n    defaults: {defaults}\n",
        inbox.display()
    )
}

/// A folder with manifests (a connection to the test database itself) and
/// one inbox per project.
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
}

impl Setup {
    pub(crate) fn new(db: &TestDb, projects: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("manifests");
        write(
            &m,
            "connections/target.yaml",
            &connection_doc("target", db, "the test database"),
        );
        write(&m, "target.pass", "pw-1\n");
        for (name, defaults) in projects {
            let inbox = dir.path().join("inbox").join(name);
            std::fs::create_dir_all(&inbox).unwrap();
            write(
                &m,
                &format!("projects/{name}.yaml"),
                &project_doc(name, "target", &inbox, defaults),
            );
        }
        Setup { dir }
    }
    pub(crate) fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }
    pub(crate) fn inbox(&self, project: &str) -> PathBuf {
        self.dir.path().join("inbox").join(project)
    }
    pub(crate) fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub(crate) fn csv_rows(first_id: u64, n: u64, tag: &str) -> String {
    let mut s = String::from("id,tag,n\n");
    for i in first_id..first_id + n {
        s.push_str(&format!("{i},{tag},{}\n", i % 97));
    }
    s
}

pub(crate) async fn events_table(pool: &PgPool) {
    sqlx::query("CREATE TABLE events (id bigint PRIMARY KEY, tag text NOT NULL, n int NOT NULL)")
        .execute(pool)
        .await
        .unwrap();
}

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
    .await;

    // Add, edit.
    write(
        &s.manifests(),
        "projects/p2.yaml",
        &project_doc("p2", "target", &s.inbox("p2"), "{}"),
    );
    write(
        &s.manifests(),
        "connections/target.yaml",
        &connection_doc("target", &db, "edited"),
    );
    eventually(Duration::from_secs(10), "add and edit applied", || {
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
    .await;

    // A broken manifest: nothing changes, the reason is logged.
    write(&s.manifests(), "projects/broken.yaml", "apiVersion: cpi/v1\nkind: Project\nmetadata: {name: broken}\nspec: {connection: target, config: {inbox: /x, defaults: {mode: bogus}}}\n");
    std::fs::remove_file(s.manifests().join("projects/p2.yaml")).unwrap();
    eventually(Duration::from_secs(10), "the error in the log", || {
        let log = d.log();
        async move { (log.contains("reconcile failed") && log.contains("broken.yaml")).then_some(()) }
    })
    .await;
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi_projects").await,
        2,
        "p2 must survive a broken set"
    );
    // The log line comes first, then the audit row.
    eventually(Duration::from_secs(5), "the failed run recorded", || {
        let c = pool.clone();
        async move {
            let n = scalar_i64(&c, "SELECT count(*) FROM cpi_reconcile_runs WHERE status = 'failed' AND error LIKE '%broken.yaml%'").await;
            (n >= 1).then_some(())
        }
    })
    .await;

    // Fixing it applies (p2's removal included).
    std::fs::remove_file(s.manifests().join("projects/broken.yaml")).unwrap();
    wait_i64(
        &pool,
        15,
        "the fix applied",
        "SELECT count(*) FROM cpi_projects",
        1,
    )
    .await;
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn an_unreachable_target_leaves_the_file_waiting() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);
    // The connection points at a port where nothing listens.
    let m = s.manifests();
    let doc = connection_doc("target", &db, "down").replace("127.0.0.1:5432", "127.0.0.1:1");
    write(&m, "connections/target.yaml", &doc);
    let pool = db.pool().await;
    events_table(&pool).await;
    let d = Daemon::start(&db, &m, &s.log("log"), &[]);
    std::fs::write(s.inbox("p").join("a.csv"), csv_rows(1, 3, "x")).unwrap();
    eventually(Duration::from_secs(20), "a failed attempt", || {
        let c = pool.clone();
        async move {
            (scalar_i64(
                &c,
                "SELECT count(*) FROM cpi_import_jobs WHERE status = 'failed'",
            )
            .await
                >= 1)
                .then_some(())
        }
    })
    .await;
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

    // Once the connection is fixed, the waiting file is retried and imported.
    write(
        &m,
        "connections/target.yaml",
        &connection_doc("target", &db, "up"),
    );
    wait_i64(
        &pool,
        40,
        "the retry imported the file",
        "SELECT count(*) FROM events",
        3,
    )
    .await;
    eventually(Duration::from_secs(10), "the file moved", || {
        let p = s.inbox("p").join("processed/a.csv");
        async move { p.exists().then_some(()) }
    })
    .await;
}

/// A file large enough that its import is still running when we act.
pub(crate) fn big_csv(path: &Path, rows: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "id,tag,n").unwrap();
    for i in 0..rows {
        writeln!(f, "{i},big-file-row-with-some-text-{i},{}", i % 1000).unwrap();
    }
}

pub(crate) async fn wait_running(pool: &PgPool) {
    // The import is in its COPY: rows are on their way into the table.
    eventually(Duration::from_secs(30), "the import streaming", || {
        let c = pool.clone();
        async move {
            let copying = scalar_i64(
                &c,
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND state = 'active' AND query ILIKE 'COPY%'",
            )
            .await;
            (copying == 1).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

pub(crate) const BIG: u64 = 3_000_000;

#[tokio::test]
async fn kill_9_mid_import_then_restart_imports_exactly_once() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    events_table(&pool).await;
    let tmp = s.dir.path().join("big.tmp");
    big_csv(&tmp, BIG);
    let mut d = Daemon::start(&db, &s.manifests(), &s.log("log1"), &[]);
    std::fs::rename(&tmp, s.inbox("p").join("big.csv")).unwrap();
    wait_running(&pool).await;
    d.signal("-KILL");
    d.wait(Duration::from_secs(10));
    // The server rolls the dead connection's transaction back.
    wait_i64(&pool, 10, "no import session left", "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'COPY%'", 0).await;
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
    .await;
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
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    events_table(&pool).await;
    let tmp = s.dir.path().join("big.tmp");
    big_csv(&tmp, BIG);
    // A shutdown timeout too short for the import: it is rolled back and requeued.
    let mut d = Daemon::start(
        &db,
        &s.manifests(),
        &s.log("log1"),
        &["--shutdown-timeout", "200ms"],
    );
    std::fs::rename(&tmp, s.inbox("p").join("big.csv")).unwrap();
    wait_running(&pool).await;
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(30)), Some(0), "{}", d.log());
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
    wait_running(&pool).await;
    d2.signal("-TERM");
    assert_eq!(d2.wait(Duration::from_secs(120)), Some(0), "{}", d2.log());
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events").await as u64,
        BIG
    );
    assert!(s.inbox("p").join("processed/big.csv").exists());
}

#[tokio::test]
async fn two_replicas_import_each_file_once_and_never_interleave_reconciles() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    events_table(&pool).await;
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
                &connection_doc("target", &db, &format!("rev {i}")),
            );
        }
    }
    eventually(Duration::from_secs(90), "all files processed", || {
        let inbox = s.inbox("p");
        async move {
            let n = std::fs::read_dir(inbox.join("processed"))
                .map(|d| d.count())
                .unwrap_or(0);
            (n >= 60).then_some(())
        }
    })
    .await;
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
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    events_table(&pool).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
        ],
    );
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(20), "ready", || {
        let (http, url) = (http.clone(), format!("{base}/readyz"));
        async move {
            http.get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        }
    })
    .await;
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    std::fs::write(s.inbox("p").join("a.csv"), csv_rows(1, 7, "x")).unwrap();
    eventually(
        Duration::from_secs(20),
        "import counted in the metrics",
        || {
            let (http, url) = (http.clone(), format!("{base}/metrics"));
            async move {
                let text = http.get(url).send().await.ok()?.text().await.ok()?;
                text.contains("cpi_import_rows_total{outcome=\"inserted\"} 7")
                    .then_some(text)
            }
        },
    )
    .await;
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(20)), Some(0), "{}", d.log());
}

#[tokio::test]
async fn startup_waits_for_the_management_database() {
    // The database does not exist yet: cpi retries until it does.
    let db = TestDb {
        name: format!("cpi_test_{}", uuid::Uuid::new_v4().simple()),
    };
    let s = Setup::new(&db, &[("p", "{}")]);
    let d = Daemon::start(&db, &s.manifests(), &s.log("log"), &[]);
    eventually(Duration::from_secs(20), "a logged retry", || {
        let log = d.log();
        async move {
            log.contains("management database not available")
                .then_some(())
        }
    })
    .await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&crate::common::admin_url())
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE \"{}\"", db.name))
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
    .await;
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
    .await;
    std::fs::write(secrets.join("target.pass"), "pw-rotated\n").unwrap();
    wait_url(
        &pool,
        10,
        "rotation applied without waiting for the interval",
        ":pw-rotated@",
    )
    .await;
}

#[tokio::test]
async fn json_logs_carry_one_span_per_import_with_its_job_id() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    events_table(&pool).await;
    let d = Daemon::start(
        &db,
        &s.manifests(),
        &s.log("log"),
        &["--log-format", "json"],
    );
    std::fs::write(s.inbox("p").join("a.csv"), csv_rows(1, 2, "j")).unwrap();
    let line = eventually(Duration::from_secs(20), "an import log line", || {
        let log = d.log();
        async move {
            log.lines()
                .find(|l| l.contains("import finished"))
                .map(str::to_string)
        }
    })
    .await;
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
    eventually(Duration::from_secs(20), "a logged retry", || {
        let log = d.log();
        async move {
            log.contains("management database not available")
                .then_some(())
        }
    })
    .await;
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(20)), Some(0), "{}", d.log());
    // The database was never created: nothing for TestDb to drop.
}
