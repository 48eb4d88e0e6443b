//! The `cpi_import_jobs` rows: one per file seen (DESIGN §2).

use crate::config::Mode;
use crate::location::FileRef;

use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The project to queue a file for does not exist.
    #[error("project {0:?} does not exist in the management database")]
    ProjectNotFound(String),
    /// No job has this id.
    #[error("job {0} does not exist")]
    NotFound(Uuid),
    /// Only failed (or, forced, dead running) jobs are retried.
    #[error("job {id} is {status}: only a failed job can be retried, or a queued one waiting for its retry (or a running one whose worker died, with --force)")]
    NotRetryable {
        /// The job.
        id: Uuid,
        /// Its status.
        status: JobStatus,
    },
    /// The job changed while it was being retried (another retry, or a worker).
    #[error("job {id} is no longer failed: only a failed job can be retried, or a queued one waiting for its retry (or a running one whose worker died, with --force)")]
    ChangedMeanwhile {
        /// The job.
        id: Uuid,
    },
    /// The file of a job to retry is gone.
    #[error("job {id}: the file {path} no longer exists")]
    FileGone {
        /// The job.
        id: Uuid,
        /// Where the file was.
        path: String,
    },
    /// Only a succeeded or duplicate job is replayed.
    #[error("job {id} is {status}: only a succeeded or duplicate job can be replayed (a failed one is retried: cpi jobs retry)")]
    NotReplayable {
        /// The job.
        id: Uuid,
        /// Its status.
        status: JobStatus,
    },
    /// Another job of the file is queued or running.
    #[error("job {id}: another job of {path} is queued or running; replay it once that one has finished")]
    ActiveMeanwhile {
        /// The job to replay.
        id: Uuid,
        /// The file's path.
        path: String,
    },
    /// Only a queued or running job is cancelled.
    #[error("job {id} is {status}: only a queued or running job can be cancelled")]
    NotCancellable {
        /// The job.
        id: Uuid,
        /// Its status.
        status: JobStatus,
    },
    /// The job started or finished while it was being cancelled.
    #[error(
        "job {id} changed while it was being cancelled (it started or finished): look at it again"
    )]
    CancelRaced {
        /// The job.
        id: Uuid,
    },
    /// A succeeded or duplicate job is not run again.
    #[error("job {id} is {status}: a finished job is not run again (its result stands)")]
    Finished {
        /// The job.
        id: Uuid,
        /// Its status.
        status: JobStatus,
    },
    /// The management database failed.
    #[error("management database: {0}")]
    Db(#[from] sqlx::Error),
}

/// `cpi_import_jobs.status` (a TEXT column; bound and read as this enum).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker holds it (under a lease, for the daemon).
    Running,
    /// Imported.
    Succeeded,
    /// Rejected, or could not run (see its error).
    Failed,
    /// Its content was imported before.
    Duplicate,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Duplicate,
    ];

    /// The status as the column spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Duplicate => "duplicate",
        }
    }

    /// The status a column value spells, if any.
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|j| j.as_str() == s)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `cpi_import_jobs` row (DESIGN §2).
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// The job's id.
    pub id: Uuid,
    /// Its project's id (NULL once the project is deleted).
    pub project_id: Option<Uuid>,
    /// Its project's name, as it was.
    pub project_name: String,
    /// The project's connection when queued.
    pub connection_id: Option<Uuid>,
    /// The file's name.
    pub file_name: String,
    /// The file's absolute path (where it is now, for a retry).
    pub file_path: String,
    /// The file's size in bytes.
    pub file_size: Option<i64>,
    /// The file's sha256, once known.
    pub file_sha256: Option<String>,
    /// The target table, once the options are known.
    pub target_table: Option<String>,
    /// The mode, once the options are known.
    pub mode: Option<Mode>,
    /// Where the job is in its lifecycle.
    pub status: JobStatus,
    /// Records parsed.
    pub rows_read: i64,
    /// Rows added.
    pub rows_inserted: i64,
    /// Rows changed in place.
    pub rows_updated: i64,
    /// Rows removed.
    pub rows_deleted: i64,
    /// Records skipped as bad.
    pub rows_rejected: i64,
    /// Why it failed (or which import it repeats), secrets masked.
    pub error: Option<String>,
    /// The row errors (`errors`, `errors_total`, `errors_truncated`).
    #[schema(value_type = Option<Object>)]
    pub error_details: Option<serde_json::Value>,
    /// Who ran it last (`cpi import`, or a daemon worker).
    pub worker: Option<String>,
    /// How many times it started.
    pub attempts: i32,
    /// Until when its worker holds it (daemon).
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// A queued job is not claimed before this time: its last run could
    /// not reach a verdict (see `error`) and it waits for its retry.
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    /// A queued job whose last run hit a configuration error (see
    /// `error`): due again as soon as a project or connection changes.
    pub waits_for_fix: bool,
    /// When it was queued.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When its last run started.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When its last run ended.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The job this one replays (`cpi jobs replay`): its import supersedes
    /// the target ledger's entry of the same content.
    pub replay_of: Option<Uuid>,
}

