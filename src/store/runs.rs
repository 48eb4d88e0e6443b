//! `cpi_reconcile_runs`: the audit trail of reconciles. The apply records
//! each run (under the reconcile lock), the API pages through them, the
//! retention deletes old ones.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::Result;
use crate::plan::Counts;

/// The outcome of one reconcile, as `cpi_reconcile_runs.status` (TEXT)
/// spells it; bound and read as this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ReconcileStatus {
    /// Applied (or nothing to do).
    Succeeded,
    /// Could not load, plan or write: nothing changed.
    Failed,
    /// Refused by a guard (conflicts, delete limit): nothing changed.
    Refused,
}

impl ReconcileStatus {
    /// Every status, in the order the metrics list them.
    pub const ALL: [ReconcileStatus; 3] = [
        ReconcileStatus::Succeeded,
        ReconcileStatus::Failed,
        ReconcileStatus::Refused,
    ];

    /// The status as the column spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileStatus::Succeeded => "succeeded",
            ReconcileStatus::Failed => "failed",
            ReconcileStatus::Refused => "refused",
        }
    }
}

/// What started a reconcile, as cpi writes `cpi_reconcile_runs.trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ReconcileTrigger {
    /// `cpi apply`.
    Cli,
    /// The daemon's first reconcile.
    Startup,
    /// A file event on the manifests or a secret file.
    Watch,
    /// The backoff after a failed reconcile.
    Retry,
    /// The daemon's timer.
    Interval,
    /// A signed push to a Receiver (`POST /hooks/{receiver}`).
    Hook,
}

impl ReconcileTrigger {
    /// Every trigger.
    pub const ALL: [ReconcileTrigger; 6] = [
        ReconcileTrigger::Cli,
        ReconcileTrigger::Startup,
        ReconcileTrigger::Watch,
        ReconcileTrigger::Retry,
        ReconcileTrigger::Interval,
        ReconcileTrigger::Hook,
    ];

    /// The trigger as the column (and the logs) spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileTrigger::Cli => "cli",
            ReconcileTrigger::Startup => "startup",
            ReconcileTrigger::Watch => "watch",
            ReconcileTrigger::Retry => "retry",
            ReconcileTrigger::Interval => "interval",
            ReconcileTrigger::Hook => "hook",
        }
    }
}

/// One key for every reconciler on a database: two owners sharing a
/// database still serialize, which keeps the audit trail linear.
const RECONCILE_LOCK: i64 = 0x0063_7069_5f72_6563; // "cpi_rec"

/// Waits for the reconcile lock (held until the transaction ends); when it
/// was granted, the run's `started_at`.
pub async fn lock_reconcile(tx: &mut PgConnection) -> Result<DateTime<Utc>> {
    // The time the lock was granted, not when the transaction began: run
    // intervals of concurrent reconcilers never overlap.
    let (started,): (DateTime<Utc>,) = sqlx::query_as(
        "SELECT clock_timestamp() FROM (SELECT pg_advisory_xact_lock($1)) AS locked",
    )
    .bind(RECONCILE_LOCK)
    .fetch_one(tx)
    .await?;
    Ok(started)
}

/// A run to record; it finishes when it is recorded.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    /// The reconciler's owner name.
    pub owner: &'a str,
    /// What started it.
    pub trigger: ReconcileTrigger,
    /// The manifests' git revision, when known.
    pub revision: Option<&'a str>,
    /// How it ended.
    pub status: ReconcileStatus,
    /// What it changed (or would have).
    pub counts: &'a Counts,
    /// The plan as text, secrets redacted.
    pub diff: &'a str,
    /// Why it failed or was refused.
    pub error: Option<&'a str>,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// Records a run; its id.
