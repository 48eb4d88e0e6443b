//! The daemon's job queue on `cpi_import_jobs`: enqueue a ready file once,
//! claim with `FOR UPDATE SKIP LOCKED` under a lease that the worker renews,
//! and take over a job whose worker died (lease expired).

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::jobs::{self, local_size, Job, JobError, JobStatus, JOB_COLUMNS};
use crate::location::FileRef;

/// Files queued per statement: a listing of any size is queued in
/// statements of bounded size (one round trip and one commit per
/// thousand files).
pub const ENQUEUE_BATCH: usize = 1000;

/// Queues `files` for `project`, [`ENQUEUE_BATCH`] per statement; returns
/// the new jobs by path. A file with a queued or running job already
/// (another replica, or an earlier scan) gets none.
pub async fn enqueue(
    pool: &PgPool,
    project: &str,
    files: &[QueuedFile],
    worker: &str,
) -> Result<Vec<(Uuid, String)>, JobError> {
    let mut queued = Vec::new();
    for batch in files.chunks(ENQUEUE_BATCH) {
        queued.extend(create_queued(pool, project, batch, worker).await?);
    }
    Ok(queued)
}

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
    /// The versions of its project and connection rows (their `xmin`s):
    /// equal versions are equal rows, so a worker may keep what it read of
    /// them for the job before.
    pub target_version: Option<String>,
    /// Whether a file of this job's size was imported into its table
    /// before (the job's table and size as queued).
    pub size_seen: bool,
}

/// The claim: one call of `cpi_claim` (migration 0070), which takes the
/// claim lock and then chooses, each with a snapshot of its own; the
/// project's config, the rows' versions and the size check come along.
/// `$3`/`$4`: the table preferred (none: any). Public for `EXPLAIN`.
pub const CLAIM_SQL: &str = "SELECT c.*, p.config AS project_config,
       p.xmin::text || '/' || coalesce(n.xmin::text, '-') AS target_version,
       EXISTS (SELECT 1 FROM cpi_import_jobs s
                WHERE s.status IN ('succeeded', 'duplicate') AND s.project_id = c.project_id
                  AND s.target_table = c.target_table AND s.file_size = c.file_size) AS size_seen
  FROM cpi_claim($1, $2, $3, $4) c
  LEFT JOIN cpi_projects p ON p.id = c.project_id
  LEFT JOIN cpi_connections n ON n.id = p.connection_id";

/// Takes the next job: queued, or running with an expired lease (its
/// worker died). Per target table, one job at a time and the smallest
/// file name first.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
) -> Result<Option<Claimed>, sqlx::Error> {
    claim_with(pool, worker, lease, None).await
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
        // The function falls back to any table by itself.
        return claim_with(pool, worker, lease, Some((project, table))).await;
    }
    claim(pool, worker, lease).await
}

async fn claim_with(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
    table: Option<(Uuid, &str)>,
) -> Result<Option<Claimed>, sqlx::Error> {
    let (project, name) = table.unzip();
    sqlx::query_as(CLAIM_SQL)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .bind(project)
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Extends the lease of a job this worker holds; `false` when it lost it.
pub async fn renew(
    pool: &PgPool,
    id: Uuid,
    worker: &str,
    lease: Duration,
) -> Result<Renewal, sqlx::Error> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "UPDATE cpi_import_jobs SET lease_expires_at = now() + make_interval(secs => $3)
          WHERE id = $1 AND worker = $2 AND status = $4
      RETURNING cancel_requested",
    )
    .bind(id)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(JobStatus::Running)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => Renewal::Lost,
        Some((None,)) => Renewal::Renewed,
        Some((Some(why),)) => Renewal::Cancel(why),
    })
}

/// What a lease renewal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// The lease is extended.
    Renewed,
    /// The job is no longer this worker's (taken over, or finished).
    Lost,
    /// Extended, but an operator cancelled the job: stop, with this text.
    Cancel(String),
}

/// How a [`cancel`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cancelled {
    /// A queued job: failed now (its file is set aside by the caller).
    Now,
    /// A running job: its worker stops it at its next lease renewal.
    Requested,
}

