//! `/stats/imports`: import statistics per hour, read from `cpi_import_jobs`,
//! for the console's charts. Counts and durations only: open without a token.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::{AppState, QueryParams};
use crate::jobs::JobStatus;

const DEFAULT_DAYS: u32 = 7;
const MAX_DAYS: u32 = 90;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// How many days back from now (default 7, at most 90).
    #[param(minimum = 1, maximum = 90)]
    pub days: Option<u32>,
}

/// The jobs that finished in one hour.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, ToSchema)]
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

/// Import statistics: one bucket per hour (oldest first, empty hours
/// included) and the queue as it is now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportStats {
    /// Days covered.
    pub days: u32,
    /// Seconds per bucket (always 3600).
    pub bucket_seconds: u32,
    pub buckets: Vec<HourBucket>,
    /// Jobs waiting for a worker now.
    pub queued: i64,
    /// Jobs running now.
    pub running: i64,
    /// Jobs that failed in the last 24 hours.
    pub failed_last_24h: i64,
}

/// Checks `days`: 1 to [`MAX_DAYS`], [`DEFAULT_DAYS`] when left out.
fn days(asked: Option<u32>) -> Result<u32, ApiError> {
    match asked.unwrap_or(DEFAULT_DAYS) {
        d @ 1..=MAX_DAYS => Ok(d),
        d => Err(ApiError::invalid(format!(
            "days: from 1 to {MAX_DAYS}, got {d}"
        ))),
    }
}

#[utoipa::path(
    get, path = "/stats/imports", operation_id = "import_stats", tag = "jobs",
    params(StatsQuery),
    responses(
        (status = 200, description = "Files, rows, failures and durations per hour", body = ImportStats),
        (status = 400, description = "Malformed query (days out of range, …)", body = ErrorBody),
    )
)]
pub async fn imports(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<StatsQuery>,
) -> Result<Json<ImportStats>, ApiError> {
    let days = days(q.days)?;
    // Hours with no job are kept (generate_series), so a chart's x axis is
    // time, not "hours that had work".
    let buckets: Vec<HourBucket> = sqlx::query_as(
        "WITH hours AS (
             SELECT generate_series(date_trunc('hour', now()) - make_interval(hours => $1 * 24 - 1),
                                    date_trunc('hour', now()), interval '1 hour') AS hour
         ), done AS (
             SELECT date_trunc('hour', finished_at) AS hour, status,
                    rows_inserted + rows_updated + rows_deleted AS rows,
                    extract(epoch FROM finished_at - coalesce(started_at, finished_at))::float8 AS secs
               FROM cpi_import_jobs
              WHERE finished_at >= date_trunc('hour', now()) - make_interval(hours => $1 * 24 - 1)
         )
         SELECT h.hour,
                count(d.status) AS files,
                count(*) FILTER (WHERE d.status = $2) AS succeeded,
                count(*) FILTER (WHERE d.status = $3) AS failed,
                count(*) FILTER (WHERE d.status = $4) AS duplicate,
                coalesce(sum(d.rows) FILTER (WHERE d.status = $2), 0)::bigint AS rows,
                coalesce(avg(d.secs), 0)::float8 AS duration_avg_seconds,
                coalesce(max(d.secs), 0)::float8 AS duration_max_seconds
           FROM hours h LEFT JOIN done d ON d.hour = h.hour
          GROUP BY h.hour ORDER BY h.hour",
    )
    .bind(days as i32)
    .bind(JobStatus::Succeeded)
    .bind(JobStatus::Failed)
    .bind(JobStatus::Duplicate)
    .fetch_all(&state.pool)
    .await?;
    let (queued, running, failed_last_24h): (i64, i64, i64) = sqlx::query_as(
        // Three indexed counts, not one pass over the whole history.
        "SELECT (SELECT count(*) FROM cpi_import_jobs WHERE status = $1),
                (SELECT count(*) FROM cpi_import_jobs WHERE status = $2),
                (SELECT count(*) FROM cpi_import_jobs
                  WHERE status = $3 AND finished_at >= now() - interval '24 hours')",
    )
    .bind(JobStatus::Queued)
    .bind(JobStatus::Running)
    .bind(JobStatus::Failed)
    .fetch_one(&state.pool)
    .await?;
    Ok(Json(ImportStats {
        days,
        bucket_seconds: 3600,
        buckets,
        queued,
        running,
        failed_last_24h,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_default_and_range() {
        assert_eq!(days(None).unwrap(), DEFAULT_DAYS);
        assert_eq!(days(Some(1)).unwrap(), 1);
        assert_eq!(days(Some(90)).unwrap(), 90);
        assert!(days(Some(0)).is_err());
        assert!(days(Some(91)).is_err());
    }
}
