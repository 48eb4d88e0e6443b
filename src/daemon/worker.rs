//! An import worker: claim a job, import its file under a renewed lease,
//! then finish it: move the file to `processed/` or `failed/` (with its
//! report), whether it lies in a folder or in object storage. A claim may
//! bring several jobs of one table (a batch, issue 30): they import in one
//! target transaction, a savepoint each, under one renewal for all.

use std::time::{Duration, Instant};

use tracing::Instrument;
use uuid::Uuid;

use super::moves::{self, Move, ObjectMove};
use super::settings::Shared;
use crate::config::ProjectConfig;
use crate::import::{self, Action, BatchJob, ImportError, JobOutcome, Unfinished};
use crate::inbox;
use crate::location::{Destination, FileRef};
use crate::object_storage;
use crate::secret;
use crate::store;
use crate::store::jobs::JobStatus;
use crate::store::queue;

/// One import worker: claim, import under a renewed lease, move the file.
pub(super) async fn work(s: Shared, worker: String) {
    let mut shutdown = s.shutdown.clone();
    // The job this worker just finished: the next file of its table comes here.
    let mut previous: Option<queue::Claimed> = None;
    let mut known = import::Known::default();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let t = Instant::now();
        // A batch: the next job, and the jobs of its table claimable now
        // behind it (never a wait for more).
        let claimed =
            store::batch::claim(&s.pool, &worker, s.settings.lease, previous.take().as_ref()).await;
        let claim_ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot claim a job");
                Vec::new()
            }
        };
        if claimed.len() > 1 {
            let last = claimed.last().cloned();
            let span = tracing::info_span!("batch", project = %claimed[0].job.project_name, files = claimed.len());
            tracing::debug!(parent: &span, claim_ms, "claimed a batch");
            process_batch(&s, &worker, claimed, &mut known)
                .instrument(span)
                .await;
            previous = last;
            continue;
        }
        let Some(job) = claimed.pop() else {
            // Local jobs wake us at once; other replicas' jobs within a second.
            tokio::select! {
                _ = s.job_ready.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        };
        let span = tracing::info_span!("import", job_id = %job.job.id, project = %job.job.project_name, file = %job.job.file_name);
        tracing::debug!(parent: &span, claim_ms, "claimed");
        process(&s, &worker, job.clone(), &mut known)
            .instrument(span)
            .await;
        previous = Some(job);
    }
}

async fn process(s: &Shared, worker: &str, job: queue::Claimed, known: &mut import::Known) {
    // Decoded once: everything below takes the file as it is.
    let file = match FileRef::parse(&job.job.file_path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "the job's file cannot be told; the job fails");
            let _ = record_failed(s, &failed_outcome(&job, e.to_string())).await;
            return;
        }
    };
    // (An object that is gone is found so by its job's first request.)
    if let FileRef::Local(p) = &file {
        if !p.exists() {
            return vanished(s, &job).await;
        }
    }
    let lease = s.settings.lease;
    // An operator's cancel arrives with a renewal: the text it fails with.
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<String>();
    let renewer = {
        let pool = s.pool.clone();
        let (id, worker) = (job.job.id, worker.to_string());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            let mut cancel = Some(cancel_tx);
            tick.tick().await;
            loop {
                tick.tick().await;
                match queue::renew(&pool, id, &worker, lease).await {
                    Ok(queue::Renewal::Renewed) => {}
                    Ok(queue::Renewal::Cancel(why)) => {
                        if let Some(tx) = cancel.take() {
                            let _ = tx.send(why);
                        }
                    }
                    Ok(queue::Renewal::Lost) => tracing::warn!("lost the lease on the job"),
                    Err(e) => {
                        tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot renew the lease")
                    }
                }
            }
        })
    };
    let started = Instant::now();
    let result = {
        let claim = import::Claim {
            target_version: job.target_version.as_deref(),
            size_seen: Some(job.size_seen),
            known,
        };
        let import = import::run_queued(&s.pool, &job.job, &file, worker, claim);
        let deadline = shutdown_deadline(s);
        tokio::select! {
            r = import => Ok(r),
            _ = deadline => Err(Stopped::Shutdown),
            Ok(why) = cancel_rx => Err(Stopped::Cancelled(why)),
        }
    };
    renewer.abort();
    let mut moved = Vec::new();
    match result {
        Err(Stopped::Cancelled(why)) => cancelled(s, &job, &file, why, &mut moved).await,
        Err(Stopped::Shutdown) => {
            // Dropping the import rolled its target transaction back.
            tracing::warn!("shutdown timeout: import rolled back, job requeued");
            release(s, &job, worker).await;
        }
        Ok(r) => settle(s, &job, &file, r, started, &mut moved).await,
    }
    moves::start_all(moved, s.shutdown.clone()).await;
}

