//! The job lifecycle of one file: start the job row, check the project and
//! its connection (DESIGN §1: three checks, three errors, no environment
//! fallback), plan the file's options, hash a likely duplicate first,
//! connect to the target, load, and finish the job row with the verdict.

use std::time::Instant;

use sqlx::{Connection, PgPool};
use uuid::Uuid;

use super::context::ProgressFn;
use super::error::{config_recheck, error_policy, Action, ImportError};
use super::failure::Failure;
use super::load;
use super::ready::{conclude, prepare, project_target, Claim, JobOutcome, Known};
use super::{target, targets};
use crate::location::FileRef;
use crate::secret;
use crate::store::jobs::{self, Counts, JobError, JobStatus};

/// Runs job `job_id`: see the module documentation. Does not move the
/// file. `Ok` whenever the file got a verdict (succeeded, duplicate, or
/// failed for its content); `Err` when it could not (see
/// [`error_policy`]); the job row records both.
pub async fn run_job(
    mgmt: &PgPool,
    job_id: Uuid,
    worker: &str,
    progress: ProgressFn<'_>,
) -> Result<JobOutcome, ImportError> {
    let t0 = Instant::now();
    let job = jobs::start(mgmt, job_id, worker)
        .await
        .map_err(|e| match e {
            JobError::NotFound(id) => ImportError::JobNotFound(id),
            e => ImportError::Management(e),
        })?;
    tracing::debug!(start_ms = ms(t0), "job started");
    let file = decode(&job)?;
    run_and_record(mgmt, &job, &file, worker, progress, None, false)
        .await
        .map_err(|u| u.error)
}

/// The job's file, decoded from its row.
fn decode(job: &jobs::Job) -> Result<FileRef, ImportError> {
    FileRef::parse(&job.file_path).map_err(|e| ImportError::FileUnreadable {
        path: job.file_path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })
}

/// A job that reached no verdict: the error, and what the one
/// [`error_policy`] decided for it (already written to the job's row).
#[derive(Debug)]
pub struct Unfinished {
    /// Why.
    pub error: ImportError,
    /// Retry, wait for a fix, fail, or the file vanished.
    pub action: Action,
}

/// [`run_job`] for a job the daemon's queue just claimed (the claim
/// started it: `job` is its row). When it cannot reach a verdict,
/// [`error_policy`] decides in the same update of its
/// row: `Retry` and `WaitForFix` put the same job back in the queue, due
/// after the policy's delay (`not_before`), so the retry survives a restart
/// and keeps the file's place in its table's order; `Fail` records it
/// failed. The delay grows with the job's `attempts`.
pub async fn run_queued(
    mgmt: &PgPool,
    job: &jobs::Job,
    file: &FileRef,
    worker: &str,
    claim: Claim<'_>,
) -> Result<JobOutcome, Unfinished> {
    run_and_record(mgmt, job, file, worker, None, Some(claim), true).await
}

/// [`run_job`] for a job [`jobs::create_started`] made and started
/// (`cpi import`): the project and target URL are read again only when
/// the versions read by the insert differ from `known`'s. A job that
/// cannot reach a verdict is failed, as with [`run_job`].
pub async fn run_created(
    mgmt: &PgPool,
    created: &jobs::Created,
    worker: &str,
    progress: ProgressFn<'_>,
    known: &mut Known,
) -> Result<JobOutcome, ImportError> {
    let claim = Claim {
        target_version: created.target_version.as_deref(),
        size_seen: None,
        known,
    };
    let file = decode(&created.job)?;
    run_and_record(
        mgmt,
        &created.job,
        &file,
        worker,
        progress,
        Some(claim),
        false,
    )
    .await
    .map_err(|u| u.error)
}

async fn run_and_record(
    mgmt: &PgPool,
    job: &jobs::Job,
    file: &FileRef,
    worker: &str,
    progress: ProgressFn<'_>,
    claim: Option<Claim<'_>>,
    requeue: bool,
) -> Result<JobOutcome, Unfinished> {
    let t0 = Instant::now();
    let job_id = job.id;
    match import_file(mgmt, job, file, progress, claim).await {
        Ok(outcome) => {
            let t = Instant::now();
            jobs::finish(
                mgmt,
                job_id,
                outcome.status,
                &outcome.counts,
                outcome.error.as_deref(),
                outcome_details(&outcome).as_ref(),
                outcome.sha256.as_deref(),
            )
            .await
            .map_err(|e| {
                let error = ImportError::from(e);
                let action = error_policy(&error, 0);
                Unfinished { error, action }
            })?;
            tracing::debug!(finish_ms = ms(t), total_ms = ms(t0), "job timings");
            Ok(outcome)
        }
        Err(e) => Err(record_unfinished(mgmt, job, worker, e, requeue).await),
    }
}

