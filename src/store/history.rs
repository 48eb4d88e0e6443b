//! Retention of `cpi_import_jobs`: the one statement on the jobs table
//! that belongs to neither the jobs' life cycle nor the queue (the `jobs`
//! and `queue` modules). The reconcile runs' is [`delete_old_runs`](super::runs::delete_old_runs).

use std::time::Duration;

use sqlx::PgExecutor;

use super::error::Result;

/// Deletes the finished jobs (succeeded, failed, duplicate) that ended more
/// than `age` ago; how many. Queued and running jobs stay.
pub async fn delete_finished_jobs(db: impl PgExecutor<'_>, age: Duration) -> Result<u64> {
    super::lookup::delete_older_than(
        db,
        "DELETE FROM cpi_import_jobs
          WHERE status IN ('succeeded', 'failed', 'duplicate')
            AND coalesce(finished_at, created_at) < now() - make_interval(secs => $1)",
        age,
    )
    .await
}