/// The columns of [`Job`], in its order.
pub const JOB_COLUMNS: &str = "id, project_id, project_name, connection_id, file_name, file_path, file_size, file_sha256, target_table, mode, status, rows_read, rows_inserted, rows_updated, rows_deleted, rows_rejected, error, error_details, worker, attempts, lease_expires_at, not_before, waits_for_fix, created_at, started_at, finished_at, replay_of";

/// A job [`create_started`] made.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Created {
    /// The row, started.
    #[sqlx(flatten)]
    pub job: Job,
    /// The versions of its project and connection rows, read in the same
    /// statement (as a claim returns them: see `import::Known`).
    pub target_version: Option<String>,
}

/// Inserts a job for `path` that `worker` runs at once (`cpi import`),
/// started in the same statement (`attempts` 1, `started_at` now): one
/// round trip and one commit per file. The project must exist (its id and
/// connection are recorded as they are now). The row is `running` from
/// the start: a `queued` row would be free for a daemon on the same
/// management database to claim, and it would then move the user's file.
pub async fn create_started(
    mgmt: &PgPool,
    project_name: &str,
    file: &FileRef,
    worker: &str,
) -> Result<Created, JobError> {
    let (file_name, job_path, size) = (file.name(), file.job_path(), local_size(file));
    // The project's id and connection as they are now, in the insert itself.
    let created: Option<Created> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO cpi_import_jobs (project_id, project_name, connection_id, file_name, file_path, file_size, status, worker,
                                      attempts, started_at)
         SELECT p.id, p.name, p.connection_id, $2, $3, $4, $6, $5, 1, now()
           FROM cpi_projects p WHERE p.name = $1
         RETURNING {JOB_COLUMNS},
                   (SELECT p.xmin::text || '/' || coalesce(n.xmin::text, '-')
                      FROM cpi_projects p LEFT JOIN cpi_connections n ON n.id = p.connection_id
                     WHERE p.id = cpi_import_jobs.project_id) AS target_version"
    )))
    .bind(project_name)
    .bind(file_name)
    .bind(job_path)
    .bind(size)
    .bind(worker)
    .bind(JobStatus::Running)
    .fetch_optional(mgmt)
    .await?;
    created.ok_or_else(|| JobError::ProjectNotFound(project_name.to_string()))
}

/// A local file's size when it can be read now (an object's comes with
/// its job's first read).
pub(super) fn local_size(file: &FileRef) -> Option<i64> {
    match file {
        FileRef::Local(p) => std::fs::metadata(p).ok().map(|m| m.len() as i64),
        FileRef::Object(_) => None,
    }
}

/// The queued or running job of a file, if any.
pub async fn active_for(db: &PgPool, file: &FileRef) -> Result<Option<Job>, JobError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM cpi_import_jobs WHERE file_path = $1 AND status IN ($2, $3)
          ORDER BY created_at DESC LIMIT 1"
    )))
    .bind(file.job_path())
    .bind(JobStatus::Queued)
    .bind(JobStatus::Running)
    .fetch_optional(db)
    .await?)
}

/// The job, if it exists.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Job>, JobError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM cpi_import_jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// The ids of the jobs whose id starts with `prefix` (at most 3: one is
/// the answer, more an ambiguity to report). An index range on the key.
pub async fn ids_with_prefix(
    db: impl PgExecutor<'_>,
    prefix: &crate::id_prefix::IdPrefix,
) -> Result<Vec<Uuid>, JobError> {
    let (lo, hi) = prefix.range();
    Ok(sqlx::query_scalar(
        "SELECT id FROM cpi_import_jobs WHERE id BETWEEN $1 AND $2 ORDER BY id LIMIT 3",
    )
    .bind(lo)
    .bind(hi)
    .fetch_all(db)
    .await?)
}

/// Which jobs [`list`] and [`count`] return.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Only this project's.
    pub project: Option<String>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only these projects' (the caller's); `None`: every project's.
    pub among: Option<Vec<String>>,
    /// At most this many.
    pub limit: i64,
    /// After skipping this many.
    pub offset: i64,
}

const FILTER: &str = "($1::text IS NULL OR project_name = $1) AND ($2::text IS NULL OR status = $2)
     AND ($3::text[] IS NULL OR project_name = ANY($3))";

/// Newest first.
pub async fn list(db: impl PgExecutor<'_>, f: &ListFilter) -> Result<Vec<Job>, JobError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM cpi_import_jobs WHERE {FILTER}
          ORDER BY created_at DESC, id LIMIT $4 OFFSET $5"
    )))
    .bind(&f.project)
    .bind(f.status)
    .bind(&f.among)
    .bind(f.limit)
    .bind(f.offset)
    .fetch_all(db)
    .await?)
}

