//! The job lifecycle of one file: start the job row, check the project and
//! its connection (DESIGN §1: three checks, three errors, no environment
//! fallback), plan the file's options, hash a likely duplicate first,
//! connect to the target, load, and finish the job row with the verdict.

use std::time::Instant;

use serde::Serialize;
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::import::context::{Ctx, ProgressFn};
use crate::import::error::{config_recheck, error_policy, Action, ImportError};
use crate::import::failure::Failure;
use crate::import::load;
use crate::import::open::changed_message;
use crate::import::pipeline::RowError;
use crate::import::{options, reader, target, targets};
use crate::location::FileRef;
use crate::object_storage;
use crate::secret::{self, Secret};
use crate::store;
use crate::store::jobs::{self, Counts, JobError, JobStatus};

/// The verdict on one file.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutcome {
    /// The job row.
    pub job_id: Uuid,
    /// The file's name.
    pub file_name: String,
    /// Succeeded, duplicate or failed.
    pub status: JobStatus,
    /// The target table, once the options were resolved.
    pub target_table: Option<String>,
    /// The mode, once the options were resolved.
    pub mode: Option<crate::config::Mode>,
    /// The file's sha256, once known.
    pub sha256: Option<String>,
    /// Rows read and written.
    #[serde(flatten)]
    pub counts: Counts,
    /// Why the file failed (or, for a duplicate, which import it repeats).
    pub error: Option<String>,
    /// Row errors: the rejected rows with `skip_rows`, the failing row with `abort`.
    pub errors: Vec<RowError>,
    /// How many row errors there were in all.
    pub errors_total: u64,
    /// Every check's verdict, when the file has checks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::import::checks::CheckResult>,
}

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

/// What a worker keeps between jobs: the project and target URL it read
/// last, per project, with the versions of their rows. A claim says the
/// versions as they are now; equal versions are equal rows (the `xmin` of a
/// row changes with every update), so the reads are skipped.
#[derive(Default)]
pub struct Known {
    projects: std::collections::HashMap<Uuid, (String, store::ProjectRow, Secret)>,
}

impl Known {
    /// The project and its target URL: as read for an earlier job when
    /// `version` says the rows are unchanged, else read now (and kept).
    async fn target(
        &mut self,
        mgmt: &PgPool,
        id: Uuid,
        name: &str,
        version: Option<&str>,
    ) -> Result<(store::ProjectRow, Secret), ImportError> {
        if let (Some((v, project, url)), Some(version)) = (self.projects.get(&id), version) {
            if v == version && project.name == name {
                return Ok((project.clone(), url.clone()));
            }
        }
        let (project, url) = project_target(mgmt, name).await?;
        match version {
            Some(v) if project.id == id => {
                self.projects
                    .insert(id, (v.to_string(), project.clone(), url.clone()));
            }
            _ => {
                self.projects.remove(&id);
            }
        }
        Ok((project, url))
    }
}

/// What the statement that started the job read along with it: the
/// daemon's claim, or `cpi import`'s insert ([`jobs::create_started`]).
pub struct Claim<'a> {
    /// The versions of the job's project and connection rows.
    pub target_version: Option<&'a str>,
    /// Whether a file of the job's queued size went into its queued table
    /// before (`None`: not asked; the job has no table yet).
    pub size_seen: Option<bool>,
    /// This worker's [`Known`].
    pub known: &'a mut Known,
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
        Err(e) => {
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
                return Err(unfinished);
            }
            if requeue && action == Action::Vanished {
                // The daemon settles it: a duplicate of the job that moved
                // the file, or vanished.
                return Err(unfinished);
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
            Err(unfinished)
        }
    }
}