/// Cancels `job` (as read): a queued one fails at once with `why`; a running
/// one gets the request its worker reads at its next renewal. The
/// `job.cancelled` event (who, why, the status it was cancelled in) is
/// written in the same statement. [`JobError::NotCancellable`] for a
/// finished job, [`JobError::CancelRaced`] when it changed status meanwhile.
pub async fn cancel(
    db: impl sqlx::PgExecutor<'_>,
    job: &Job,
    why: &str,
    by: &Actor<'_>,
) -> Result<Cancelled, JobError> {
    let outcome = match job.status {
        JobStatus::Queued => Cancelled::Now,
        JobStatus::Running => Cancelled::Requested,
        status => return Err(JobError::NotCancellable { id: job.id, status }),
    };
    let change = match outcome {
        Cancelled::Now => {
            "status = 'failed', error = $3, finished_at = now(), lease_expires_at = NULL, not_before = NULL, waits_for_fix = false"
        }
        Cancelled::Requested => "cancel_requested = $3",
    };
    let done: Option<(Uuid,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH j AS (
             UPDATE cpi_import_jobs SET {change}
              WHERE id = $1 AND status = $2
          RETURNING id, project_name, target_table, file_name),
         e AS (
             INSERT INTO cpi_events (kind, severity, project, target_table, job_id, payload)
             SELECT $4, $5, j.project_name, j.target_table, j.id,
                    jsonb_build_object('file', j.file_name, 'by', $6::text, 'reason', $7::text,
                                       'was', $2::text)
               FROM j)
         SELECT id FROM j"
    )))
    .bind(job.id)
    .bind(job.status)
    .bind(why)
    .bind(super::events::EventKind::JobCancelled)
    .bind(super::events::Severity::Info)
    .bind(by.who)
    .bind(by.reason)
    .fetch_optional(db)
    .await?;
    done.map(|_| outcome)
        .ok_or(JobError::CancelRaced { id: job.id })
}

/// Puts a job this worker abandoned (shutdown timeout) back in the queue.
pub async fn release(pool: &PgPool, id: Uuid, worker: &str) -> Result<(), sqlx::Error> {
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

/// A file for the daemon's queue, with its target table and mode when its
/// options resolve (the queue orders and serializes jobs per table, so the
/// row must carry its table from the moment it is visible).
#[derive(Debug, Clone)]
pub struct QueuedFile {
    /// The file.
    pub file: FileRef,
    /// Its table and mode.
    pub target: Option<(String, crate::config::Mode)>,
    /// An object's last write (its job path carries the ETag, the same for
    /// the same content uploaded again): see [`enqueue`].
    pub written: Option<std::time::SystemTime>,
    /// When this sighting of an object was made: the start of the listing
    /// that found it, or its event's time. An import of the same path that
    /// finished since took this very object in (the path carries its
    /// content's ETag; the move that follows removes the key): see
    /// [`enqueue`].
    pub seen: Option<std::time::SystemTime>,
}

/// Inserts `queued` jobs for `files` in one statement (a listing's ready
/// files, one round trip and one commit however many). A file that has a
/// queued or running job already is skipped; so is every file when the
/// project is gone. The skip is asked of the statement's snapshot, not
/// left to the unique index on active jobs alone: a job that finishes
/// while the insert runs leaves that index before the insert looks, and
/// its `succeeded` row is not in the snapshot, so only the snapshot's
/// `running` row tells that the file is taken. Returns the new jobs,
/// by path. Rows go in path order, so two replicas queueing the same files
/// wait for each other instead of deadlocking.
///
/// An object that an import took in (succeeded or duplicate) after its
/// last write is skipped too: its move (a copy, then a delete) may still
/// be under way when another replica lists the prefix. Checked in the
/// insert itself, so that an import finishing between a separate check
/// and the insert cannot queue the object a second time. Stores give the
/// write time in whole seconds (rounded down): an import within a second
/// of it does not count, so an upload of the same content right after an
/// import is never mistaken for the one imported (at worst, an object is
/// judged twice: the second time a duplicate).
///
/// Nor is an object queued again by a sighting older than an import of it
/// (`seen`): a listing that began before the import finished, or an event
/// sent again (SQS delivers at least once). Both come within the second
/// when an event queued the object at once; the second job used to end a
/// duplicate.
async fn create_queued(
    mgmt: &PgPool,
    project_name: &str,
    files: &[QueuedFile],
    worker: &str,
) -> Result<Vec<(Uuid, String)>, JobError> {
    let (mut names, mut paths, mut sizes, mut tables, mut modes, mut written, mut seen) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let utc = chrono::DateTime::<chrono::Utc>::from;
    for f in files {
        written.push(f.written.map(utc));
        seen.push(f.seen.map(utc));
        names.push(f.file.name());
        paths.push(f.file.job_path());
        sizes.push(local_size(&f.file));
        tables.push(f.target.as_ref().map(|t| t.0.clone()));
        modes.push(f.target.as_ref().map(|t| t.1));
    }
    Ok(sqlx::query_as(
        "INSERT INTO cpi_import_jobs (project_id, project_name, connection_id, file_name, file_path, file_size, status, worker, target_table, mode)
         SELECT p.id, p.name, p.connection_id, f.file_name, f.file_path, f.file_size, $7, $8, f.target_table, f.mode
           FROM cpi_projects p,
                unnest($2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], $9::timestamptz[], $10::timestamptz[])
                    AS f(file_name, file_path, file_size, target_table, mode, written, seen)
          WHERE p.name = $1
            AND NOT EXISTS (
                SELECT 1 FROM cpi_import_jobs d
                 WHERE d.file_path = f.file_path AND d.status IN ('queued', 'running'))
            -- A subquery per file (an index lookup by path): one NOT EXISTS
            -- over both kinds of job was planned as a hash of every finished
            -- job, 0.7-1.3 s per scan with 1,000,000 of them.
            AND NOT coalesce((SELECT max(d.finished_at) FROM cpi_import_jobs d
                               WHERE d.file_path = f.file_path AND d.status IN ('succeeded', 'duplicate'))
                             >= least(f.written + interval '1 second', f.seen), false)
          ORDER BY f.file_path
         ON CONFLICT DO NOTHING
         RETURNING id, file_path",
    )
    .bind(project_name)
    .bind(names)
    .bind(paths)
    .bind(sizes)
    .bind(tables)
    .bind(modes)
    .bind(JobStatus::Queued)
    .bind(worker)
    .bind(written)
    .bind(seen)
    .fetch_all(mgmt)
    .await?)
}

