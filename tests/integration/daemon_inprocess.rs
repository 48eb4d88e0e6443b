//! The daemon in the test's own runtime: `cpi::daemon::run` with plain
//! settings, a pool, a listener on port 0 and a shutdown future. The tests
//! of wiring live here; those of the binary's own behaviour (signals, exit
//! codes, kill -9, replicas as processes, log format) stay in `daemon.rs`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cpi::daemon::watch::Backend;
use cpi::daemon::{self, Settings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::daemon::{csv_rows, events_table, events_table_named, Setup};
use crate::support::db::{scalar_i64, scalar_text};
use crate::support::wait::{
    copy_running, exists, http_ok, wait_at_least, wait_for, wait_i64, wait_url,
};
use crate::support::{write, TestDb};

/// A daemon running as a task of the test; dropping it asks it to stop.
struct InProcess {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), cpi::store::StoreError>>,
    addr: SocketAddr,
}

impl InProcess {
    /// Starts `daemon::run` on the setup's manifests with the binary tests'
    /// quick defaults, changed by `tweak`; the API listens on a free port.
    async fn start(db: &TestDb, s: &Setup, tweak: impl FnOnce(&mut Settings)) -> InProcess {
        let mut settings = Settings::new(s.manifests());
        settings.interval = Duration::from_secs(2);
        settings.rescan = Duration::from_secs(1);
        settings.settle = Duration::from_millis(300);
        settings.lease = Duration::from_secs(3);
        settings.worker_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        tweak(&mut settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(daemon::run(
            settings,
            db.pool().await,
            Some(listener),
            shutdown,
        ));
        InProcess {
            stop: Some(tx),
            task,
            addr,
        }
    }

    /// Completes the shutdown future; what `run` returned, within `timeout`.
    async fn stop(mut self, timeout: Duration) -> Result<(), cpi::store::StoreError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = &mut self.task;
        tokio::time::timeout(timeout, task)
            .await
            .expect("daemon::run returned after its shutdown future completed")
            .expect("daemon::run did not panic")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Waits until `count_sql` counts the one project of the manifests.
async fn reconciled(pool: &sqlx::PgPool, count_sql: &str) {
    wait_i64(pool, 20, "the manifests reconciled", count_sql, 1)
        .await
        .unwrap();
}

/// Drops `name` with `body` into project `p`'s inbox and waits until the
/// daemon has moved it to `processed/`.
async fn import_into_p(s: &Setup, name: &str, body: &str) {
    std::fs::write(s.inbox("p").join(name), body).unwrap();
    exists(
        &s.inbox("p").join("processed").join(name),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_reconciled_and_an_inbox_file_is_imported_once() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    let d = InProcess::start(&db, &s, |_| {}).await;
    reconciled(
        &pool,
        "SELECT count(*) FROM cpi_projects WHERE managed_by = 'cpi'",
    )
    .await;
    import_into_p(&s, "a.csv", &csv_rows(1, 5, "once")).await;
    // A few rescans later, still one job and one copy of the rows.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 5);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi_import_jobs").await,
        1
    );
    assert_eq!(
        scalar_text(&pool, "SELECT status FROM cpi_import_jobs")
            .await
            .as_deref(),
        Some("succeeded")
    );
    assert!(!s.inbox("p").join("a.csv").exists());
    d.stop(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_on_the_injected_listener() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{}")]);
    let d = InProcess::start(&db, &s, |_| {}).await;
    let http = reqwest::Client::new();
    let r = http.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    http_ok(&d.url("/readyz"), Duration::from_secs(20))
        .await
        .unwrap();
    let addr = d.addr;
    d.stop(Duration::from_secs(20)).await.unwrap();
    // The listener is closed with the daemon.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_future_stops_run_with_no_job_left_running() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    let tmp = s.big_tmp(1_000_000);
    let d = InProcess::start(&db, &s, |c| {
        c.shutdown_timeout = Duration::from_millis(200);
    })
    .await;
    std::fs::rename(&tmp, s.inbox("p").join("big.csv")).unwrap();
    copy_running(&pool, Duration::from_secs(30)).await.unwrap();
    let asked = Instant::now();
    d.stop(Duration::from_secs(20)).await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE status = 'running'"
        )
        .await,
        0,
        "no job left running"
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE status = 'queued'"
        )
        .await,
        1,
        "the interrupted job is back in the queue"
    );
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 0);
    assert!(s.inbox("p").join("big.csv").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_set_back_within_an_interval_and_secret_rotation_follows() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p1", "{}")]);
    let _d = InProcess::start(&db, &s, |c| c.interval = Duration::from_secs(2)).await;
    let pool = db.pool().await;
    wait_i64(
        &pool,
        20,
        "startup reconcile",
        "SELECT count(*) FROM cpi_projects",
        1,
    )
    .await
    .unwrap();
    sqlx::query("UPDATE cpi_projects SET description = 'hand edit'")
        .execute(&pool)
        .await
        .unwrap();
    wait_for("drift set back", Duration::from_secs(10), || {
        let c = pool.clone();
        async move {
            (scalar_text(&c, "SELECT description FROM cpi_projects")
                .await
                .is_none())
            .then_some(())
        }
    })
    .await
    .unwrap();
    let drifted = scalar_i64(
        &pool,
        "SELECT coalesce(sum(drifted), 0)::int8 FROM cpi_reconcile_runs",
    )
    .await;
    assert_eq!(drifted, 1);

    // Rotation by rename over the old file, as secret managers do it.
    let tmp = s.manifests().join(".target.pass.new");
    std::fs::write(&tmp, "pw-2\n").unwrap();
    std::fs::rename(&tmp, s.manifests().join("target.pass")).unwrap();
    wait_url(&pool, 10, "rotated password applied", ":pw-2@")
        .await
        .unwrap();
}

