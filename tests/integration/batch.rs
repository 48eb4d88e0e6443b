//! Batches (issue 30): the files of one table that are ready together are
//! claimed in one statement and imported in one target transaction, a
//! savepoint per file; every per-file guarantee holds inside a batch.
//! The real `cpi run` binary on temp folders and the real PostgreSQL.

use std::time::Duration;

use crate::support::daemon::{csv_rows, Daemon, Setup};
use crate::support::db::scalar_i64;
use crate::support::wait::{copy_running, wait_i64};
use crate::support::TestDb;

/// How many claims the jobs came in: a batch's claim starts all its jobs
/// at the same instant (its transaction's `now()`).
async fn claims(pool: &sqlx::PgPool) -> i64 {
    scalar_i64(
        pool,
        "SELECT count(DISTINCT started_at) FROM cpi_import_jobs",
    )
    .await
}

/// The `/metrics` totals of finished jobs (migrations 0050, 0131: a
/// batch's verdicts add their own, the row trigger lets them by) against a
/// full scan of the jobs: the differing (status, bucket) groups.
async fn totals_disagree(pool: &sqlx::PgPool) -> i64 {
    scalar_i64(
        pool,
        "WITH scan AS (
             SELECT status, cpi_duration_bucket(started_at, finished_at) AS bucket, count(*) AS jobs,
                    sum(rows_read) AS r, sum(rows_inserted) AS i, sum(rows_rejected) AS x,
                    round(sum(extract(epoch FROM finished_at - started_at))::numeric, 3) AS secs
               FROM cpi_import_jobs WHERE status IN ('succeeded', 'failed', 'duplicate') GROUP BY 1, 2
         ), kept AS (
             SELECT status, bucket, jobs, rows_read, rows_inserted, rows_rejected,
                    round(seconds::numeric, 3)
               FROM cpi_import_job_totals WHERE jobs <> 0
         )
         SELECT count(*) FROM ((SELECT * FROM scan EXCEPT SELECT * FROM kept)
                     UNION ALL (SELECT * FROM kept EXCEPT SELECT * FROM scan)) d",
    )
    .await
}

/// Starts the daemon once every file of the inbox is a minute old, so that
/// its first scan finds them all ready together (a file whose mtime is
/// `--settle` old is ready at first sight; one written a moment before the
/// scan would wait and come in a later batch).
fn start_on_aged_files(db: &TestDb, s: &Setup, log: &str) -> Daemon {
    let then = std::time::SystemTime::now() - Duration::from_secs(60);
    for e in std::fs::read_dir(s.inbox("p")).unwrap() {
        let path = e.unwrap().path();
        if path.is_file() {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(then).unwrap();
        }
    }
    Daemon::start(db, &s.manifests(), &s.log(log), &[])
}