/// Milliseconds since `t`, for the debug timings.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// The row errors, as `cpi_import_jobs.error_details`.
fn outcome_details(o: &JobOutcome) -> Option<serde_json::Value> {
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

/// The project's row and its target URL (registered with the scrubber).
pub(super) async fn project_target(
    mgmt: &PgPool,
    project_name: &str,
) -> Result<(store::ProjectRow, Secret), ImportError> {
    let store_error = |source: store::StoreError| match source {
        store::StoreError::Db(e) => ImportError::Management(JobError::Db(e)),
        source => ImportError::Store {
            project: project_name.to_string(),
            source,
        },
    };
    let project = store::project_by_name(mgmt, project_name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ImportError::ProjectNotFound(project_name.to_string()))?;
    let connection_id = project
        .connection_id
        .ok_or_else(|| ImportError::NoConnection(project_name.to_string()))?;
    let connection = store::connection_by_id(mgmt, connection_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ImportError::ConnectionNotFound {
            project: project_name.to_string(),
            id: connection_id,
        })?;
    let url: Secret = connection
        .url()
        .map_err(|e| ImportError::InvalidTargetUrl {
            project: project_name.to_string(),
            message: e.to_string(),
        })?;
    secret::register(&url);
    Ok((project, url))
}

async fn import_file(
    mgmt: &PgPool,
    job: &jobs::Job,
    file: &FileRef,
    progress: ProgressFn<'_>,
    mut claim: Option<Claim<'_>>,
) -> Result<JobOutcome, ImportError> {
    let project_name = job.project_name.clone();
    let t = Instant::now();
    let (project, url) = match (claim.as_mut(), job.project_id) {
        (Some(c), Some(id)) => {
            c.known
                .target(mgmt, id, &project_name, c.target_version)
                .await?
        }
        _ => project_target(mgmt, &project_name).await?,
    };
    let project_ms = ms(t);
    let t = Instant::now();
    let source = open_source(file, &project.parsed).await?;
    let opts = options::resolve_options(
        &project_name,
        &project.config,
        &project.parsed,
        &file.options_path(),
        &job.file_name,
    )?;

    let unreadable = |source| unreadable(&job.file_path, source);
    let (size, modified) = match &source {
        reader::Source::File(p) => {
            let m = std::fs::metadata(p).map_err(unreadable)?;
            (m.len(), m.modified().ok())
        }
        reader::Source::Object(o) => (o.size, None),
    };
    let table_label = opts.table.to_string();
    // A queued job already holds its table, mode and size (the scanner
    // wrote them): no write, no commit, unless something differs.
    let known = job.target_table.as_deref() == Some(table_label.as_str())
        && job.mode == Some(opts.mode)
        && job.file_size == i64::try_from(size).ok();
    // Hashing first costs a pass over the file before the first row
    // moves. Only a file the size of one already imported is worth it (a
    // likely duplicate, then refused without loading anything); any other
    // file is hashed as it streams and checked against the ledger before
    // commit. The claim answered for the job's table and size as queued;
    // otherwise the write of the table, mode and size answers.
    let size_seen = match claim.as_ref().and_then(|c| c.size_seen) {
        Some(seen) if known => seen,
        _ => {
            let mode = opts.mode;
            jobs::describe(mgmt, job.id, project.id, size, &table_label, mode).await?
        }
    };
    let sha256 = if size_seen {
        let hash_source = source.clone();
        let hashed = tokio::task::spawn_blocking(move || reader::hash(&hash_source))
            .await
            .map_err(|e| unreadable(std::io::Error::other(e)))?;
        let sha = match hashed {
            // A file that grew (or shrank) since its size was taken: the
            // hash is not the file of that size.
            Ok((_, n)) if n != size => {
                return Err(ImportError::FileChanged {
                    path: job.file_path.clone(),
                    message: changed_message(&job.file_name, &format!("{n} bytes hashed"), size),
                })
            }
            Ok((sha, _)) => sha,
            Err(e) if source.read_failed() => return Err(object_failed(&job.file_path, e)),
            Err(e) => return Err(unreadable(e)),
        };
        jobs::record_sha256(mgmt, job.id, &sha).await?;
        Some(sha)
    } else {
        None
    };

    let ctx = Ctx {
        job_id: job.id,
        project: project_name.clone(),
        source: source.clone(),
        file: job.file_name.clone(),
        sha256: sha256.clone(),
        size,
        modified,
        opts,
        replay: job.replay_of.is_some(),
        dry_run: false,
    };
    let mut outcome = JobOutcome {
        job_id: job.id,
        file_name: job.file_name.clone(),
        status: JobStatus::Failed,
        target_table: Some(table_label),
        mode: Some(ctx.opts.mode),
        sha256,
        counts: Counts::default(),
        error: None,
        errors: Vec::new(),
        errors_total: 0,
        checks: Vec::new(),
    };

    let describe_ms = ms(t);
    let t = Instant::now();
    // `project_target` checked it is there.
    let connection_id = project.connection_id.unwrap_or_default();
    let (mut conn, reused) = match targets::take(connection_id, &url).await {
        Some(c) => (c, true),
        None => (target::connect(&url, &project_name).await?, false),
    };
    let connect_ms = ms(t);
    let t = Instant::now();
    let result = load::load(&mut conn, &ctx, progress).await;
    let load_ms = ms(t);
    // A read from an object store that failed on the way rejected the
    // "file" for a reason that is not its content: the transaction rolled
    // back, and the object is tried again rather than set aside.
    let result = match result {
        Err(Failure::Bad { message, .. }) if source.read_failed() => {
            targets::give_back(connection_id, &url, conn);
            return Err(object_failed(
                &job.file_path,
                std::io::Error::other(message),
            ));
        }
        r => r,
    };
    // Only a connection whose transaction ended (commit or rollback) is
    // reused; after a lost connection or a server error mid-COPY it is closed.
    match &result {
        Ok(_) | Err(Failure::Bad { .. } | Failure::Checks { .. } | Failure::Changed(_)) => {
            targets::give_back(connection_id, &url, conn)
        }
        Err(Failure::Transient(_)) => {
            let _ = conn.close().await;
        }
    }
    tracing::debug!(
        project_ms,
        describe_ms,
        connect_ms,
        reused,
        load_ms,
        "import step timings"
    );
    match result {
        Ok(l) => {
            // Recorded by the job's finish, in the same statement.
            if outcome.sha256.is_none() {
                outcome.sha256 = Some(l.sha256.clone());
            }
            outcome.status = l.status;
            outcome.counts = l.counts;
            outcome.error = l.note;
            outcome.errors = l.errors;
            outcome.errors_total = l.errors_total;
            outcome.checks = l.checks;
            Ok(outcome)
        }
        Err(Failure::Bad {
            message,
            errors,
            errors_total,
            counts,
        }) => {
            outcome.status = JobStatus::Failed;
            outcome.error = Some(secret::scrub(&message, &[&url]));
            outcome.errors = errors;
            outcome.errors_total = errors_total;
            outcome.counts = counts;
            Ok(outcome)
        }
        Err(Failure::Checks {
            message,
            results,
            counts,
        }) => {
            outcome.status = JobStatus::Failed;
            outcome.error = Some(secret::scrub(&message, &[&url]));
            outcome.checks = results;
            outcome.counts = counts;
            Ok(outcome)
        }
        Err(Failure::Changed(message)) => Err(ImportError::FileChanged {
            path: job.file_path.clone(),
            message,
        }),
        Err(Failure::Transient(source)) => Err(ImportError::TargetTransient {
            project: project_name,
            source,
        }),
    }
}

/// Where the job's bytes come from.
async fn open_source(
    file: &FileRef,
    parsed: &store::ParsedConfig,
) -> Result<reader::Source, ImportError> {
    let object = match file {
        FileRef::Local(p) => return Ok(reader::Source::File(p.clone())),
        FileRef::Object(o) => o.clone(),
    };
    let config = parsed.as_ref().ok().and_then(|c| c.storage.as_ref());
    let client = object_storage::client(config).await;
    let job_path = file.job_path();
    match object_storage::Object::open(client, object).await {
        Ok(o) => Ok(reader::Source::Object(o)),
        Err(e) if e.is_gone() => Err(ImportError::FileGone {
            path: job_path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()),
        }),
        Err(source) => Err(ImportError::ObjectUnavailable { source }),
    }
}

/// A file that cannot be read: gone (not found), or there but unreadable.
fn unreadable(path: &str, source: std::io::Error) -> ImportError {
    let path = path.to_string();
    if source.kind() == std::io::ErrorKind::NotFound {
        ImportError::FileGone { path, source }
    } else {
        ImportError::FileUnreadable { path, source }
    }
}

/// A read of an object that failed on the way (see [`ImportError::ObjectUnavailable`]).
fn object_failed(file_path: &str, e: std::io::Error) -> ImportError {
    ImportError::ObjectUnavailable {
        source: object_storage::StorageError {
            what: "read",
            url: file_path.to_string(),
            message: e.to_string(),
            status: None,
        },
    }
}