/// Who asked for an operator action (a retry, a replay, a pause, a
/// cancel), and why: written to the action's event row.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// `api` (the API token) or `cli:<user>`.
    pub who: &'a str,
    /// The operator's `--reason`, if given.
    pub reason: Option<&'a str>,
    /// The audit row of the API action, written by the control in the
    /// transaction of its change (`None` from the command line).
    pub audit: Option<&'a super::audit::Pending>,
}

/// Whether `job` may be retried: a failed job, a queued one waiting for its
/// retry, or (with `force`) a running one whose worker died.
///
/// Taking over a running job is safe even if its worker is in fact alive:
/// both runs take the table's lock in the target, and the second finds the
/// first in the ledger and ends as a duplicate.
pub fn check_retryable(job: &Job, force: bool) -> Result<(), JobError> {
    let waiting =
        job.status == JobStatus::Queued && (job.waits_for_fix || job.not_before.is_some());
    if job.status == JobStatus::Failed || (force && job.status == JobStatus::Running) || waiting {
        return Ok(());
    }
    Err(JobError::NotRetryable {
        id: job.id,
        status: job.status,
    })
}

/// Puts `job` (as read, [`check_retryable`]) back in the queue with its
/// file at `path`, due now, and writes its `job.retried` event in the same
/// statement. Fails with [`JobError::ChangedMeanwhile`] when the job is no
/// longer in the status it was read in. The caller then runs it
/// (`import::run_job`) or leaves it to the daemon.
pub async fn requeue(
    db: impl sqlx::PgExecutor<'_>,
    job: &Job,
    path: &str,
    by: &Actor<'_>,
) -> Result<Job, JobError> {
    let requeued: Option<Job> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH j AS (
             UPDATE cpi_import_jobs SET status = $4, file_path = $2, not_before = NULL,
                    waits_for_fix = false, lease_expires_at = NULL, cancel_requested = NULL
              WHERE id = $1 AND status = $3
          RETURNING *),
         e AS (
             INSERT INTO cpi_events (kind, severity, project, target_table, job_id, payload)
             SELECT $5, $6, j.project_name, j.target_table, j.id,
                    jsonb_build_object('file', j.file_name, 'by', $7::text, 'reason', $8::text,
                                       'was', $3::text)
               FROM j)
         SELECT {JOB_COLUMNS} FROM j"
    )))
    .bind(job.id)
    .bind(path)
    .bind(job.status)
    .bind(JobStatus::Queued)
    .bind(super::events::EventKind::JobRetried)
    .bind(super::events::Severity::Info)
    .bind(by.who)
    .bind(by.reason)
    .fetch_optional(db)
    .await?;
    requeued.ok_or(JobError::ChangedMeanwhile { id: job.id })
}

