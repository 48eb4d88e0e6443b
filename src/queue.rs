//! The daemon's job queue on `cpi_import_jobs`: enqueue a ready file once,
//! claim with `FOR UPDATE SKIP LOCKED` under a lease that the worker renews,
//! and take over a job whose worker died (lease expired).

use std::path::Path;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::jobs::{self, JobError, JobStatus};

/// Serializes claims across workers and replicas, so that "the oldest file
/// of a table not already running" is decided on committed state.
const CLAIM_LOCK: i64 = 0x0063_7069_5f71_7565; // "cpi_que"

/// Queues `path` for `project`; `None` when a queued or running job for
/// the same path exists already (another replica, or an earlier scan).
pub async fn enqueue(
    pool: &PgPool,
    project: &str,
    path: &Path,
    worker: &str,
    target_table: Option<&str>,
    mode: Option<&str>,
) -> Result<Option<Uuid>, JobError> {
    let target = target_table.zip(mode);
    match jobs::create_for(pool, project, path, worker, target).await {
        Ok(id) => Ok(Some(id)),
        Err(JobError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A job a worker just claimed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// The job.
    pub id: Uuid,
    /// Its project.
    pub project_name: String,
    /// The file's name.
    pub file_name: String,
    /// The file's absolute path.
    pub file_path: String,
    /// Runs so far, this claim included.
    pub attempts: i32,
}

/// Takes the next job: queued, or running with an expired lease (its
/// worker died). Per target table, one job at a time and the smallest
/// file name first.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
) -> Result<Option<Claimed>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CLAIM_LOCK)
        .execute(&mut *tx)
        .await?;
    let claimed: Option<Claimed> = sqlx::query_as(
        "UPDATE cpi_import_jobs j
            SET status = $3, worker = $1, lease_expires_at = now() + make_interval(secs => $2)
          WHERE j.id = (
              SELECT q.id FROM cpi_import_jobs q
               WHERE (q.status = $4 OR (q.status = $3 AND q.lease_expires_at < now()))
                 AND NOT EXISTS (
                     SELECT 1 FROM cpi_import_jobs r
                      WHERE r.id <> q.id AND r.project_id = q.project_id AND r.target_table = q.target_table
                        AND ((r.status = $3 AND r.lease_expires_at >= now())
                             OR (r.status = $4 AND r.file_name < q.file_name)))
               ORDER BY q.created_at, q.file_name
               LIMIT 1
               FOR UPDATE SKIP LOCKED)
          RETURNING j.id, j.project_name, j.file_name, j.file_path, j.attempts",
    )
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(JobStatus::Running)
    .bind(JobStatus::Queued)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// Extends the lease of a job this worker holds; `false` when it lost it.
pub async fn renew(
    pool: &PgPool,
    id: Uuid,
    worker: &str,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE cpi_import_jobs SET lease_expires_at = now() + make_interval(secs => $3)
          WHERE id = $1 AND worker = $2 AND status = $4",
    )
    .bind(id)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(JobStatus::Running)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Puts a job this worker abandoned (shutdown timeout) back in the queue.
pub async fn requeue(pool: &PgPool, id: Uuid, worker: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE cpi_import_jobs SET status = $3, lease_expires_at = NULL
          WHERE id = $1 AND worker = $2 AND status = $4",
    )
    .bind(id)
    .bind(worker)
    .bind(JobStatus::Queued)
    .bind(JobStatus::Running)
    .execute(pool)
    .await?;
    Ok(())
}

/// Queued jobs, for the metrics and the logs.
pub async fn depth(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM cpi_import_jobs WHERE status = $1")
        .bind(JobStatus::Queued)
        .fetch_one(pool)
        .await?;
    Ok(n)
}

/// Ends a job whose file is gone before it could be read. Replicas race
/// here: one imports and moves a file while another, having listed it a
/// moment before, queues it again. When a job for the same path already
/// imported it, this one is a `duplicate`; otherwise the file vanished.
pub async fn settle_vanished(
    pool: &PgPool,
    id: Uuid,
    file_path: &str,
) -> Result<JobStatus, sqlx::Error> {
    let (status,): (JobStatus,) = sqlx::query_as(
        "WITH earlier AS (
             SELECT id FROM cpi_import_jobs
              WHERE file_path = $2 AND id <> $1 AND status IN ($3, $4)
              ORDER BY finished_at DESC NULLS LAST LIMIT 1)
         UPDATE cpi_import_jobs j
            SET status = CASE WHEN e.id IS NULL THEN $5 ELSE $4 END,
                error = CASE WHEN e.id IS NULL THEN 'the file no longer exists'
                             ELSE 'already imported by job ' || e.id || ', which moved the file' END,
                finished_at = now(), lease_expires_at = NULL
           FROM (SELECT (SELECT id FROM earlier) AS id) e
          WHERE j.id = $1
          RETURNING j.status",
    )
    .bind(id)
    .bind(file_path)
    .bind(JobStatus::Succeeded)
    .bind(JobStatus::Duplicate)
    .bind(JobStatus::Failed)
    .fetch_one(pool)
    .await?;
    Ok(status)
}