/// How many jobs match the filter, across all pages.
pub async fn count(db: impl PgExecutor<'_>, f: &ListFilter) -> Result<i64, JobError> {
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM cpi_import_jobs WHERE {FILTER}"
    )))
    .bind(&f.project)
    .bind(f.status)
    .bind(&f.among)
    .fetch_one(db)
    .await?;
    Ok(n)
}

/// Marks the job running for `worker`: attempts + 1, previous results
/// cleared. A job that succeeded or was a duplicate keeps its result: only
/// queued, failed and running (a worker died) jobs start.
pub async fn start(db: &PgPool, id: Uuid, worker: &str) -> Result<Job, JobError> {
    let started: Option<Job> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE cpi_import_jobs SET status = $3, worker = $2, attempts = attempts + 1,
                started_at = now(), finished_at = NULL, error = NULL, error_details = NULL,
                not_before = NULL, waits_for_fix = false, rows_read = 0, rows_inserted = 0, rows_updated = 0, rows_deleted = 0, rows_rejected = 0
          WHERE id = $1 AND status IN ($4, $5, $3) RETURNING {JOB_COLUMNS}"
    )))
    .bind(id)
    .bind(worker)
    .bind(JobStatus::Running)
    .bind(JobStatus::Queued)
    .bind(JobStatus::Failed)
    .fetch_optional(db)
    .await?;
    match started {
        Some(job) => Ok(job),
        None => match get(db, id).await? {
            Some(job) => Err(JobError::Finished {
                id,
                status: job.status,
            }),
            None => Err(JobError::NotFound(id)),
        },
    }
}

/// Records what is known about the file once its options are picked (its
/// table, mode and size) and answers, in the same statement, whether a file
/// of this size was imported into this project's table before (succeeded
/// or duplicate): a cheap hint that the file may be a duplicate, worth
/// hashing before loading. The target's ledger decides.
pub async fn describe(
    db: impl PgExecutor<'_>,
    id: Uuid,
    project_id: Uuid,
    size: u64,
    target_table: &str,
    mode: Mode,
) -> Result<bool, JobError> {
    let seen: Option<(bool,)> = sqlx::query_as(
        "UPDATE cpi_import_jobs SET file_size = $2, target_table = $3, mode = $4 WHERE id = $1
         RETURNING EXISTS (SELECT 1 FROM cpi_import_jobs s
                            WHERE s.project_id = $7 AND s.target_table = $3
                              AND s.file_size = $2 AND s.status IN ($5, $6))",
    )
    .bind(id)
    .bind(size as i64)
    .bind(target_table)
    .bind(mode)
    .bind(JobStatus::Succeeded)
    .bind(JobStatus::Duplicate)
    .bind(project_id)
    .fetch_optional(db)
    .await?;
    seen.map(|(s,)| s).ok_or(JobError::NotFound(id))
}

/// Final counts of a job.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Counts {
    /// Records parsed.
    pub rows_read: u64,
    /// Rows added to the table.
    pub rows_inserted: u64,
    /// Rows changed in place (upsert, sync).
    pub rows_updated: u64,
    /// Rows removed (replace, sync).
    pub rows_deleted: u64,
    /// Records skipped as bad (`on_error: skip_rows`).
    pub rows_rejected: u64,
}

/// An error's text as the management database can store it: a file's
/// bytes quoted in a message may hold NUL, which `text` and `jsonb` refuse,
/// and a refused row would leave the file without a verdict.
pub(super) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\\0").into()
    } else {
        text.into()
    }
}