/// An operator cancelled the running job: its import was dropped (its
/// target transaction rolled back); it fails with the operator's words
/// and its file is set aside.
async fn cancelled(
    s: &Shared,
    job: &queue::Claimed,
    file: &FileRef,
    why: String,
    moves: &mut Vec<Move>,
) {
    tracing::warn!(why = %why, "cancelled: import rolled back, the file is set aside");
    let outcome = failed_outcome(job, why);
    match record_failed(s, &outcome).await {
        Ok(_) => finish(s, job, file, &outcome, moves).await,
        Err(e) => {
            tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot record the cancel; its lease will expire")
        }
    }
}

/// Puts a job this worker abandoned back in the queue.
async fn release(s: &Shared, job: &queue::Claimed, worker: &str) {
    if let Err(e) = queue::release(&s.pool, job.job.id, worker).await {
        tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot requeue; its lease will expire");
    }
}

/// Logs and acts on the end of an import that ran to its end: a verdict
/// (the file's move is added to `moves`), or none (already written to
/// the job's row by the one error policy).
async fn settle(
    s: &Shared,
    job: &queue::Claimed,
    file: &FileRef,
    result: Result<JobOutcome, Unfinished>,
    started: Instant,
    moves: &mut Vec<Move>,
) {
    match result {
        Ok(outcome) => {
            if outcome.status == JobStatus::Failed {
                // Already scrubbed by the importer; the first error says why.
                let first = outcome
                    .error
                    .as_deref()
                    .or(outcome.errors.first().map(|e| e.message.as_str()))
                    .unwrap_or("");
                tracing::warn!(
                    rows_read = outcome.counts.rows_read,
                    rows_rejected = outcome.counts.rows_rejected,
                    errors = outcome.errors_total,
                    error = %first,
                    "import failed; the file is set aside"
                );
            }
            tracing::info!(
                status = outcome.status.as_str(),
                rows_read = outcome.counts.rows_read,
                rows_inserted = outcome.counts.rows_inserted,
                rows_updated = outcome.counts.rows_updated,
                rows_deleted = outcome.counts.rows_deleted,
                rows_rejected = outcome.counts.rows_rejected,
                seconds = started.elapsed().as_secs_f64(),
                "import finished"
            );
            finish(s, job, file, &outcome, moves).await;
        }
        Err(Unfinished { error, action }) => {
            // `run_queued` decided with the one error policy and wrote the
            // decision to the job row: a retry or a wait put it back in the
            // queue with its delay. Here it is only logged and acted on.
            let text = secret::scrub_known(&error.to_string());
            match action {
                Action::Retry(delay) => {
                    if unreachable_target(&error) {
                        s.health.target_error();
                    }
                    tracing::warn!(error = %text, retry_in = ?delay, "import could not run; the file stays in the inbox");
                }
                Action::WaitForFix => {
                    let attempt = u32::try_from(job.job.attempts - 1).unwrap_or(0);
                    let delay = import::config_recheck(attempt);
                    tracing::warn!(error = %text, recheck_in = ?delay, "configuration error: the file waits in the inbox until the project is fixed");
                }
                Action::Vanished => vanished(s, job).await,
                Action::Fail => {
                    tracing::warn!(error = %text, "import failed; the file is set aside");
                    // An unreadable file's report says why in the OS's words.
                    let text = match &error {
                        ImportError::FileUnreadable { source, .. } => source.to_string(),
                        _ => text,
                    };
                    let outcome = failed_outcome(job, text);
                    finish(s, job, file, &outcome, moves).await;
                }
            }
        }
    }
}