/// Files `f01.csv`… of 10 rows each (ids 100·i …), written before the
/// daemon starts (see [`start_on_aged_files`]).
fn drop_files(s: &Setup, n: u64) {
    for i in 1..=n {
        std::fs::write(
            s.inbox("p").join(format!("f{i:02}.csv")),
            csv_rows(100 * i, 10, &format!("f{i:02}")),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn a_bad_file_in_the_middle_of_a_batch_fails_alone_and_the_rest_commit_together() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    drop_files(&s, 9);
    // f05: its third row's `n` is no integer.
    std::fs::write(
        s.inbox("p").join("f05.csv"),
        "id,tag,n\n500,f05,1\n501,f05,2\n502,f05,many\n",
    )
    .unwrap();
    let _d = start_on_aged_files(&db, &s, "log");
    finished(&pool, 9).await;
    assert_eq!(claims(&pool).await, 1, "one batch");
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE status = 'succeeded'"
        )
        .await,
        8
    );
    // Exactly the good files' rows: none of f05's, even its good rows.
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 80);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events WHERE tag = 'f05'").await,
        0
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(DISTINCT tag) FROM events").await,
        8
    );
    // The failed job names the bad value; its event is there, once.
    let failed = failed(&pool).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "f05.csv");
    assert!(failed[0].1.contains("many"), "{failed:?}");
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_events WHERE kind = 'import.failed'"
        )
        .await,
        1
    );
    // Ledger rows: one per good file.
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi.imported_files").await,
        8
    );
    let inbox = s.inbox("p");
    crate::support::wait::wait_for("the moves", Duration::from_secs(20), || {
        let done = inbox.join("failed/f05.csv.error.json").exists()
            && (1..=9)
                .filter(|i| *i != 5)
                .all(|i| inbox.join(format!("processed/f{i:02}.csv")).exists());
        async move { done.then_some(()) }
    })
    .await
    .unwrap();
    assert!(inbox.join("failed/f05.csv").exists());
    let report = std::fs::read_to_string(inbox.join("failed/f05.csv.error.json")).unwrap();
    assert!(report.contains("many"), "{report}");
    // The batch's verdicts are in the totals once each (8 succeeded with
    // 10 rows, 1 failed), as a full scan counts them.
    assert_eq!(totals_disagree(&pool).await, 0, "totals and jobs disagree");
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT sum(jobs)::int8 FROM cpi_import_job_totals WHERE status = 'succeeded'"
        )
        .await,
        8
    );
}

#[tokio::test]
async fn a_duplicate_inside_a_batch_loads_once() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    drop_files(&s, 4);
    // f03 is f02 again, byte for byte.
    std::fs::copy(s.inbox("p").join("f02.csv"), s.inbox("p").join("f03.csv")).unwrap();
    let _d = start_on_aged_files(&db, &s, "log");
    finished(&pool, 4).await;
    assert_eq!(claims(&pool).await, 1, "one batch");
    let dup: (String, String) =
        sqlx::query_as("SELECT file_name, error FROM cpi_import_jobs WHERE status = 'duplicate'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(dup.0, "f03.csv");
    assert!(dup.1.contains("f02.csv"), "names the first copy: {}", dup.1);
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 30);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi.imported_files").await,
        3
    );
    assert_eq!(totals_disagree(&pool).await, 0, "totals and jobs disagree");
}

#[tokio::test]
async fn kill_9_mid_batch_then_restart_loads_every_file_exactly_once() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    drop_files(&s, 20);
    // A file in the middle of the batch that takes a while (about 25 MB,
    // under the batch's byte bound): the batch is killed while it streams.
    crate::support::fs::write_csv(&s.inbox("p").join("f10.csv"), "id,tag,n", 600_000, |i| {
        format!(
            "{},f10-a-row-with-some-text-{i},{}",
            1_000_000 + i,
            i % 1000
        )
    });
    let mut d = start_on_aged_files(&db, &s, "log1");
    copy_running(&pool, Duration::from_secs(60)).await.unwrap();
    d.signal("-KILL");
    d.wait(Duration::from_secs(10));
    wait_i64(&pool, 10, "no import session left", "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'COPY%'", 0)
        .await
        .unwrap();
    // One transaction: nothing of the batch is there, not even the files before f10.
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events").await,
        0,
        "nothing half"
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE status = 'running'"
        )
        .await,
        20,
        "the batch was claimed whole"
    );

    let _d2 = start_on_aged_files(&db, &s, "log2");
    wait_i64(
        &pool,
        180,
        "every file imported after the restart",
        "SELECT count(*) FROM cpi_import_jobs WHERE status = 'succeeded'",
        20,
    )
    .await
    .unwrap();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events").await,
        19 * 10 + 600_000
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi.imported_files").await,
        20,
        "one ledger row per file"
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE attempts <> 2"
        )
        .await,
        0,
        "every job of the dead worker's batch was taken over once"
    );
}