/// Whether `job` may be replayed: it succeeded, or was a duplicate.
pub fn check_replayable(job: &Job) -> Result<(), JobError> {
    match job.status {
        JobStatus::Succeeded | JobStatus::Duplicate => Ok(()),
        status => Err(JobError::NotReplayable { id: job.id, status }),
    }
}

/// Queues a new job that imports `job`'s file (now at `path`) again on
/// purpose, naming `job` in `replay_of`, and writes its `job.replayed`
/// event (who, why, the job replayed) in the same statement. Fails with
/// [`JobError::ActiveMeanwhile`] when another job of `path` is queued or
/// running (the one-active-job-per-file index), or when `job` was pruned
/// meanwhile.
pub async fn create_replay(
    db: impl sqlx::PgExecutor<'_>,
    job: &Job,
    path: &str,
    by: &Actor<'_>,
) -> Result<Job, JobError> {
    let created: Option<Job> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH j AS (
             INSERT INTO cpi_import_jobs (project_id, project_name, connection_id, file_name, file_path,
                                          status, replay_of)
             SELECT o.project_id, o.project_name, p.connection_id, o.file_name, $2, $3, o.id
               FROM cpi_import_jobs o LEFT JOIN cpi_projects p ON p.id = o.project_id
              WHERE o.id = $1 AND o.status IN ($4, $5)
             ON CONFLICT DO NOTHING
          RETURNING *),
         e AS (
             INSERT INTO cpi_events (kind, severity, project, target_table, job_id, payload)
             SELECT $6, $7, j.project_name, $8, j.id,
                    jsonb_build_object('file', j.file_name, 'by', $9::text, 'reason', $10::text,
                                       'replays', $1::uuid)
               FROM j)
         SELECT {JOB_COLUMNS} FROM j"
    )))
    .bind(job.id)
    .bind(path)
    .bind(JobStatus::Queued)
    .bind(JobStatus::Succeeded)
    .bind(JobStatus::Duplicate)
    .bind(super::events::EventKind::JobReplayed)
    .bind(super::events::Severity::Info)
    .bind(job.target_table.as_deref())
    .bind(by.who)
    .bind(by.reason)
    .fetch_optional(db)
    .await?;
    created.ok_or_else(|| JobError::ActiveMeanwhile {
        id: job.id,
        path: path.to_string(),
    })
}

/// Which failed jobs a bulk retry takes.
#[derive(Debug, Default, Clone)]
pub struct FailedFilter {
    /// Only this project's.
    pub project: Option<String>,
    /// Only this target table's (as jobs name it: `t` or `schema.t`).
    pub table: Option<String>,
    /// Only jobs that finished at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only jobs that finished before this time.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// The ids of the failed jobs `f` names, oldest verdict first, at most
/// `limit`.
pub async fn failed_ids(
    db: impl sqlx::PgExecutor<'_>,
    f: &FailedFilter,
    limit: i64,
) -> Result<Vec<Uuid>, JobError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM cpi_import_jobs
          WHERE status = $1 AND ($2::text IS NULL OR project_name = $2)
            AND ($3::text IS NULL OR target_table = $3)
            AND ($4::timestamptz IS NULL OR finished_at >= $4)
            AND ($5::timestamptz IS NULL OR finished_at < $5)
          ORDER BY finished_at, id LIMIT $6",
    )
    .bind(JobStatus::Failed)
    .bind(&f.project)
    .bind(&f.table)
    .bind(f.since)
    .bind(f.until)
    .bind(limit)
    .fetch_all(db)
    .await?)
}