/// Decides with the one [`error_policy`] what becomes of a job that
/// reached no verdict, and writes it to the job's row: with `requeue`
/// (the daemon), a retry or a wait puts the job back in the queue with
/// its delay, and a vanished file is left to the daemon; otherwise, and
/// for the rest, the job fails.
pub(super) async fn record_unfinished(
    mgmt: &PgPool,
    job: &jobs::Job,
    worker: &str,
    e: ImportError,
    requeue: bool,
) -> Unfinished {
    let job_id = job.id;
    // The Display of an ImportError is already scrubbed; scrub
    // again for the causes that are plain text.
    let text = secret::scrub_known(&e.to_string());
    // Runs before this one: the exponent of the backoff.
    let attempt = u32::try_from(job.attempts - 1).unwrap_or(0);
    let action = error_policy(&e, attempt);
    let wait = match (requeue, action) {
        (true, Action::Retry(delay)) => Some((delay, false)),
        (true, Action::WaitForFix) => Some((config_recheck(attempt), true)),
        _ => None,
    };
    let unfinished = Unfinished { error: e, action };
    // Best effort: the management database may be what failed (the
    // job's lease then expires and another worker takes it over).
    if let Some((delay, waits_for_fix)) = wait {
        let _ = jobs::defer(mgmt, job_id, worker, delay, waits_for_fix, &text).await;
        return unfinished;
    }
    if requeue && action == Action::Vanished {
        // The daemon settles it: a duplicate of the job that moved
        // the file, or vanished.
        return unfinished;
    }
    let _ = jobs::finish(
        mgmt,
        job_id,
        JobStatus::Failed,
        &Counts::default(),
        Some(&text),
        None,
        None,
    )
    .await;
    unfinished
}

/// Milliseconds since `t`, for the debug timings.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// The row errors, as `cpi_import_jobs.error_details`.
pub(super) fn outcome_details(o: &JobOutcome) -> Option<serde_json::Value> {
    if o.errors.is_empty() && o.checks.is_empty() {
        return None;
    }
    let mut d = serde_json::json!({
        "errors": o.errors,
        "errors_total": o.errors_total,
        "errors_truncated": o.errors_total > o.errors.len() as u64,
    });
    // The checks' verdicts ride in the same JSON: `jobs::finish` writes
    // check.failed/check.warned events from them in its statement.
    if !o.checks.is_empty() {
        d["checks"] = serde_json::json!(o.checks);
    }
    Some(d)
}

/// The rows job `job` kept in its target's `cpi.rejected_rows`
/// (`rejects: table`): the first `limit` by line, and how many in all.
pub async fn kept_rejects(
    mgmt: &PgPool,
    job: &jobs::Job,
    limit: i64,
) -> Result<(Vec<crate::import::rejects::KeptRow>, i64), ImportError> {
    let (_, url) = project_target(mgmt, &job.project_name).await?;
    let mut conn = crate::import::target::connect(&url, &job.project_name).await?;
    crate::import::rejects::of_job(&mut conn, job.id, limit)
        .await
        .map_err(|e| ImportError::Management(JobError::Db(e)))
}

async fn import_file(
    mgmt: &PgPool,
    job: &jobs::Job,
    file: &FileRef,
    progress: ProgressFn<'_>,
    mut claim: Option<Claim<'_>>,
) -> Result<JobOutcome, ImportError> {
    let p = prepare(mgmt, job, file, claim.as_mut()).await?;
    let t = Instant::now();
    let (mut conn, reused) = match targets::take(p.connection_id, &p.url).await {
        Some(c) => (c, true),
        None => (target::connect(&p.url, &job.project_name).await?, false),
    };
    let connect_ms = ms(t);
    let t = Instant::now();
    let result = load::load(&mut conn, &p.ctx, progress, load::Within::Own).await;
    let load_ms = ms(t);
    // Only a connection whose transaction ended (commit or rollback) is
    // reused; after a lost connection or a server error mid-COPY it is closed.
    match &result {
        Err(Failure::Transient(_)) => {
            let _ = conn.close().await;
        }
        _ => targets::give_back(p.connection_id, &p.url, conn),
    }
    tracing::debug!(
        project_ms = p.project_ms,
        describe_ms = p.describe_ms,
        connect_ms,
        reused,
        load_ms,
        "import step timings"
    );
    conclude(p, result)
}
