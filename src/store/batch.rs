//! Batches of the daemon's queue (issue 30, migration 0090): up to
//! [`MAX_FILES`] ready jobs of one target table claimed (and so started)
//! in one statement, their leases renewed in one, their verdicts recorded
//! in one, with the same events per job as [`jobs::finish`] writes.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::jobs::{self, verdict_events, Counts, JobError, JobStatus};
use super::queue::Claimed;

/// Files per batch at most.
pub const MAX_FILES: usize = 1000;
/// Queued bytes per batch at most; a file over it is a batch of its own.
pub const MAX_BYTES: u64 = 64 << 20;

/// The batch claim: `cpi_claim_batch` (0090), each job with what the one
/// claim reads along (see [`super::queue::CLAIM_SQL`]), in the table's
/// order. `$3`/`$4`: the table preferred (none: any); `$5`/`$6` the bounds.
pub const CLAIM_BATCH_SQL: &str = "SELECT c.*, p.config AS project_config,
       p.xmin::text || '/' || coalesce(n.xmin::text, '-') AS target_version,
       EXISTS (SELECT 1 FROM cpi_import_jobs s
                WHERE s.status IN ('succeeded', 'duplicate') AND s.project_id = c.project_id
                  AND s.target_table = c.target_table AND s.file_size = c.file_size) AS size_seen
  FROM cpi_claim_batch($1, $2, $3, $4, $5, $6) c
  LEFT JOIN cpi_projects p ON p.id = c.project_id
  LEFT JOIN cpi_connections n ON n.id = p.connection_id
 ORDER BY c.file_name, c.id";

/// Claims the next batch: the job [`super::queue::claim`] (or, with
/// `previous`, [`super::queue::claim_after`]) would take, and the jobs of
/// its table that follow it and are claimable now, within [`MAX_FILES`]
/// and [`MAX_BYTES`]. Empty when nothing is due; never waits for more.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
    previous: Option<&Claimed>,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let table = previous.and_then(|p| Some((p.job.project_id?, p.job.target_table.clone()?)));
    let (project, name) = table.unzip();
    sqlx::query_as(CLAIM_BATCH_SQL)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .bind(project)
        .bind(name)
        .bind(MAX_FILES as i32)
        .bind(MAX_BYTES as i64)
        .fetch_all(pool)
        .await
}

/// Extends the leases of the batch's jobs this worker still holds: each
/// one's id with its cancel request, if an operator made one.
pub async fn renew(
    pool: &PgPool,
    ids: &[Uuid],
    worker: &str,
    lease: Duration,
) -> Result<Vec<(Uuid, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE cpi_import_jobs SET lease_expires_at = now() + make_interval(secs => $3)
          WHERE id = ANY($1) AND worker = $2 AND status = $4
      RETURNING id, cancel_requested",
    )
    .bind(ids)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(JobStatus::Running)
    .fetch_all(pool)
    .await
}

/// One job's verdict, as [`jobs::finish`] takes it.
#[derive(Debug, Clone)]
pub struct Verdict<'a> {
    /// The job.
    pub id: Uuid,
    /// Succeeded, duplicate or failed.
    pub status: JobStatus,
    /// Rows read and written.
    pub counts: &'a Counts,
    /// Why it failed, or its notes.
    pub error: Option<&'a str>,
    /// Its row errors and checks (`error_details`).
    pub details: Option<&'a serde_json::Value>,
    /// The file's sha256, once known.
    pub sha256: Option<&'a str>,
}

