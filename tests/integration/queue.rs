//! The queue's state machine on `cpi_import_jobs`, driven directly
//! (`queue::claim`, `claim_after`, `jobs::defer`, `queue::fixes_due`) on a
//! migrated test database: the decisions the daemon's workers rely on.

use std::path::PathBuf;
use std::time::Duration;

use cpi::store::queue::{self, Claimed};
use sqlx::PgPool;

use crate::support::TestDb;

const LEASE: Duration = Duration::from_secs(30);

/// A migrated database with one project `p` and queued jobs for `files`,
/// all into table `t`.
async fn queue_of(db: &TestDb, files: &[&str]) -> (PgPool, tempfile::TempDir) {
    let pool = db.pool().await;
    cpi::store::migrate(&pool).await.unwrap();
    sqlx::query("INSERT INTO cpi_projects (name, config) VALUES ('p', '{}')")
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jobs = queue::enqueue(&pool, "p", &files_in(&dir, files), "test")
        .await
        .unwrap();
    assert_eq!(jobs.len(), files.len());
    (pool, dir)
}

/// Files of 5 bytes named `names` in `dir`, for table `t`.
fn files_in(dir: &tempfile::TempDir, names: &[&str]) -> Vec<cpi::store::queue::QueuedFile> {
    names
        .iter()
        .map(|f| {
            let path: PathBuf = dir.path().join(f);
            std::fs::write(&path, "id\n1\n").unwrap();
            cpi::store::queue::QueuedFile {
                file: cpi::location::FileRef::local(&path),
                target: Some(("t".into(), cpi::config::Mode::Append)),
                written: None,
                seen: None,
            }
        })
        .collect()
}

/// A fresh queue of the one file `name`, claimed and then deferred for an
/// hour (`waits_for_fix`: for a configuration fix): the database, its pool,
/// the files' folder and the claim.
async fn waiting_an_hour(
    name: &str,
    waits_for_fix: bool,
) -> (TestDb, PgPool, tempfile::TempDir, Claimed) {
    let db = TestDb::new().await;
    let (pool, dir) = queue_of(&db, &[name]).await;
    let c = queue::claim(&pool, "w", LEASE).await.unwrap().unwrap();
    defer(&pool, &c, Duration::from_secs(3600), waits_for_fix).await;
    (db, pool, dir, c)
}

async fn claim(pool: &PgPool, after: Option<&Claimed>) -> Option<String> {
    let c = match after {
        Some(p) => queue::claim_after(pool, "w", LEASE, p).await,
        None => queue::claim(pool, "w", LEASE).await,
    };
    c.unwrap().map(|c| c.job.file_name)
}

/// The claimed (so started) job could not reach a verdict: it waits `delay`.
async fn defer(pool: &PgPool, c: &Claimed, delay: Duration, waits_for_fix: bool) {
    assert!(
        cpi::store::jobs::defer(pool, c.job.id, "w", delay, waits_for_fix, "target down")
            .await
            .unwrap()
    );
}