/// Names of files still being written, which no import may touch.
const TEMP_NAMES: [&str; 5] = [
    "never.csv.tmp",
    "never.csv.part",
    "never.csv.partial",
    "never.csv.crdownload",
    ".hidden.csv",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_is_imported_once_and_never_while_being_written() {
    let db = TestDb::new().await;
    let s = Setup::new(
        &db,
        &[
            ("alpha", "{table: events, mode: append}"),
            ("beta", "{table: events, mode: append}"),
        ],
    );
    let pool = db.pool().await;
    events_table(&pool).await;
    // Present before start: 5 in each inbox, so 200 files in all.
    for (i, project) in (0..10u64).zip(["alpha", "beta"].iter().cycle()) {
        write(
            &s.inbox(project),
            &format!("early_{i:03}.csv"),
            &csv_rows(1_000_000 + i * 10, 10, "early"),
        );
    }
    let _d = InProcess::start(&db, &s, |c| {
        c.settle = Duration::from_secs(1);
        c.workers = 3;
    })
    .await;

    let mut expected = 100u64;
    let mut handles = Vec::new();
    for (p, project) in ["alpha", "beta"].iter().enumerate() {
        let inbox = s.inbox(project);
        let base = p as u64 * 100_000;
        // 70 files written at once.
        for i in 0..70u64 {
            std::fs::write(
                inbox.join(format!("plain_{i:03}.csv")),
                csv_rows(base + i * 100, 20, "plain"),
            )
            .unwrap();
            expected += 20;
        }
        // 15 files written to a temp name, then renamed.
        for i in 0..15u64 {
            let tmp = inbox.join(format!("renamed_{i:03}.csv.part"));
            std::fs::write(&tmp, csv_rows(base + 10_000 + i * 100, 30, "renamed")).unwrap();
            std::fs::rename(&tmp, inbox.join(format!("renamed_{i:03}.csv"))).unwrap();
            expected += 30;
        }
        // 10 files written slowly, in chunks, with pauses shorter than settle.
        for i in 0..10u64 {
            let path = inbox.join(format!("slow_{i:03}.csv"));
            let body = csv_rows(base + 20_000 + i * 1000, 400, "slow");
            expected += 400;
            handles.push(std::thread::spawn(move || {
                let mut f = std::fs::File::create(&path).unwrap();
                for chunk in body.as_bytes().chunks(body.len() / 6 + 1) {
                    f.write_all(chunk).unwrap();
                    f.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                }
            }));
        }
        // Temp names that must never be imported.
        for name in TEMP_NAMES {
            std::fs::write(inbox.join(name), csv_rows(base + 90_000, 5, "never")).unwrap();
        }
    }
    // Joined off the runtime: the daemon shares it with the test.
    tokio::task::spawn_blocking(move || handles.into_iter().for_each(|h| h.join().unwrap()))
        .await
        .unwrap();
    let total_files = 2 * (5 + 70 + 15 + 10);
    assert_eq!(total_files, 200);
    wait_at_least(
        &pool,
        120,
        "all files imported",
        "SELECT count(*) FROM cpi_import_jobs WHERE status IN ('succeeded', 'failed')",
        total_files,
    )
    .await
    .unwrap();
    let failed: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT file_name, error FROM cpi_import_jobs WHERE status = 'failed'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        failed.is_empty(),
        "no file may fail (a half-written one would): {failed:?}"
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events").await as u64,
        expected
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events WHERE tag = 'never'").await,
        0
    );
    let once: i64 = scalar_i64(
        &pool,
        "SELECT count(*) FROM (SELECT file_path FROM cpi_import_jobs WHERE status = 'succeeded' GROUP BY file_path HAVING count(*) > 1) x",
    )
    .await;
    assert_eq!(once, 0, "a file imported twice");
    for project in ["alpha", "beta"] {
        let processed = std::fs::read_dir(s.inbox(project).join("processed"))
            .unwrap()
            .count();
        assert_eq!(processed, 100);
        for name in TEMP_NAMES {
            assert!(
                s.inbox(project).join(name).exists(),
                "{name} must stay untouched"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_file_goes_to_failed_with_its_report() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    let _d = InProcess::start(&db, &s, |_| {}).await;
    std::fs::write(
        s.inbox("p").join("bad.csv"),
        "id,tag,n\n1,a,1\n2,b,not-a-number\n",
    )
    .unwrap();
    let report = s.inbox("p").join("failed/bad.csv.error.json");
    exists(&report, Duration::from_secs(20)).await.unwrap();
    assert!(s.inbox("p").join("failed/bad.csv").exists());
    let text = std::fs::read_to_string(&report).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["job_id"].is_string());
    assert!(text.contains("not-a-number"), "{text}");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 0);
}

/// Data contracts: a file that fails a check goes to `failed/` with an
/// `.error.json` that lists the check, its count and sample lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_failed_file_goes_to_failed_with_each_check_in_its_report() {
    let db = TestDb::new().await;
    let s = Setup::new(
        &db,
        &[(
            "p",
            "{table: events, mode: append, checks: [{check: accepted_values, column: tag, values: [a]}]}",
        )],
    );
    let pool = db.pool().await;
    events_table(&pool).await;
    let _d = InProcess::start(&db, &s, |_| {}).await;
    std::fs::write(
        s.inbox("p").join("bad.csv"),
        "id,tag,n\n1,a,1\n2,zz,2\n3,a,3\n",
    )
    .unwrap();
    let report = s.inbox("p").join("failed/bad.csv.error.json");
    exists(&report, Duration::from_secs(20)).await.unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let c = &v["checks"][0];
    assert_eq!(c["check"], "accepted_values(tag)", "{v}");
    assert_eq!(c["outcome"], "error", "{v}");
    assert_eq!(c["failing"], 1, "{v}");
    assert_eq!(c["samples"][0]["line"], 3, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("failed check(s) accepted_values(tag)"),
        "{v}"
    );
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_one_table_are_imported_one_at_a_time_in_name_order() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: ordered, mode: append}")]);
    let pool = db.pool().await;
    sqlx::query("CREATE TABLE ordered (id bigint PRIMARY KEY, tag text, n int, seq bigserial)")
        .execute(&pool)
        .await
        .unwrap();
    // Present before start, so that all become ready in the same scan;
    // written in reverse name order.
    for i in (0..8u64).rev() {
        std::fs::write(
            s.inbox("p").join(format!("f_{i}.csv")),
            csv_rows(i * 1000, 500, &format!("f_{i}")),
        )
        .unwrap();
    }
    let _d = InProcess::start(&db, &s, |c| c.workers = 4).await;
    wait_i64(
        &pool,
        30,
        "all imported",
        "SELECT count(*) FROM ordered",
        8 * 500,
    )
    .await
    .unwrap();
    // Load order: each file's rows form one block of `seq`, blocks in name order.
    let blocks: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT tag, min(seq), max(seq) FROM ordered GROUP BY tag ORDER BY min(seq)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let tags: Vec<&str> = blocks.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(
        tags,
        ["f_0", "f_1", "f_2", "f_3", "f_4", "f_5", "f_6", "f_7"]
    );
    for w in blocks.windows(2) {
        assert!(w[0].2 < w[1].1, "files interleaved: {blocks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_finds_files_where_inotify_would_not_be_used() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    // A rescan far away: only the polling watcher can notice the file.
    let _d = InProcess::start(&db, &s, |c| {
        c.backend = Backend::Poll(Duration::from_millis(200));
        c.rescan = Duration::from_secs(3600);
    })
    .await;
    wait_i64(&pool, 20, "started", "SELECT count(*) FROM cpi_projects", 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(s.inbox("p").join("polled.csv"), csv_rows(1, 4, "poll")).unwrap();
    wait_i64(
        &pool,
        20,
        "imported",
        "SELECT count(*) FROM events WHERE tag = 'poll'",
        4,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn connect_waiting_gives_up_when_asked_to_stop() {
    // A database that does not exist: every attempt fails, the stop wins.
    let db = TestDb {
        name: format!("cpi_test_{}", uuid::Uuid::new_v4().simple()),
    };
    let url = cpi::secret::Secret::new(db.url());
    let pool = tokio::time::timeout(
        Duration::from_secs(20),
        daemon::connect_waiting(&url, async {}),
    )
    .await
    .expect("connect_waiting returns once its stop future completes");
    assert!(pool.is_none());
}

/// The error policy's "wait for a fix": a project without a connection
/// leaves its file in the inbox (not in `failed/`); the reconcile that gives
/// it one is a configuration change, so the file is imported at once, not
/// at the slow re-check a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_error_leaves_the_file_waiting_until_the_fix() {
    let db = TestDb::new().await;
    // Manifests declare only the connection; the project is someone else's
    // row (no manifest, so no reconcile repairs it behind the test's back).
    let s = Setup::new(&db, &[]);
    let pool = db.pool().await;
    events_table(&pool).await;
    let inbox = s.inbox("p");
    std::fs::create_dir_all(&inbox).unwrap();
    let d = InProcess::start(&db, &s, |st| {
        st.interval = Duration::from_secs(600);
        st.adopt = true;
    })
    .await;
    reconciled(&pool, "SELECT count(*) FROM cpi_connections").await;
    let config = serde_json::json!({
        "name": "p",
        "inbox": inbox,
        "defaults": {"table": "events", "mode": "append"},
    });
    sqlx::query("INSERT INTO cpi_projects (name, config) VALUES ('p', $1)")
        .bind(&config)
        .execute(&pool)
        .await
        .unwrap();
    std::fs::write(inbox.join("a.csv"), csv_rows(1, 3, "waits")).unwrap();
    wait_i64(
        &pool,
        30,
        "the job waits for a fix of the missing connection",
        "SELECT count(*) FROM cpi_import_jobs WHERE status = 'queued' AND waits_for_fix AND not_before > now() AND error LIKE '%no connection%'",
        1,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(inbox.join("a.csv").exists(), "the file waits in the inbox");
    assert!(!inbox.join("failed").join("a.csv").exists());
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 0);

    // The fix: a manifest adopts the project with a connection; that
    // reconcile makes the waiting file due at once.
    let fixed = Instant::now();
    write(
        &s.manifests(),
        "projects/p.yaml",
        &crate::support::manifests::project("p", "target", &inbox, "{table: events, mode: append}"),
    );
    exists(&inbox.join("processed/a.csv"), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        fixed.elapsed() < Duration::from_secs(30),
        "imported after the fix, not at the slow re-check"
    );
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 3);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi_import_jobs").await,
        1,
        "the wait and the import are one job"
    );
    d.stop(Duration::from_secs(20)).await.unwrap();
}

/// An import whose target cannot be reached counts in
/// `cpi_import_target_errors_total` (the alert rules watch it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_counts_in_the_metrics() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);
    let m = s.manifests();
    let doc = crate::support::manifests::connection_to("target", &db, "down")
        .replace("127.0.0.1:5432", "127.0.0.1:1");
    write(&m, "connections/target.yaml", &doc);
    let d = InProcess::start(&db, &s, |_| {}).await;
    let metric = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("cpi_import_target_errors_total "))
            .map(|v| v.trim().parse::<f64>().unwrap())
    };
    let http = reqwest::Client::new();
    let before = http.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(metric(&before.text().await.unwrap()), Some(0.0));
    std::fs::write(s.inbox("p").join("a.csv"), csv_rows(1, 3, "x")).unwrap();
    wait_for("a target error counted", Duration::from_secs(20), || {
        let (http, url) = (http.clone(), d.url("/metrics"));
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            metric(&text).filter(|n| *n >= 1.0)
        }
    })
    .await
    .unwrap();
    d.stop(Duration::from_secs(20)).await.unwrap();
}

