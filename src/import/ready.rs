//! A file made ready to load (its project and target, source, options,
//! description on the job row and, for a likely duplicate, its hash), and
//! its verdict from the load's result: the steps before and after a load
//! that one file and a batch of files share.

use std::time::Instant;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::context::{Ctx, Loaded};
use super::error::ImportError;
use super::failure::Failure;
use super::open::changed_message;
use super::pipeline::RowError;
use super::{options, reader};
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

/// Milliseconds since `t`, for the debug timings.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// A file ready to load: what its load needs, and its verdict so far.
pub(super) struct Prepared {
    /// What the load needs to know.
    pub ctx: Ctx,
    /// The verdict, filled in by [`conclude`].
    pub outcome: JobOutcome,
    /// The target's connection row.
    pub connection_id: Uuid,
    /// The target's URL (registered with the scrubber).
    pub url: Secret,
    /// The job's file path, as its errors name it.
    pub file_path: String,
    /// Debug timings of the steps so far.
    pub project_ms: f64,
    /// The same, for opening, options, description and hash.
    pub describe_ms: f64,
}

/// Everything before the load: the project and its target, the file's
/// source and options, its description on the job row when the claim's
/// differs, and its hash when it is a likely duplicate.
pub(super) async fn prepare(
    mgmt: &PgPool,
    job: &jobs::Job,
    file: &FileRef,
    claim: Option<&mut Claim<'_>>,
) -> Result<Prepared, ImportError> {
    let project_name = job.project_name.clone();
    let t = Instant::now();
    let (target_version, size_seen, known) = match claim {
        Some(c) => (c.target_version, c.size_seen, Some(&mut *c.known)),
        None => (None, None, None),
    };
    let (project, url) = match (known, job.project_id) {
        (Some(k), Some(id)) => k.target(mgmt, id, &project_name, target_version).await?,
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
    let size_seen = match size_seen {
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
        // Written with the verdict (`file_sha256` of the job's final
        // update, one statement per batch), not now: no write per file.
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
    let outcome = JobOutcome {
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
    Ok(Prepared {
        ctx,
        outcome,
        // `project_target` checked it is there.
        connection_id: project.connection_id.unwrap_or_default(),
        url,
        file_path: job.file_path.clone(),
        project_ms,
        describe_ms: ms(t),
    })
}

/// The verdict of a prepared file from its load's result: `Ok` when the
/// file got one (succeeded, duplicate, or failed for its content).
pub(super) fn conclude(
    p: Prepared,
    result: Result<Loaded, Failure>,
) -> Result<JobOutcome, ImportError> {
    let Prepared {
        ctx,
        mut outcome,
        url,
        file_path,
        ..
    } = p;
    match result {
        // A read from an object store that failed on the way rejected the
        // "file" for a reason that is not its content: the transaction
        // rolled back, and the object is tried again rather than set aside.
        Err(Failure::Bad { message, .. }) if ctx.source.read_failed() => {
            Err(object_failed(&file_path, std::io::Error::other(message)))
        }
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
        Err(f) => {
            let r = f.refused(&file_path, &ctx.project)?;
            outcome.status = JobStatus::Failed;
            outcome.error = Some(secret::scrub(&r.message, &[&url]));
            outcome.errors = r.errors;
            outcome.errors_total = r.errors_total;
            outcome.counts = r.counts;
            outcome.checks = r.checks;
            Ok(outcome)
        }
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
