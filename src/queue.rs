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

/// The claim's choice of job: the oldest queued (due) job at the head of
/// its table's queue (smallest file name) while no live job of that table
/// runs, or a running job whose lease expired (its worker died). A job
/// waiting for its retry (`not_before` in the future) is not due, but it
/// stays at the head of its table: later files of the table wait behind it.
/// The statuses are literals so that the planner can prove the partial
/// indexes' predicate (`status IN ('queued', 'running')`) with a generic
/// plan: finished jobs are never visited. Public for `EXPLAIN`.
pub const CLAIM_CANDIDATE_SQL: &str = "SELECT q.id FROM cpi_import_jobs q
  WHERE q.status IN ('queued', 'running')
    AND CASE WHEN q.status = 'queued' THEN q.not_before IS NULL OR q.not_before <= now()
             ELSE q.lease_expires_at < now() END
    AND NOT EXISTS (
        SELECT 1 FROM cpi_import_jobs r
         WHERE r.status IN ('queued', 'running')
           AND r.project_id = q.project_id AND r.target_table = q.target_table AND r.id <> q.id
           AND ((r.status = 'running' AND r.lease_expires_at >= now())
                OR (r.status = 'queued' AND r.file_name < q.file_name)))
  ORDER BY q.created_at, q.file_name
  LIMIT 1
  FOR UPDATE SKIP LOCKED";

/// The next job of one table (`$1` project id, `$2` table) for the worker
/// that just finished its previous one: the head of that table's queue,
/// when it is due and no other live job of the table runs. The head is the
/// smallest file name among all queued jobs of the table, due or not: a
/// file waiting for its retry is never overtaken. Public for `EXPLAIN`.
pub const NEXT_OF_TABLE_SQL: &str = "SELECT q.id FROM cpi_import_jobs q
  WHERE q.status = 'queued' AND q.project_id = $1 AND q.target_table = $2
    AND (q.not_before IS NULL OR q.not_before <= now())
    AND NOT EXISTS (
        SELECT 1 FROM cpi_import_jobs r
         WHERE r.status IN ('queued', 'running') AND r.project_id = $1 AND r.target_table = $2
           AND r.id <> q.id
           AND ((r.status = 'running' AND r.lease_expires_at >= now())
                OR (r.status = 'queued' AND r.file_name < q.file_name)))
  ORDER BY q.file_name
  LIMIT 1
  FOR UPDATE SKIP LOCKED";

/// A job a worker just claimed, already started: the claim did what
/// [`jobs::start`] does (`attempts` + 1, `started_at`, results cleared), in
/// the same statement.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// The job's row as the claim left it (`running`, this worker's).
    #[sqlx(flatten)]
    pub job: jobs::Job,
    /// Its project's config as the claim read it (`None`: the project is gone).
    pub project_config: Option<serde_json::Value>,
}

/// Takes the next job: queued, or running with an expired lease (its
/// worker died). Per target table, one job at a time and the smallest
/// file name first.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
) -> Result<Option<Claimed>, sqlx::Error> {
    claim_with(pool, worker, lease, CLAIM_CANDIDATE_SQL, None).await
}

/// [`claim`], preferring the next job of the table of `previous` (a job
/// this worker just finished): a table's files then follow each other on
/// one worker with no wait, and other workers take other tables.
pub async fn claim_after(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
    previous: &Claimed,
) -> Result<Option<Claimed>, sqlx::Error> {
    let previous = &previous.job;
    if let (Some(project), Some(table)) = (previous.project_id, previous.target_table.as_deref()) {
        let next = claim_with(
            pool,
            worker,
            lease,
            NEXT_OF_TABLE_SQL,
            Some((project, table)),
        )
        .await?;
        if next.is_some() {
            return Ok(next);
        }
    }
    claim(pool, worker, lease).await
}

async fn claim_with(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
    candidate: &str,
    table: Option<(Uuid, &str)>,
) -> Result<Option<Claimed>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CLAIM_LOCK)
        .execute(&mut *tx)
        .await?;
    // The candidate's own parameters are $1/$2; the update's follow.
    // Claimed and started in one statement: one commit less per file.
    let sql = format!(
        "UPDATE cpi_import_jobs j
            SET status = 'running', worker = $3, lease_expires_at = now() + make_interval(secs => $4),
                attempts = attempts + 1, started_at = now(), finished_at = NULL, error = NULL,
                error_details = NULL, not_before = NULL, waits_for_fix = false, rows_read = 0,
                rows_inserted = 0, rows_updated = 0, rows_deleted = 0, rows_rejected = 0
          WHERE j.id = ({candidate})
          RETURNING {},
                    (SELECT p.config FROM cpi_projects p WHERE p.id = j.project_id) AS project_config",
        jobs::JOB_COLUMNS
    );
    let (project, name) = table.unzip();
    let claimed: Option<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(project)
        .bind(name)
        .bind(worker)
        .bind(lease.as_secs_f64())
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

/// A project or connection changed (a reconcile or an API write): the jobs
/// waiting for a configuration fix are due now rather than at their slow
/// re-check. How many were made due.
pub async fn fixes_due(pool: &PgPool) -> Result<u64, sqlx::Error> {
    // The status literals let the planner use the active-jobs indexes.
    let r = sqlx::query(
        "UPDATE cpi_import_jobs SET not_before = now()
          WHERE status IN ('queued', 'running') AND status = 'queued' AND waits_for_fix
            AND not_before > now()",
    )
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
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