/// Regression: `cpi import` inserted its job as `queued` and only then
/// started it, so a daemon on the same management database could claim it
/// in between, import the file itself and move it out of the user's folder
/// (found by bench_small_files). The one-shot job is `running` from its
/// insert: the queue never offers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_daemon_never_claims_a_cpi_import_job() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    let d = InProcess::start(&db, &s, |_| {}).await;
    reconciled(&pool, "SELECT count(*) FROM cpi_projects").await;
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("mine.csv");
    std::fs::write(&file, csv_rows(1, 3, "cli")).unwrap();
    let created = cpi::store::jobs::create_started(
        &pool,
        "p",
        &cpi::location::FileRef::local(&file),
        "cli-test",
    )
    .await
    .unwrap();
    let id = created.job.id;
    // The daemon's claim loop runs several times while the job waits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let job = cpi::store::jobs::get(&pool, id).await.unwrap().unwrap();
    assert_eq!(
        job.worker.as_deref(),
        Some("cli-test"),
        "the daemon took it"
    );
    assert!(file.exists(), "the file stays where the user put it");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 0);
    let mut known = cpi::import::Known::default();
    cpi::import::run_created(&pool, &created, "cli-test", None, &mut known)
        .await
        .unwrap();
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 3);
    assert!(file.exists());
    d.stop(Duration::from_secs(20)).await.unwrap();
}