/// [`storable`] for every string in a JSON value.
pub(super) fn storable_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(storable(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(storable_json).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (storable(k).into_owned(), storable_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The tail of a verdicts statement (`finish`, `batch::finish`): after
/// CTEs `was` (id, cancelled: as the job was before) and `j` (the updated
/// rows), the events of each verdict: `check.failed`/`check.warned` per
/// check, `import.failed` (unless an operator cancelled the job: it has
/// its `job.cancelled` already) or `import.rejected_rows`.
macro_rules! verdict_events {
    () => {
        "
         checked AS (
             INSERT INTO cpi_events (kind, severity, project, target_table, job_id, payload)
             SELECT CASE WHEN k->>'outcome' = 'error' THEN 'check.failed' ELSE 'check.warned' END,
                    CASE WHEN k->>'outcome' = 'error' THEN 'error' ELSE 'warn' END,
                    j.project_name, j.target_table, j.id,
                    jsonb_build_object('file', j.file_name, 'check', k->>'check',
                                       'failing', (k->>'failing')::int8, 'rows', (k->>'rows')::int8)
               FROM j, jsonb_array_elements(COALESCE(j.error_details->'checks', '[]'::jsonb)) k
              WHERE k->>'outcome' IN ('error', 'warn'))
         INSERT INTO cpi_events (kind, severity, project, target_table, job_id, payload)
         SELECT CASE WHEN j.status = 'failed' THEN 'import.failed' ELSE 'import.rejected_rows' END,
                CASE WHEN j.status = 'failed' THEN 'error' ELSE 'warn' END,
                j.project_name, j.target_table, j.id,
                jsonb_build_object('file', j.file_name, 'rows_read', j.rows_read,
                                   'rows_rejected', j.rows_rejected)
           FROM j LEFT JOIN was ON was.id = j.id
          WHERE (j.status = 'failed' AND NOT COALESCE(was.cancelled, false))
             OR (j.status = 'succeeded' AND j.rows_rejected > 0)"
    };
}
pub(super) use verdict_events;

/// Records the job's verdict, counts and errors (and the file's sha256
/// when it was computed while loading).
pub async fn finish(
    db: impl PgExecutor<'_>,
    id: Uuid,
    status: JobStatus,
    counts: &Counts,
    error: Option<&str>,
    details: Option<&serde_json::Value>,
    sha256: Option<&str>,
) -> Result<(), JobError> {
    // A rejected file, or rows skipped, is an event (`cpi_events`) written
    // by the same statement, so it exists exactly when the verdict does.
    // So is each check that failed or warned (from `details.checks`).
    // The payload has counts and names only: the error may quote a value.
    // A job an operator cancelled (`cancel_requested`, read before the
    // update: every part of one statement sees the same snapshot) already
    // has its `job.cancelled` event; it is not an `import.failed` too.
    sqlx::query(concat!(
        "WITH was AS (
             SELECT id, cancel_requested IS NOT NULL AS cancelled FROM cpi_import_jobs WHERE id = $1),
         j AS (
             UPDATE cpi_import_jobs SET status = $2, rows_read = $3, rows_inserted = $4, rows_updated = $5,
                    rows_deleted = $6, rows_rejected = $7, error = $8, error_details = $9, finished_at = now(),
                    file_sha256 = COALESCE($10, file_sha256), lease_expires_at = NULL,
                    cancel_requested = NULL
              WHERE id = $1
          RETURNING id, status, project_name, target_table, file_name, rows_read, rows_rejected,
                    error_details),",
        verdict_events!()
    ))
    .bind(id)
    .bind(status)
    .bind(counts.rows_read as i64)
    .bind(counts.rows_inserted as i64)
    .bind(counts.rows_updated as i64)
    .bind(counts.rows_deleted as i64)
    .bind(counts.rows_rejected as i64)
    .bind(error.map(storable))
    .bind(details.map(storable_json))
    .bind(sha256)
    .execute(db)
    .await?;
    Ok(())
}

/// Puts a job whose last run could not reach a verdict back in the queue
/// to wait for its retry: the same row, due at `now() + delay` (the queue's
/// `not_before`), with the error that made it wait. `waits_for_fix` marks a
/// configuration error, made due at once by the queue's `fixes_due`.
/// Only while `worker` still holds it; `false` when it no longer does.
pub async fn defer(
    db: impl PgExecutor<'_>,
    id: Uuid,
    worker: &str,
    delay: std::time::Duration,
    waits_for_fix: bool,
    error: &str,
) -> Result<bool, JobError> {
    let r = sqlx::query(
        "UPDATE cpi_import_jobs SET status = $6, not_before = now() + make_interval(secs => $3),
                waits_for_fix = $4, error = $5, error_details = NULL, finished_at = now(),
                lease_expires_at = NULL
          WHERE id = $1 AND worker = $2 AND status = $7",
    )
    .bind(id)
    .bind(worker)
    .bind(delay.as_secs_f64())
    .bind(waits_for_fix)
    .bind(storable(error))
    .bind(JobStatus::Queued)
    .bind(JobStatus::Running)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_with_nul_is_stored_with_the_byte_spelled_out() {
        assert_eq!(storable("a\0b"), "a\\0b");
        assert!(matches!(
            storable("plain"),
            std::borrow::Cow::Borrowed("plain")
        ));
        let v = serde_json::json!({"k\0": ["x\0", 1, {"e": "\0"}]});
        assert_eq!(
            storable_json(&v),
            serde_json::json!({"k\\0": ["x\\0", 1, {"e": "\\0"}]})
        );
    }

    /// One spelling per status: the column's (`as_str`, sqlx's lowercase
    /// rename), the JSON's (serde) and the CLI's (`parse`) agree.
    #[test]
    fn status_spellings_agree() {
        for s in JobStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(s.as_str(), format!("{s:?}").to_lowercase());
        }
        assert_eq!(JobStatus::parse("done"), None);
    }
}