pub async fn insert_run(db: impl PgExecutor<'_>, run: &NewRun<'_>) -> Result<Uuid> {
    let c = run.counts;
    // A failed or refused reconcile, or drift put right, is an event
    // (`cpi_events`), and every recorded run an audit row (`cpi_audit`,
    // actor `manifests@<revision>`), written by the same statement. The
    // payload has counts only: the error may name a file of the manifests,
    // never a secret, but it stays on the run.
    let (id,): (Uuid,) = sqlx::query_as(
        "WITH r AS (
             INSERT INTO cpi_reconcile_runs (owner, trigger, revision, status, created, updated, deleted, drifted, diff, error, started_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, clock_timestamp())
          RETURNING id, owner, revision, status, drifted),
         e AS (
             INSERT INTO cpi_events (kind, severity, run_id, payload)
             SELECT CASE WHEN r.status = 'succeeded' THEN 'drift.corrected' ELSE 'reconcile.failed' END,
                    CASE WHEN r.status = 'succeeded' THEN 'warn' ELSE 'error' END,
                    r.id,
                    jsonb_build_object('owner', r.owner, 'revision', r.revision, 'drifted', r.drifted,
                                       'status', r.status)
               FROM r
              WHERE r.status IN ('failed', 'refused') OR (r.status = 'succeeded' AND r.drifted > 0)),
         a AS (
             INSERT INTO cpi_audit (actor, action, target, outcome)
             SELECT 'manifests@' || coalesce(r.revision, 'unknown'), 'reconcile (' || $2::text || ')',
                    r.owner, r.status
               FROM r)
         SELECT id FROM r",
    )
    .bind(run.owner)
    .bind(run.trigger)
    .bind(run.revision)
    .bind(run.status)
    .bind(c.create as i32)
    .bind(c.update as i32)
    .bind(c.delete as i32)
    .bind(c.drift as i32)
    .bind(run.diff)
    .bind(run.error)
    .bind(run.started_at)
    .fetch_one(db)
    .await?;
    Ok(id)
}

/// Moves the `finished_at` of the latest run to now when it is a no-op of
/// the same owner and revision (succeeded, nothing changed or drifted);
/// its id, or `None` when the latest run is anything else.
pub async fn extend_noop_run(
    db: impl PgExecutor<'_>,
    owner: &str,
    revision: Option<&str>,
) -> Result<Option<Uuid>> {
    let id: Option<(Uuid,)> = sqlx::query_as(
        "UPDATE cpi_reconcile_runs SET finished_at = clock_timestamp()
          WHERE id = (SELECT id FROM cpi_reconcile_runs ORDER BY started_at DESC LIMIT 1)
            AND owner = $1 AND revision IS NOT DISTINCT FROM $2 AND status = 'succeeded'
            AND created = 0 AND updated = 0 AND deleted = 0 AND drifted = 0
          RETURNING id",
    )
    .bind(owner)
    .bind(revision)
    .fetch_optional(db)
    .await?;
    Ok(id.map(|r| r.0))
}

/// Extends the last run instead of recording another when it was the same
/// owner's with the same status and error (a reconcile that keeps being
/// refused, or failing, the same way): one row, and one event, per distinct
/// error, its `finished_at` the last time it was seen.
pub async fn extend_repeated_run(
    db: impl PgExecutor<'_>,
    owner: &str,
    status: ReconcileStatus,
    error: &str,
) -> Result<Option<Uuid>> {
    let id: Option<(Uuid,)> = sqlx::query_as(
        "UPDATE cpi_reconcile_runs SET finished_at = clock_timestamp()
          WHERE id = (SELECT id FROM cpi_reconcile_runs ORDER BY started_at DESC LIMIT 1)
            AND owner = $1 AND status = $2 AND error = $3
          RETURNING id",
    )
    .bind(owner)
    .bind(status)
    .bind(error)
    .fetch_optional(db)
    .await?;
    Ok(id.map(|r| r.0))
}