/// A file waiting for its retry keeps its place in its table's queue: the
/// next file of the same table is not imported before it (neither by a
/// fresh claim nor by the worker that just ran the failed one), and the
/// retry is the same job row, not a new one. The first file's rows hit a
/// trigger that raises a serialization failure (a transient error, so
/// `Retry`) until the test lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_waiting_for_its_retry_is_not_overtaken_by_the_next_file_of_its_table() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: ordered, mode: append}")]);
    let pool = db.pool().await;
    for sql in [
        "CREATE TABLE ordered (id bigint PRIMARY KEY, tag text, n int, seq bigserial)",
        "CREATE TABLE gate (closed boolean NOT NULL)",
        "INSERT INTO gate VALUES (true)",
        "CREATE FUNCTION gate_check() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.tag = 'first' AND (SELECT closed FROM gate) THEN
             RAISE EXCEPTION 'the gate is closed' USING ERRCODE = 'serialization_failure';
           END IF;
           RETURN NEW;
         END $$",
        "CREATE TRIGGER gate BEFORE INSERT ON ordered FOR EACH ROW EXECUTE FUNCTION gate_check()",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    std::fs::write(s.inbox("p").join("a_1.csv"), csv_rows(1, 5, "first")).unwrap();
    std::fs::write(s.inbox("p").join("a_2.csv"), csv_rows(100, 5, "second")).unwrap();
    let d = InProcess::start(&db, &s, |c| c.workers = 2).await;
    wait_at_least(
        &pool,
        30,
        "the first file's transient failure recorded",
        "SELECT count(*) FROM cpi_import_jobs WHERE file_name = 'a_1.csv' AND error LIKE '%gate is closed%'",
        1,
    )
    .await
    .unwrap();
    // The retry is due 5 s later; meanwhile both workers are idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM ordered WHERE tag = 'second'").await,
        0,
        "the second file overtook the first, which waits for its retry"
    );
    sqlx::query("UPDATE gate SET closed = false")
        .execute(&pool)
        .await
        .unwrap();
    wait_i64(
        &pool,
        40,
        "both imported",
        "SELECT count(*) FROM ordered",
        10,
    )
    .await
    .unwrap();
    let order: Vec<(String,)> =
        sqlx::query_as("SELECT tag FROM ordered GROUP BY tag ORDER BY min(seq)")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(order, [("first".to_string(),), ("second".to_string(),)]);
    // The verdicts are written once the target committed: wait for them.
    wait_i64(
        &pool,
        40,
        "both verdicts recorded",
        "SELECT count(*) FROM cpi_import_jobs WHERE status = 'succeeded'",
        2,
    )
    .await
    .unwrap();
    // One row per file: the retry reused the first file's job.
    let rows: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT file_name, status, attempts FROM cpi_import_jobs ORDER BY file_name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, "a_1.csv");
    assert_eq!(rows[0].1, "succeeded");
    assert!(rows[0].2 >= 2, "attempts counted on the same row: {rows:?}");
    d.stop(Duration::from_secs(20)).await.unwrap();
}