/// The claimed job got its verdict: imported.
async fn succeed(pool: &PgPool, c: &Claimed) {
    cpi::store::jobs::finish(
        pool,
        c.job.id,
        cpi::store::jobs::JobStatus::Succeeded,
        &Default::default(),
        None,
        None,
        None,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_job_waiting_for_its_retry_holds_its_tables_next_files() {
    let db = TestDb::new().await;
    let (pool, _dir) = queue_of(&db, &["a_1.csv", "a_2.csv"]).await;
    let first = queue::claim(&pool, "w", LEASE).await.unwrap().unwrap();
    assert_eq!(
        (first.job.file_name.as_str(), first.job.attempts),
        ("a_1.csv", 1)
    );
    defer(&pool, &first, Duration::from_secs(60), false).await;
    // The same row, queued again, not due: nobody may take a_2 meanwhile.
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM cpi_import_jobs WHERE id = $1")
            .bind(first.job.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("queued", 1));
    assert_eq!(
        claim(&pool, Some(&first)).await,
        None,
        "claim_after overtook"
    );
    assert_eq!(claim(&pool, None).await, None, "claim overtook");
    // Due: the first file comes back first, then the second.
    sqlx::query("UPDATE cpi_import_jobs SET not_before = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    let again = queue::claim(&pool, "w", LEASE).await.unwrap().unwrap();
    assert_eq!(
        (again.job.file_name.as_str(), again.job.attempts),
        ("a_1.csv", 2)
    );
    succeed(&pool, &again).await;
    assert_eq!(claim(&pool, Some(&again)).await.as_deref(), Some("a_2.csv"));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM cpi_import_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "one row per file");
}

#[tokio::test]
async fn a_configuration_fix_makes_only_waiting_jobs_due() {
    let (_db, pool, _dir, _c) = waiting_an_hour("a.csv", true).await;
    assert_eq!(claim(&pool, None).await, None);
    assert_eq!(queue::fixes_due(&pool).await.unwrap(), 1);
    assert_eq!(claim(&pool, None).await.as_deref(), Some("a.csv"));

    // A transient wait is not a configuration wait: a fix does not hurry it.
    let (_db2, pool2, _dir2, _c) = waiting_an_hour("b.csv", false).await;
    assert_eq!(queue::fixes_due(&pool2).await.unwrap(), 0);
    assert_eq!(claim(&pool2, None).await, None);
}

#[tokio::test]
async fn retry_makes_a_waiting_job_due_now() {
    let (_db, pool, _dir, c) = waiting_an_hour("a.csv", false).await;
    let by = cpi::store::queue::Actor {
        who: "test",
        reason: None,
        audit: None,
    };
    let job = cpi::controls::retry(&pool, c.job.id, false, &by)
        .await
        .unwrap()
        .job;
    assert_eq!(job.not_before, None);
    assert_eq!(claim(&pool, None).await.as_deref(), Some("a.csv"));
}

#[tokio::test]
async fn a_listing_is_queued_in_one_statement_and_files_already_queued_are_skipped() {
    let db = TestDb::new().await;
    let (pool, dir) = queue_of(&db, &["b_1.csv"]).await;
    let files = files_in(&dir, &["b_1.csv", "b_2.csv", "b_3.csv"]);
    let queued = queue::enqueue(&pool, "p", &files, "test").await.unwrap();
    let mut names: Vec<String> = queued
        .iter()
        .map(|(_, p)| p.rsplit('/').next().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["b_2.csv", "b_3.csv"], "b_1.csv was queued already");
    // Each row carries its table, mode and size from the start.
    type Row = (String, Option<String>, Option<String>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT file_name, target_table, mode, file_size FROM cpi_import_jobs ORDER BY file_name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    for (name, table, mode, size) in rows {
        assert_eq!(
            (table.as_deref(), mode.as_deref(), size),
            (Some("t"), Some("append"), Some(5)),
            "{name}"
        );
    }
    // A project that is gone queues nothing (and fails nothing).
    assert!(queue::enqueue(&pool, "gone", &files, "test")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_claim_says_whether_a_file_of_the_same_size_went_into_the_table_before() {
    let db = TestDb::new().await;
    let (pool, _dir) = queue_of(&db, &["c_1.csv", "c_2.csv"]).await;
    let first = queue::claim(&pool, "w", LEASE).await.unwrap().unwrap();
    assert!(!first.size_seen, "nothing was imported yet");
    assert!(first.target_version.is_some());
    succeed(&pool, &first).await;
    // c_2.csv has the same size (5 bytes) and table.
    let second = queue::claim_after(&pool, "w", LEASE, &first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.job.file_name, "c_2.csv");
    assert!(second.size_seen);
    assert_eq!(
        second.target_version, first.target_version,
        "no row changed"
    );
    sqlx::query("UPDATE cpi_projects SET config = '{\"x\": 1}'")
        .execute(&pool)
        .await
        .unwrap();
    let version: Option<String> = sqlx::query_scalar(
        "SELECT p.xmin::text || '/' || coalesce(n.xmin::text, '-')
           FROM cpi_projects p LEFT JOIN cpi_connections n ON n.id = p.connection_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_ne!(version, first.target_version, "an update is a new version");
}

#[tokio::test]
async fn an_object_imported_after_its_last_write_is_not_queued_again() {
    let db = TestDb::new().await;
    let (pool, _dir) = queue_of(&db, &[]).await;
    let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let object = |written| cpi::store::queue::QueuedFile {
        file: cpi::location::FileRef::parse("s3://bucket/in/o.csv#etag1").unwrap(),
        target: Some(("t".into(), cpi::config::Mode::Append)),
        written: Some(written),
        seen: None,
    };
    let queued = queue::enqueue(&pool, "p", &[object(t)], "test")
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    // Imported 2 s after its write; its move is under way.
    sqlx::query("UPDATE cpi_import_jobs SET status = 'succeeded', finished_at = $1")
        .bind(chrono::DateTime::<chrono::Utc>::from(
            t + Duration::from_secs(2),
        ))
        .execute(&pool)
        .await
        .unwrap();
    let again = |written| {
        let pool = pool.clone();
        async move {
            queue::enqueue(&pool, "p", &[object(written)], "test")
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(again(t).await, 0, "listed again while it is moved");
    // Written within the second before the import (stores round the time
    // down): not known to be the object imported, so queued (at worst a duplicate).
    assert_eq!(again(t + Duration::from_millis(1_100)).await, 1);
    sqlx::query("DELETE FROM cpi_import_jobs WHERE status = 'queued'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        again(t + Duration::from_secs(5)).await,
        1,
        "uploaded again after the import"
    );
}

/// CI saw 1,041 jobs for 1,040 objects (`s3_events::bucket_events_...`):
/// an event queued an object at once, its import finished within the
/// second of the upload, and a listing that had begun before the import
/// finished queued it again (the second job ended a duplicate). An SQS
/// message given again does the same.
#[tokio::test]
async fn regression_an_object_listed_before_its_import_finished_is_not_queued_again() {
    let db = TestDb::new().await;
    let (pool, _dir) = queue_of(&db, &[]).await;
    let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ms = Duration::from_millis;
    let object = move |seen| cpi::store::queue::QueuedFile {
        file: cpi::location::FileRef::parse("s3://bucket/in/o.csv#etag1").unwrap(),
        target: Some(("t".into(), cpi::config::Mode::Append)),
        written: Some(t),
        seen: Some(seen),
    };
    let enqueue = |seen| {
        let pool = pool.clone();
        async move {
            queue::enqueue(&pool, "p", &[object(seen)], "test")
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(enqueue(t).await, 1, "the event");
    // Imported 300 ms after the upload.
    sqlx::query("UPDATE cpi_import_jobs SET status = 'succeeded', finished_at = $1")
        .bind(chrono::DateTime::<chrono::Utc>::from(t + ms(300)))
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        enqueue(t + ms(100)).await,
        0,
        "a listing begun before the import finished"
    );
    assert_eq!(enqueue(t).await, 0, "the event given again");
    // A sighting after the import finished: the same content uploaded
    // again once the move was done, queued (it ends a duplicate).
    assert_eq!(
        enqueue(t + ms(400)).await,
        1,
        "a listing begun after the import"
    );
}

/// CI saw replica B queue an object again (it ended a duplicate) because
/// replica A's import committed while B's enqueue ran: B's snapshot saw A's
/// job still running, the running job's index entry was gone by the time B
/// inserted, and nothing said "imported".
#[tokio::test]
async fn an_object_whose_import_commits_during_the_enqueue_is_not_queued_again() {
    let db = TestDb::new().await;
    let (pool, _dir) = queue_of(&db, &[]).await;
    let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let object = move || cpi::store::queue::QueuedFile {
        file: cpi::location::FileRef::parse("s3://bucket/in/o.csv#etag1").unwrap(),
        target: Some(("t".into(), cpi::config::Mode::Append)),
        written: Some(t),
        seen: None,
    };
    assert_eq!(
        queue::enqueue(&pool, "p", &[object()], "a")
            .await
            .unwrap()
            .len(),
        1
    );
    queue::claim(&pool, "a", LEASE).await.unwrap().unwrap();
    // Replica A's verdict, not yet committed.
    let mut a = pool.begin().await.unwrap();
    sqlx::query("UPDATE cpi_import_jobs SET status = 'succeeded', finished_at = $1")
        .bind(chrono::DateTime::<chrono::Utc>::from(
            t + Duration::from_secs(2),
        ))
        .execute(&mut *a)
        .await
        .unwrap();
    let b = tokio::spawn({
        let pool = pool.clone();
        async move { queue::enqueue(&pool, "p", &[object()], "b").await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.commit().await.unwrap();
    let queued = b.await.unwrap();
    assert!(queued.is_empty(), "queued again: {queued:?}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM cpi_import_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1);
}

#[tokio::test]
async fn a_listing_larger_than_a_batch_is_queued_in_bounded_statements() {
    let db = TestDb::new().await;
    let (pool, dir) = queue_of(&db, &[]).await;
    let names: Vec<String> = (0..queue::ENQUEUE_BATCH * 2 + 5)
        .map(|i| format!("many_{i:05}.csv"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let queued = queue::enqueue(&pool, "p", &files_in(&dir, &names), "test")
        .await
        .unwrap();
    assert_eq!(queued.len(), names.len());
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cpi_import_jobs WHERE status = 'queued'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, names.len() as i64);
    // One transaction per statement: rows of one statement share an xmin.
    let statements: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM cpi_import_jobs")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        statements,
        3,
        "{} files in batches of {}",
        names.len(),
        queue::ENQUEUE_BATCH
    );
}

/// Regression (#30): once `cpi_import_jobs` was analyzed with a long
/// history and nothing active (few active rows estimated), the batch
/// claim's update was planned as a nested loop re-running the batch's
/// query for every claimable row: quadratic, 1.8 s for 1,000 files with
/// 1,000,000 finished jobs. Migration 0130 updates by primary key.
#[tokio::test]
async fn regression_a_batch_claim_after_an_analyzed_history_is_not_quadratic() {
    let db = TestDb::new().await;
    let (pool, _dir) = queue_of(&db, &[]).await;
    sqlx::query(
        "INSERT INTO cpi_import_jobs (project_id, project_name, file_name, file_path, file_size,
                target_table, mode, status, started_at, finished_at)
         SELECT p.id, p.name, 'old_' || g, '/old/old_' || g, g, 't', 'append', 'succeeded',
                now() - interval '1 day', now() - interval '1 day'
           FROM cpi_projects p, generate_series(1, 20000) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE cpi_import_jobs")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO cpi_import_jobs (project_id, project_name, file_name, file_path, file_size,
                target_table, mode, status)
         SELECT p.id, p.name, 'f_' || lpad(g::text, 5, '0'), '/in/f_' || lpad(g::text, 5, '0'),
                100, 't', 'append', 'queued'
           FROM cpi_projects p, generate_series(1, 3000) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let t = std::time::Instant::now();
    let claimed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM cpi_claim_batch('w', 30, NULL, NULL, 3000, 1::int8 << 40)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let took = t.elapsed();
    assert_eq!(claimed, 3000);
    // By primary key: well under a second here under load; the nested
    // loop took 3.2 s for 2,000 (quadratic: about 7 s for 3,000).
    assert!(
        took < Duration::from_secs(2),
        "the claim of 3,000 took {took:?}"
    );
}
