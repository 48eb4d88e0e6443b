//! The queue's state machine on `cpi_import_jobs`, driven directly
//! (`queue::claim`, `claim_after`, `jobs::defer`, `queue::fixes_due`) on a
//! migrated test database: the decisions the daemon's workers rely on.

use std::path::PathBuf;
use std::time::Duration;

use cpi::queue::{self, Claimed};
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
    for f in files {
        let path: PathBuf = dir.path().join(f);
        std::fs::write(&path, "id\n1\n").unwrap();
        queue::enqueue(&pool, "p", &path, "test", Some("t"), Some("append"))
            .await
            .unwrap()
            .unwrap();
    }
    (pool, dir)
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
        cpi::jobs::defer(pool, c.job.id, "w", delay, waits_for_fix, "target down")
            .await
            .unwrap()
    );
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
    cpi::jobs::finish(
        &pool,
        again.job.id,
        cpi::jobs::JobStatus::Succeeded,
        &Default::default(),
        None,
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(claim(&pool, Some(&again)).await.as_deref(), Some("a_2.csv"));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM cpi_import_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "one row per file");
}

#[tokio::test]
async fn a_configuration_fix_makes_only_waiting_jobs_due() {
    let db = TestDb::new().await;
    let (pool, _dir) = queue_of(&db, &["a.csv"]).await;
    let c = queue::claim(&pool, "w", LEASE).await.unwrap().unwrap();
    defer(&pool, &c, Duration::from_secs(3600), true).await;
    assert_eq!(claim(&pool, None).await, None);
    assert_eq!(queue::fixes_due(&pool).await.unwrap(), 1);
    assert_eq!(claim(&pool, None).await.as_deref(), Some("a.csv"));

    // A transient wait is not a configuration wait: a fix does not hurry it.
    let db2 = TestDb::new().await;
    let (pool2, _dir2) = queue_of(&db2, &["b.csv"]).await;
    let c = queue::claim(&pool2, "w", LEASE).await.unwrap().unwrap();
    defer(&pool2, &c, Duration::from_secs(3600), false).await;
    assert_eq!(queue::fixes_due(&pool2).await.unwrap(), 0);
    assert_eq!(claim(&pool2, None).await, None);
}

#[tokio::test]
async fn retry_makes_a_waiting_job_due_now() {
    let db = TestDb::new().await;
    let (pool, _dir) = queue_of(&db, &["a.csv"]).await;
    let c = queue::claim(&pool, "w", LEASE).await.unwrap().unwrap();
    defer(&pool, &c, Duration::from_secs(3600), false).await;
    let job = cpi::jobs::requeue(&pool, c.job.id, false).await.unwrap();
    assert_eq!(job.not_before, None);
    assert_eq!(claim(&pool, None).await.as_deref(), Some("a.csv"));
}