/// A worker keeps the project it read for its previous file while the
/// project's row is unchanged (`import::Known`); a change made between two
/// files applies to the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_changed_between_two_files_applies_to_the_second() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    events_table_named(&pool, "events_2").await;
    // One worker: the second file is that worker's next job.
    let d = InProcess::start(&db, &s, |c| c.workers = 1).await;
    import_into_p(&s, "a.csv", &csv_rows(1, 3, "first")).await;
    write(
        &s.manifests(),
        "projects/p.yaml",
        &crate::support::manifests::project(
            "p",
            "target",
            &s.inbox("p"),
            "{table: events_2, mode: append}",
        ),
    );
    wait_i64(
        &pool,
        20,
        "the changed project reconciled",
        "SELECT count(*) FROM cpi_projects WHERE config::text LIKE '%events_2%'",
        1,
    )
    .await
    .unwrap();
    import_into_p(&s, "b.csv", &csv_rows(10, 4, "second")).await;
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 3);
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events_2").await, 4);
    d.stop(Duration::from_secs(20)).await.unwrap();
}

/// Target connections are kept between imports, with cpi's own statements
/// prepared on them. A table that changes shape between two files (a
/// column added, one dropped) still takes the second file, an upsert, on
/// the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_changes_shape_between_two_files_takes_the_second() {
    let db = TestDb::new().await;
    let s = Setup::new(
        &db,
        &[("p", "{table: events, mode: upsert, primary_key: id}")],
    );
    let pool = db.pool().await;
    events_table(&pool).await;
    // One worker: both files on the same cached target connection.
    let d = InProcess::start(&db, &s, |c| c.workers = 1).await;
    import_into_p(&s, "a.csv", &csv_rows(1, 3, "first")).await;
    sqlx::query("ALTER TABLE events ADD COLUMN note text, DROP COLUMN n")
        .execute(&pool)
        .await
        .unwrap();
    import_into_p(&s, "b.csv", "id,tag,note\n2,second,changed\n9,second,new\n").await;
    let rows: Vec<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT id, tag, note FROM events ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            (1, "first".into(), None),
            (2, "second".into(), Some("changed".into())),
            (3, "first".into(), None),
            (9, "second".into(), Some("new".into())),
        ]
    );
    d.stop(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_in_after_its_writer_finished_skips_the_settle_wait() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    // A settle window far longer than the test's wait: only the mtime can
    // make the renamed file ready in time.
    let d = InProcess::start(&db, &s, |c| c.settle = Duration::from_secs(60)).await;
    reconciled(
        &pool,
        "SELECT count(*) FROM cpi_projects WHERE managed_by = 'cpi'",
    )
    .await;
    let inbox = s.inbox("p");
    // Written in place just now: it must wait out its settle time.
    std::fs::write(inbox.join("fresh.csv"), csv_rows(100, 3, "fresh")).unwrap();
    // Written elsewhere two minutes ago, then renamed in (the way the docs
    // ask producers to drop a file).
    let staged = s.manifests().parent().unwrap().join("renamed.csv");
    std::fs::write(&staged, csv_rows(1, 5, "renamed")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(120))
        .unwrap();
    std::fs::rename(&staged, inbox.join("renamed.csv")).unwrap();
    exists(
        &inbox.join("processed/renamed.csv"),
        Duration::from_secs(15),
    )
    .await
    .unwrap();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events WHERE tag = 'renamed'").await,
        5
    );
    // The fresh file is still settling: not queued, not loaded.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(inbox.join("fresh.csv").exists());
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events WHERE tag = 'fresh'").await,
        0
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi_import_jobs").await,
        1
    );
    d.stop(Duration::from_secs(20)).await.unwrap();
}