/// [`jobs::finish`] for every verdict of a batch in one statement: the
/// same columns, and the same events per job (`import.failed`,
/// `import.rejected_rows`, `check.failed`, `check.warned`; none for a job
/// an operator cancelled, which has its `job.cancelled`). The statement
/// adds its jobs to the `/metrics` totals itself, once per (status,
/// duration bucket), in a transaction that tells the per-row totals
/// trigger to let them by (migration 0131: that trigger cost 0.25 ms a job).
pub async fn finish(pool: &PgPool, verdicts: &[Verdict<'_>]) -> Result<(), JobError> {
    if verdicts.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = verdicts
        .iter()
        .map(|v| {
            serde_json::json!({
                "id": v.id, "status": v.status.as_str(),
                "rows_read": v.counts.rows_read, "rows_inserted": v.counts.rows_inserted,
                "rows_updated": v.counts.rows_updated, "rows_deleted": v.counts.rows_deleted,
                "rows_rejected": v.counts.rows_rejected,
                "error": v.error.map(jobs::storable),
                "details": v.details.map(jobs::storable_json),
                "sha256": v.sha256,
            })
        })
        .collect();
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('cpi.job_totals_by_statement', 'on', true)")
        .execute(&mut *tx)
        .await?;
    // Every part of one statement sees the same snapshot: `was` reads the
    // cancel requests and the counted columns before the update changes them.
    sqlx::query(concat!(
        "WITH v AS (
             SELECT * FROM jsonb_to_recordset($1) AS v(id uuid, status text, rows_read int8,
                    rows_inserted int8, rows_updated int8, rows_deleted int8, rows_rejected int8,
                    error text, details jsonb, sha256 text)),
         was AS (
             SELECT j.id, j.cancel_requested IS NOT NULL AS cancelled, j.status, j.started_at,
                    j.finished_at, j.rows_read, j.rows_inserted, j.rows_updated, j.rows_deleted,
                    j.rows_rejected
               FROM cpi_import_jobs j JOIN v ON v.id = j.id),
         j AS (
             UPDATE cpi_import_jobs j SET status = v.status, rows_read = v.rows_read,
                    rows_inserted = v.rows_inserted, rows_updated = v.rows_updated,
                    rows_deleted = v.rows_deleted, rows_rejected = v.rows_rejected, error = v.error,
                    error_details = v.details, finished_at = now(),
                    file_sha256 = COALESCE(v.sha256, j.file_sha256), lease_expires_at = NULL,
                    cancel_requested = NULL
               FROM v
              WHERE j.id = v.id
          RETURNING j.id, j.status, j.project_name, j.target_table, j.file_name, j.rows_read,
                    j.rows_inserted, j.rows_updated, j.rows_deleted, j.rows_rejected,
                    j.started_at, j.finished_at, j.error_details),
         -- The totals (0050): each job counted in as it is now and out as
         -- it was, grouped, upserted in key order (as cpi_import_job_totals_add).
         counted AS (
             SELECT status, started_at, finished_at, rows_read, rows_inserted, rows_updated,
                    rows_deleted, rows_rejected, 1 AS sign FROM j
             UNION ALL
             SELECT status, started_at, finished_at, rows_read, rows_inserted, rows_updated,
                    rows_deleted, rows_rejected, -1 FROM was),
         totals AS (
             INSERT INTO cpi_import_job_totals AS t
             SELECT status, cpi_duration_bucket(started_at, finished_at), sum(sign),
                    coalesce(sum(sign * extract(epoch FROM finished_at - started_at)), 0),
                    coalesce(sum(sign * rows_read), 0), coalesce(sum(sign * rows_inserted), 0),
                    coalesce(sum(sign * rows_updated), 0), coalesce(sum(sign * rows_deleted), 0),
                    coalesce(sum(sign * rows_rejected), 0)
               FROM counted WHERE status IN ('succeeded', 'failed', 'duplicate')
              GROUP BY 1, 2
             HAVING sum(sign) <> 0 OR sum(sign * extract(epoch FROM finished_at - started_at)) <> 0
                 OR sum(sign * rows_read) <> 0 OR sum(sign * rows_inserted) <> 0
                 OR sum(sign * rows_updated) <> 0 OR sum(sign * rows_deleted) <> 0
                 OR sum(sign * rows_rejected) <> 0
              ORDER BY 1, 2
             ON CONFLICT (status, bucket) DO UPDATE SET
                 jobs = t.jobs + EXCLUDED.jobs,
                 seconds = t.seconds + EXCLUDED.seconds,
                 rows_read = t.rows_read + EXCLUDED.rows_read,
                 rows_inserted = t.rows_inserted + EXCLUDED.rows_inserted,
                 rows_updated = t.rows_updated + EXCLUDED.rows_updated,
                 rows_deleted = t.rows_deleted + EXCLUDED.rows_deleted,
                 rows_rejected = t.rows_rejected + EXCLUDED.rows_rejected),",
        verdict_events!()
    ))
    .bind(serde_json::Value::Array(rows))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