/// One `cpi_reconcile_runs` row, without its diff.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
pub struct ReconcileRun {
    /// The run's id.
    pub id: Uuid,
    /// The reconciler's owner name (`managed_by` of the rows it writes).
    pub owner: String,
    /// What started it (`daemon`, `cli`, …).
    // Text, not a `ReconcileTrigger`: rows written by other versions or
    // by hand are listed too.
    pub trigger: String,
    /// The manifests' git revision, when known.
    pub revision: Option<String>,
    /// How it ended.
    pub status: ReconcileStatus,
    /// Objects created.
    pub created: i32,
    /// Objects updated.
    pub updated: i32,
    /// Objects deleted.
    pub deleted: i32,
    /// Objects changed behind cpi's back and set back (drift corrections).
    pub drifted: i32,
    /// Why it failed or was refused, secrets masked.
    pub error: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which runs [`run_page`] returns.
#[derive(Debug, Clone, Copy)]
pub struct RunFilter {
    /// Only runs that ended so.
    pub status: Option<ReconcileStatus>,
    /// At most this many.
    pub limit: i64,
    /// After skipping this many.
    pub offset: i64,
}

/// A page of runs, newest first, with totals across all pages.
#[derive(Debug, Clone)]
pub struct RunPage {
    /// The runs of the page.
    pub runs: Vec<ReconcileRun>,
    /// Runs matching the status filter.
    pub total: i64,
    /// Drift corrections of the succeeded runs matching the filter.
    pub drifted_total: i64,
}

const COLUMNS: &str = "id, owner, trigger, revision, status, created, updated, deleted, drifted, error, started_at, finished_at";
const FILTER: &str = "($1::text IS NULL OR status = $1)";

/// The runs `filter` selects, newest first.
pub async fn run_page(db: &sqlx::PgPool, filter: &RunFilter) -> Result<RunPage> {
    let (total, drifted_total): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), coalesce(sum(drifted) FILTER (WHERE status = 'succeeded'), 0)::bigint
           FROM cpi_reconcile_runs WHERE {FILTER}"
    )))
    .bind(filter.status)
    .fetch_one(db)
    .await?;
    let runs = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM cpi_reconcile_runs WHERE {FILTER}
          ORDER BY started_at DESC, id LIMIT $2 OFFSET $3"
    )))
    .bind(filter.status)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(db)
    .await?;
    Ok(RunPage {
        runs,
        total,
        drifted_total,
    })
}

/// The run with this id and its diff, if any.
pub async fn run_by_id(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<(ReconcileRun, String)>> {
    #[derive(sqlx::FromRow)]
    struct WithDiff {
        #[sqlx(flatten)]
        run: ReconcileRun,
        diff: String,
    }
    let sql = format!("SELECT {COLUMNS}, diff FROM cpi_reconcile_runs WHERE id = $1");
    let found: Option<WithDiff> = super::lookup::fetch_by(db, sql, id).await?;
    Ok(found.map(|f| (f.run, f.diff)))
}

/// Deletes the runs that ended more than `age` ago, except the latest
/// (`/metrics` and `/readyz` tell its time); how many.
pub async fn delete_old_runs(db: impl PgExecutor<'_>, age: Duration) -> Result<u64> {
    super::lookup::delete_older_than(
        db,
        "DELETE FROM cpi_reconcile_runs
          WHERE coalesce(finished_at, started_at) < now() - make_interval(secs => $1)
            AND id <> (SELECT id FROM cpi_reconcile_runs ORDER BY started_at DESC LIMIT 1)",
        age,
    )
    .await
}

/// Rewrites the stored diffs of past runs that name a connection URL with
/// `redact` (the text as it should be kept, `None` when it already is), in
/// the caller's transaction; how many runs changed. Used when encryption at
/// rest is turned on and by `cpi rekey`, so that no URL written before the
/// key stays behind in the history.
pub async fn rewrite_run_diffs(
    conn: &mut PgConnection,
    redact: impl Fn(&str) -> Option<String>,
) -> Result<u64> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, diff FROM cpi_reconcile_runs
          WHERE diff LIKE '%database_url:%' FOR UPDATE",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut changed = 0;
    for (id, diff) in rows {
        if let Some(kept) = redact(&diff) {
            sqlx::query("UPDATE cpi_reconcile_runs SET diff = $2 WHERE id = $1")
                .bind(id)
                .bind(kept)
                .execute(&mut *conn)
                .await?;
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One spelling per status and trigger: the column's (`as_str`, sqlx's
    /// lowercase rename) and, for statuses, the JSON's (serde).
    #[test]
    fn reconcile_status_spellings_agree() {
        let statuses = ReconcileStatus::ALL.map(|s| (format!("{s:?}"), s.as_str()));
        let triggers = ReconcileTrigger::ALL.map(|t| (format!("{t:?}"), t.as_str()));
        for (variant, column) in statuses.into_iter().chain(triggers) {
            assert_eq!(column, variant.to_lowercase());
        }
        for s in ReconcileStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