/// Imports a claimed batch of several jobs of one table, in one target
/// transaction ([`import::run_batch`]) under one lease renewal for all;
/// their verdicts are written in one statement, then their files moved
/// in one pass.
///
/// An operator's cancel of one job of the batch drops the whole batch
/// (its target transaction rolls back): that job fails with the
/// operator's words, the others are put back in the queue as they were
/// (at the head of their table, taken again at once). So does the
/// shutdown timeout, for every job.
async fn process_batch(
    s: &Shared,
    worker: &str,
    jobs: Vec<queue::Claimed>,
    known: &mut import::Known,
) {
    let mut files = Vec::with_capacity(jobs.len());
    for job in jobs {
        match FileRef::parse(&job.job.file_path) {
            Err(e) => {
                tracing::warn!(job_id = %job.job.id, error = %e, "the job's file cannot be told; the job fails");
                let _ = record_failed(s, &failed_outcome(&job, e.to_string())).await;
            }
            Ok(FileRef::Local(p)) if !p.exists() => vanished(s, &job).await,
            Ok(f) => files.push((job, f)),
        }
    }
    if files.is_empty() {
        return;
    }
    let ids: Vec<Uuid> = files.iter().map(|(j, _)| j.job.id).collect();
    let lease = s.settings.lease;
    // An operator's cancel arrives with a renewal: which job, and the text.
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<(Uuid, String)>();
    let renewer = {
        let (pool, worker, ids) = (s.pool.clone(), worker.to_string(), ids.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            let mut cancel = Some(cancel_tx);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store::batch::renew(&pool, &ids, &worker, lease).await {
                    Ok(held) => {
                        if held.len() < ids.len() {
                            tracing::warn!(
                                lost = ids.len() - held.len(),
                                "lost the lease on jobs of the batch"
                            );
                        }
                        if let Some((id, Some(why))) = held.into_iter().find(|(_, c)| c.is_some()) {
                            if let Some(tx) = cancel.take() {
                                let _ = tx.send((id, why));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot renew the leases")
                    }
                }
            }
        })
    };
    let started = Instant::now();
    let result = {
        let batch: Vec<BatchJob<'_>> = files
            .iter()
            .map(|(j, f)| BatchJob {
                job: &j.job,
                file: f,
                target_version: j.target_version.as_deref(),
                size_seen: j.size_seen,
            })
            .collect();
        let run = import::run_batch(&s.pool, &batch, worker, known);
        tokio::select! {
            r = run => Ok(r),
            _ = shutdown_deadline(s) => Err(None),
            Ok(c) = cancel_rx => Err(Some(c)),
        }
    };
    renewer.abort();
    let mut moved = Vec::new();
    match result {
        Ok(results) => {
            tracing::debug!(
                files = files.len(),
                seconds = started.elapsed().as_secs_f64(),
                "batch imported"
            );
            for ((job, file), r) in files.iter().zip(results) {
                let span = tracing::info_span!("import", job_id = %job.job.id, project = %job.job.project_name, file = %job.job.file_name);
                settle(s, job, file, r, started, &mut moved)
                    .instrument(span)
                    .await;
            }
        }
        Err(Some((id, why))) => {
            for (job, file) in &files {
                if job.job.id == id {
                    cancelled(s, job, file, why.clone(), &mut moved).await;
                } else {
                    release(s, job, worker).await;
                }
            }
        }
        Err(None) => {
            tracing::warn!(
                files = files.len(),
                "shutdown timeout: the batch rolled back, its jobs requeued"
            );
            for (job, _) in &files {
                release(s, job, worker).await;
            }
        }
    }
    moves::start_all(moved, s.shutdown.clone()).await;
}

/// Ends `--shutdown-timeout` after shutdown began: an import still
/// running then is dropped (its target transaction rolls back).
fn shutdown_deadline(s: &Shared) -> impl std::future::Future<Output = ()> {
    let mut stop = s.shutdown.clone();
    let timeout = s.settings.shutdown_timeout;
    async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        tokio::time::sleep(timeout).await;
    }
}

/// Why a running import was dropped before it ended.
enum Stopped {
    /// The shutdown timeout passed.
    Shutdown,
    /// An operator cancelled the job (the text it fails with).
    Cancelled(String),
}

/// Whether the import failed because its target database could not be
/// reached (`cpi_import_target_errors_total`), rather than mid-import.
fn unreachable_target(e: &ImportError) -> bool {
    matches!(
        e,
        ImportError::TargetUnreachable { .. } | ImportError::ConnectTimeout { .. }
    )
}