#[tokio::test]
async fn a_cancel_of_one_job_mid_batch_fails_it_alone_and_the_rest_load_once() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    drop_files(&s, 12);
    crate::support::fs::write_csv(&s.inbox("p").join("f06.csv"), "id,tag,n", 600_000, |i| {
        format!(
            "{},f06-a-row-with-some-text-{i},{}",
            1_000_000 + i,
            i % 1000
        )
    });
    let _d = start_on_aged_files(&db, &s, "log");
    copy_running(&pool, Duration::from_secs(60)).await.unwrap();
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM cpi_import_jobs WHERE file_name = 'f06.csv'")
            .fetch_one(&pool)
            .await
            .unwrap();
    crate::support::bin::Cpi::new(["jobs", "cancel", &id.to_string(), "--reason", "stop f06"])
        .db(&db)
        .run()
        .assert_code(0);
    wait_i64(
        &pool,
        60,
        "the others imported",
        "SELECT count(*) FROM cpi_import_jobs WHERE status = 'succeeded'",
        11,
    )
    .await
    .unwrap();
    let (status, error): (String, String) =
        sqlx::query_as("SELECT status, error FROM cpi_import_jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(error.contains("stop f06"), "{error}");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 110);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events WHERE tag LIKE 'f06%'").await,
        0
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_events WHERE kind = 'import.failed'"
        )
        .await,
        0,
        "a cancel is its own event"
    );
    let inbox = s.inbox("p");
    crate::support::wait::wait_for("f06 set aside", Duration::from_secs(20), || {
        let done = inbox.join("failed/f06.csv.error.json").exists();
        async move { done.then_some(()) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_table_created_and_widened_inside_a_batch_takes_every_file() {
    // The batch reads the table's columns once and keeps them across its
    // files: the first file creates the table, the second adds a column,
    // the third fills it, the fourth has it no more.
    let db = TestDb::new().await;
    let s = Setup::new(
        &db,
        &[(
            "p",
            "{table: grown, mode: append, create_table: infer, extra_columns: add, missing_columns: ignore}",
        )],
    );
    let pool = db.pool().await;
    let inbox = s.inbox("p");
    std::fs::write(inbox.join("f1.csv"), "id,tag\n1,a\n2,b\n").unwrap();
    std::fs::write(inbox.join("f2.csv"), "id,tag,score\n3,c,30\n4,d,40\n").unwrap();
    std::fs::write(inbox.join("f3.csv"), "id,tag,score\n5,e,50\n").unwrap();
    std::fs::write(inbox.join("f4.csv"), "id,tag\n6,f\n").unwrap();
    let _d = start_on_aged_files(&db, &s, "log");
    finished(&pool, 4).await;
    let failed: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT file_name, error FROM cpi_import_jobs WHERE status <> 'succeeded'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(failed.is_empty(), "every file loads: {failed:?}");
    assert_eq!(claims(&pool).await, 1, "one batch");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM grown").await, 6);
    assert_eq!(
        scalar_i64(&pool, "SELECT coalesce(sum(score), 0)::int8 FROM grown").await,
        120
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM grown WHERE score IS NULL").await,
        3
    );
}

/// Waits until `n` jobs have a verdict (succeeded, duplicate or failed).
async fn finished(pool: &sqlx::PgPool, n: i64) {
    wait_i64(
        pool,
        60,
        "every job finished",
        "SELECT count(*) FROM cpi_import_jobs WHERE status IN ('succeeded', 'duplicate', 'failed')",
        n,
    )
    .await
    .unwrap();
}

/// The failed jobs: file and error, by file name.
async fn failed(pool: &sqlx::PgPool) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT file_name, error FROM cpi_import_jobs WHERE status = 'failed' ORDER BY file_name",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A setup whose project upserts into `events` by `id`, and a pool.
async fn upsert_setup(db: &TestDb) -> (Setup, sqlx::PgPool) {
    let s = Setup::new(
        db,
        &[("p", "{table: events, mode: upsert, primary_key: id}")],
    );
    let pool = db.pool().await;
    crate::support::daemon::events_table(&pool).await;
    (s, pool)
}

#[tokio::test]
async fn an_upsert_batch_with_a_merge_failure_fails_that_file_alone_at_its_line() {
    // The merge of f2 breaks a CHECK of the table: the batch's first pass
    // (no savepoints) ends there, and the second names f2's row and loads
    // the others, f3 updating f1's row.
    let db = TestDb::new().await;
    let (s, pool) = upsert_setup(&db).await;
    sqlx::query("ALTER TABLE events ADD CHECK (n < 1000)")
        .execute(&pool)
        .await
        .unwrap();
    let inbox = s.inbox("p");
    std::fs::write(inbox.join("f1.csv"), "id,tag,n\n1,a,1\n2,b,2\n").unwrap();
    std::fs::write(inbox.join("f2.csv"), "id,tag,n\n3,c,3\n4,d,4000\n").unwrap();
    std::fs::write(inbox.join("f3.csv"), "id,tag,n\n1,a2,10\n5,e,5\n").unwrap();
    let _d = start_on_aged_files(&db, &s, "log");
    finished(&pool, 3).await;
    assert_eq!(claims(&pool).await, 1, "one batch");
    let failed = failed(&pool).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "f2.csv");
    assert!(
        failed[0].1.starts_with("f2.csv:3: ") && failed[0].1.contains("events_n_check"),
        "names the row and the constraint: {}",
        failed[0].1
    );
    assert_eq!(
        crate::support::db::scalar_text(
            &pool,
            "SELECT string_agg(id || ':' || tag || ':' || n, ',' ORDER BY id) FROM events"
        )
        .await
        .as_deref(),
        Some("1:a2:10,2:b:2,5:e:5")
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi.imported_files").await,
        2
    );
}

#[tokio::test]
async fn regression_every_upsert_file_of_a_batch_merges_not_only_the_first() {
    // Seen on main: each file's staging table lived on to the batch's
    // commit, so every file after the first failed with `relation
    // "cpi_stage" already exists`.
    let db = TestDb::new().await;
    let (s, pool) = upsert_setup(&db).await;
    drop_files(&s, 5);
    let _d = start_on_aged_files(&db, &s, "log");
    finished(&pool, 5).await;
    assert_eq!(claims(&pool).await, 1, "one batch");
    let failed = failed(&pool).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 50);
}

#[tokio::test]
async fn duplicates_into_a_table_without_a_key_are_found_by_the_ledger_of_the_batch() {
    // No key to break: only the ledger tells a copy. f3 repeats f2 inside
    // one batch, and f5 (a later batch) repeats f1.
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: loose, mode: append}")]);
    let pool = db.pool().await;
    sqlx::query("CREATE TABLE loose (id bigint, tag text, n int)")
        .execute(&pool)
        .await
        .unwrap();
    drop_files(&s, 4);
    let inbox = s.inbox("p");
    std::fs::copy(inbox.join("f02.csv"), inbox.join("f03.csv")).unwrap();
    let _d = start_on_aged_files(&db, &s, "log");
    finished(&pool, 4).await;
    std::fs::write(inbox.join("f05.csv"), csv_rows(100, 10, "f01")).unwrap();
    std::fs::write(inbox.join("f06.csv"), csv_rows(600, 10, "f06")).unwrap();
    finished(&pool, 6).await;
    let dups: Vec<(String, String)> = sqlx::query_as(
        "SELECT file_name, error FROM cpi_import_jobs WHERE status = 'duplicate' ORDER BY file_name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        dups.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        ["f03.csv", "f05.csv"],
        "{dups:?}"
    );
    assert!(dups[0].1.contains("f02.csv"), "{}", dups[0].1);
    assert!(dups[1].1.contains("f01.csv"), "{}", dups[1].1);
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM loose").await, 40);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi.imported_files").await,
        4
    );
}
