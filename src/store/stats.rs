//! Statistics read from the tables at request time: the console's import
//! charts (`/stats/imports`) and the numbers behind `/metrics`.
//!
//! Job statuses are spelled in the SQL as `cpi_import_jobs.status` holds
//! them (the jobs module's `JobStatus`, which sits above this one); the
//! counts by status come back as that text.

use sqlx::{PgExecutor, PgPool};

use super::error::Result;
use super::runs::ReconcileStatus;

/// The jobs that finished in one hour.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct HourBucket {
    /// The start of the hour (UTC).
    pub hour: chrono::DateTime<chrono::Utc>,
    /// Jobs that finished in it (any status).
    pub files: i64,
    /// Of which succeeded.
    pub succeeded: i64,
    /// Of which failed.
    pub failed: i64,
    /// Of which were duplicates.
    pub duplicate: i64,
    /// Rows written by the succeeded jobs (inserted + updated + deleted).
    pub rows: i64,
    /// Mean run time of its jobs, in seconds (0 without jobs).
    pub duration_avg_seconds: f64,
    /// Longest run time of its jobs, in seconds (0 without jobs).
    pub duration_max_seconds: f64,
}

/// One bucket per hour of the last `days` days, oldest first, the current
/// hour last; of the jobs of `among`'s projects only, when given.
pub async fn hourly_imports(
    db: impl PgExecutor<'_>,
    days: u32,
    among: Option<&[String]>,
) -> Result<Vec<HourBucket>> {
    // Hours with no job are kept (generate_series), so a chart's x axis is
    // time, not "hours that had work".
    Ok(sqlx::query_as(
        "WITH hours AS (
             SELECT generate_series(date_trunc('hour', now()) - make_interval(hours => $1 * 24 - 1),
                                    date_trunc('hour', now()), interval '1 hour') AS hour
         ), done AS (
             SELECT date_trunc('hour', finished_at) AS hour, status,
                    rows_inserted + rows_updated + rows_deleted AS rows,
                    extract(epoch FROM finished_at - coalesce(started_at, finished_at))::float8 AS secs
               FROM cpi_import_jobs
              WHERE finished_at >= date_trunc('hour', now()) - make_interval(hours => $1 * 24 - 1)
                AND ($2::text[] IS NULL OR project_name = ANY($2))
         )
         SELECT h.hour,
                count(d.status) AS files,
                count(*) FILTER (WHERE d.status = 'succeeded') AS succeeded,
                count(*) FILTER (WHERE d.status = 'failed') AS failed,
                count(*) FILTER (WHERE d.status = 'duplicate') AS duplicate,
                coalesce(sum(d.rows) FILTER (WHERE d.status = 'succeeded'), 0)::bigint AS rows,
                coalesce(avg(d.secs), 0)::float8 AS duration_avg_seconds,
                coalesce(max(d.secs), 0)::float8 AS duration_max_seconds
           FROM hours h LEFT JOIN done d ON d.hour = h.hour
          GROUP BY h.hour ORDER BY h.hour",
    )
    .bind(days as i32)
    .bind(among)
    .fetch_all(db)
    .await?)
}

/// The queue as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct QueueNow {
    /// Jobs waiting for a worker.
    pub queued: i64,
    /// Jobs running.
    pub running: i64,
    /// Jobs that failed in the last 24 hours.
    pub failed_last_24h: i64,
}

/// The queue now; of `among`'s projects only, when given.
pub async fn queue_now(db: impl PgExecutor<'_>, among: Option<&[String]>) -> Result<QueueNow> {
    Ok(sqlx::query_as(
        // Three indexed counts, not one pass over the whole history.
        "SELECT (SELECT count(*) FROM cpi_import_jobs WHERE status = 'queued'
                    AND ($1::text[] IS NULL OR project_name = ANY($1))) AS queued,
                (SELECT count(*) FROM cpi_import_jobs WHERE status = 'running'
                    AND ($1::text[] IS NULL OR project_name = ANY($1))) AS running,
                (SELECT count(*) FROM cpi_import_jobs
                  WHERE status = 'failed' AND finished_at >= now() - interval '24 hours'
                    AND ($1::text[] IS NULL OR project_name = ANY($1))) AS failed_last_24h",
    )
    .bind(among)
    .fetch_one(db)
    .await?)
}

/// Recorded reconcile runs that ended one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct RunCount {
    /// How they ended.
    pub status: ReconcileStatus,
    /// How many.
    pub runs: i64,
    /// Their drift corrections.
    pub drifted: i64,
}