/// Writes the verdict of a job that failed without a verdict on its rows.
async fn record_failed(
    s: &Shared,
    outcome: &JobOutcome,
) -> Result<(), crate::store::jobs::JobError> {
    crate::store::jobs::finish(
        &s.pool,
        outcome.job_id,
        JobStatus::Failed,
        &Default::default(),
        outcome.error.as_deref(),
        None,
        None,
    )
    .await
}

/// The outcome of a job that failed without a verdict on its rows.
fn failed_outcome(job: &queue::Claimed, error: String) -> JobOutcome {
    JobOutcome {
        job_id: job.job.id,
        file_name: job.job.file_name.clone(),
        status: JobStatus::Failed,
        target_table: None,
        mode: None,
        sha256: None,
        counts: Default::default(),
        error: Some(error),
        errors: Vec::new(),
        errors_total: 0,
        checks: Vec::new(),
    }
}

async fn vanished(s: &Shared, job: &queue::Claimed) {
    match queue::settle_vanished(&s.pool, job.job.id, &job.job.file_path).await {
        Ok(status) => tracing::info!(
            status = status.as_str(),
            "the file is gone (imported by another job, or removed)"
        ),
        Err(e) => {
            tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot record the vanished file")
        }
    }
}

/// Moves the file after its job is recorded: `processed/` for succeeded and
/// duplicate, `failed/` with `<name>.error.json` for failed. An object is
/// copied into its destination prefix, then deleted; `--inbox-root` does
/// not apply to it (it confines local paths).
async fn finish(
    s: &Shared,
    job: &queue::Claimed,
    file: &FileRef,
    outcome: &JobOutcome,
    moves: &mut Vec<Move>,
) {
    // The config as the claim read it: no second read per file.
    let Some(raw) = job.project_config.as_ref() else {
        tracing::warn!("project no longer exists; the file stays where it is");
        return;
    };
    let config: ProjectConfig = store::parse_config(raw).unwrap_or_default();
    let failed = outcome.status == JobStatus::Failed;
    let to = match file.destination(&config, failed) {
        Ok(to) => to,
        Err(e) => return tracing::warn!(error = %e, "the file stays where it is"),
    };
    let id = job.job.id.to_string();
    let short = &id[..8];
    let report = failed.then(|| error_report(job, outcome));
    match (file, to) {
        (FileRef::Local(path), Destination::Folder(dir)) => {
            let roots = &s.settings.inbox_roots;
            moves.push(Move::new(path.clone(), dir, short, report, roots));
        }
        (FileRef::Object(object), Destination::Prefix(to)) => {
            let client = object_storage::client(config.storage.as_ref()).await;
            let m = ObjectMove::new(client, object.clone(), to, short, report);
            moves::start(m, s.shutdown.clone()).await;
            s.moved_objects.lock().unwrap().push(file.clone());
        }
        // `destination` keeps a file's kind: a folder for a path, a prefix
        // for an object.
        (_, to) => tracing::warn!(destination = ?to, "the file stays where it is"),
    }
}

/// `<name>.error.json`'s content for a failed job.
fn error_report(job: &queue::Claimed, outcome: &JobOutcome) -> Vec<u8> {
    let report = inbox::ErrorReport {
        job_id: job.job.id.to_string(),
        project: &job.job.project_name,
        file: &job.job.file_name,
        error: outcome.error.as_deref(),
        errors: serde_json::to_value(&outcome.errors).unwrap_or_default(),
        errors_total: outcome.errors_total,
        checks: serde_json::to_value(&outcome.checks).unwrap_or_default(),
    };
    serde_json::to_vec_pretty(&report).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_failures_count_as_unreachable_targets() {
        let p = || "p".to_string();
        assert!(unreachable_target(&ImportError::ConnectTimeout {
            project: p(),
            after: Duration::from_secs(5),
        }));
        assert!(unreachable_target(&ImportError::TargetUnreachable {
            project: p(),
            source: sqlx::Error::PoolTimedOut,
        }));
        assert!(!unreachable_target(&ImportError::TargetTransient {
            project: p(),
            source: sqlx::Error::PoolTimedOut,
        }));
        assert!(!unreachable_target(&ImportError::ProjectNotFound(p())));
    }
}
