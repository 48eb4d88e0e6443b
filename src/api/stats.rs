//! `/stats/imports`: import statistics per hour, read from `cpi_import_jobs`,
//! for the console's charts. Counts and durations only: open without a token.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::state::AppState;
use crate::store;

pub use crate::store::HourBucket;

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
    auth: super::auth::Authorization,
    State(state): State<AppState>,
    QueryParams(q): QueryParams<StatsQuery>,
) -> Result<Json<ImportStats>, ApiError> {
    let days = days(q.days)?;
    // A caller bound to some projects counts their jobs only.
    let among = auth.readable_projects(&state.pool).await?;
    let buckets = store::hourly_imports(&state.pool, days, among.as_deref()).await?;
    let now = store::queue_now(&state.pool, among.as_deref()).await?;
    Ok(Json(ImportStats {
        days,
        bucket_seconds: 3600,
        buckets,
        queued: now.queued,
        running: now.running,
        failed_last_24h: now.failed_last_24h,
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