/// Connections or projects of one owner.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ObjectCount {
    /// `connection` or `project`.
    pub kind: String,
    /// The owner (`""`: not managed by any reconciler).
    pub managed_by: String,
    /// How many.
    pub objects: i64,
}

/// Import jobs of one status.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobCount {
    /// The status as the column spells it.
    pub status: String,
    /// How many.
    pub jobs: i64,
}

/// Run times of the finished (succeeded or failed) import jobs.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DurationTotals {
    /// The bucket bounds in seconds, defined once in SQL (`cpi_duration_bounds`).
    pub bounds: Vec<f64>,
    /// Jobs per bucket: bucket i holds those of (bound i-1, bound i], the
    /// last one those above the last bound.
    pub per_bucket: Vec<i64>,
    /// Their seconds, summed.
    pub seconds: f64,
}

/// Everything `/metrics` reads from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseStats {
    /// Reconcile runs by status (statuses without runs left out).
    pub runs: Vec<RunCount>,
    /// When the last successful reconcile finished (Unix time), if any did.
    pub last_success: Option<f64>,
    /// Connections and projects by owner.
    pub objects: Vec<ObjectCount>,
    /// Import jobs by status (statuses without jobs left out).
    pub jobs: Vec<JobCount>,
    /// Rows of the succeeded jobs by outcome: read, inserted, updated,
    /// deleted, rejected (as the `rows_*` columns name them).
    pub rows: [(&'static str, i64); 5],
    /// Run times of the finished jobs.
    pub durations: DurationTotals,
}

/// The numbers of `/metrics`, in a handful of small queries.
pub async fn database_stats(pool: &PgPool) -> Result<DatabaseStats> {
    let runs = sqlx::query_as(
        "SELECT status, count(*) AS runs, coalesce(sum(drifted), 0)::bigint AS drifted
           FROM cpi_reconcile_runs GROUP BY status",
    )
    .fetch_all(pool)
    .await?;
    let (last_success,): (Option<f64>,) = sqlx::query_as(
        "SELECT extract(epoch FROM max(finished_at))::float8 FROM cpi_reconcile_runs WHERE status = $1",
    )
    .bind(ReconcileStatus::Succeeded)
    .fetch_one(pool)
    .await?;
    let objects = sqlx::query_as(
        "SELECT 'connection' AS kind, coalesce(managed_by, '') AS managed_by, count(*) AS objects FROM cpi_connections GROUP BY 2
         UNION ALL
         SELECT 'project', coalesce(managed_by, ''), count(*) FROM cpi_projects GROUP BY 2
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    // Active jobs are counted through the status index; finished ones come
    // from cpi_import_job_totals, kept by triggers (migration 0050), so a
    // scrape never scans the history.
    let jobs = sqlx::query_as(
        "SELECT status, count(*) AS jobs FROM cpi_import_jobs WHERE status IN ('queued', 'running') GROUP BY status
         UNION ALL
         SELECT status, sum(jobs)::bigint FROM cpi_import_job_totals GROUP BY status",
    )
    .fetch_all(pool)
    .await?;
    let (read, inserted, updated, deleted, rejected) = sqlx::query_as(
        "SELECT coalesce(sum(rows_read), 0)::bigint, coalesce(sum(rows_inserted), 0)::bigint,
                coalesce(sum(rows_updated), 0)::bigint, coalesce(sum(rows_deleted), 0)::bigint,
                coalesce(sum(rows_rejected), 0)::bigint
           FROM cpi_import_job_totals WHERE status = 'succeeded'",
    )
    .fetch_one(pool)
    .await?;
    let rows = [
        ("read", read),
        ("inserted", inserted),
        ("updated", updated),
        ("deleted", deleted),
        ("rejected", rejected),
    ];
    let durations = sqlx::query_as(
        "SELECT cpi_duration_bounds() AS bounds,
                ARRAY(SELECT coalesce(sum(t.jobs), 0)::bigint
                        FROM generate_series(0, cardinality(cpi_duration_bounds())) AS b(i)
                        LEFT JOIN cpi_import_job_totals t ON t.bucket = b.i AND t.status IN ('succeeded', 'failed')
                       GROUP BY b.i ORDER BY b.i) AS per_bucket,
                (SELECT coalesce(sum(seconds), 0)::float8 FROM cpi_import_job_totals
                  WHERE status IN ('succeeded', 'failed') AND bucket >= 0) AS seconds",
    )
    .fetch_one(pool)
    .await?;
    Ok(DatabaseStats {
        runs,
        last_success,
        objects,
        jobs,
        rows,
        durations,
    })
}
