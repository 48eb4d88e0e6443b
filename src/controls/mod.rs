//! The operator's controls over a job's file (issue 29): a retry puts a
//! failed file back through its inbox's normal path, so that it ends in the
//! top-level `processed/` or `failed/` exactly once, whoever runs it (a
//! daemon worker, or `cpi jobs retry` in the foreground).
//!
//! A retried file set aside in `failed/` goes back to the inbox under its
//! own name, its old `.error.json` removed (the job row keeps the last
//! run's errors until it runs again); the job then points at the inbox
//! again. A file that is gone, or whose name is taken in the inbox, is
//! said so and nothing changes.

use std::path::{Path, PathBuf};

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::config::ProjectConfig;
use crate::inbox;
use crate::location::{Destination, FileRef};
use crate::store;
use crate::store::jobs::{self, Job, JobError, JobStatus};
use crate::store::queue::{self, Actor};

mod objects;
mod outcome;

use outcome::{report_of, short};
pub use outcome::{Cancel, ControlError, Retried};

/// Where a job's file is now.
#[derive(Debug, PartialEq, Eq)]
enum Located {
    /// Where the job says (a file `cpi import` was given, or one the
    /// daemon could not move).
    InPlace(PathBuf),
    /// Set aside in the inbox's `failed/`: `file` goes back to `back`, its
    /// `report` (if any) is removed.
    SetAside {
        file: PathBuf,
        report: Option<PathBuf>,
        back: PathBuf,
    },
}

/// Puts failed job `id` back through its inbox (see the module doc) and
/// in the queue, with its `job.retried` event saying who and why.
pub async fn retry(
    db: &PgPool,
    id: Uuid,
    force: bool,
    by: &Actor<'_>,
) -> Result<Retried, ControlError> {
    let job = jobs::get(db, id).await?.ok_or(JobError::NotFound(id))?;
    queue::check_retryable(&job, force)?;
    let config = project_config(db, &job.project_name).await?;
    if let (Some(config), Ok(FileRef::Object(o))) = (&config, FileRef::parse(&job.file_path)) {
        return objects::bring_back(db, &job, &o, config, by, Write::Requeue).await;
    }
    let gone = || JobError::FileGone {
        id,
        path: job.file_path.clone(),
    };
    let Some(found) = locate(&job, config.as_ref()) else {
        return Err(gone().into());
    };
    let (file, report, back) = match found {
        Located::InPlace(path) => {
            let job = write_alone(db, Write::Requeue, &job, &path.to_string_lossy(), by).await?;
            return Ok(Retried {
                job,
                returned: false,
            });
        }
        Located::SetAside { file, report, back } => (file, report, back),
    };
    if back.exists() {
        return Err(ControlError::InboxTaken {
            id,
            path: back.display().to_string(),
        });
    }
    // The row first: its path then holds the queue's one-active-job-per-file
    // index entry, so a scan that sees the file come back cannot queue it
    // a second time; it waits for this transaction and finds the job.
    let mut tx = db.begin().await.map_err(JobError::Db)?;
    let requeued = write(&mut tx, Write::Requeue, &job, &back.to_string_lossy(), by).await?;
    let moved = |e: std::io::Error, from: &Path, to: &Path| ControlError::Move {
        id,
        from: from.display().to_string(),
        to: to.display().to_string(),
        source: e,
    };
    move_back(&file, &back, &short(id)).map_err(|e| moved(e, &file, &back))?;
    if let Err(e) = tx.commit().await {
        // The job stays failed: so does its file.
        let undo = std::fs::rename(&back, &file);
        tracing::warn!(file = %back.display(), undone = undo.is_ok(), "the retry could not be recorded");
        return Err(JobError::Db(e).into());
    }
    if let Some(report) = report {
        if let Err(e) = std::fs::remove_file(&report) {
            tracing::warn!(report = %report.display(), error = %e, "cannot remove the old report of a retried file");
        }
    }
    Ok(Retried {
        job: requeued,
        returned: true,
    })
}

/// The most failed jobs one bulk retry takes (run it again for more).
pub const BULK_RETRY_LIMIT: i64 = 1000;

/// Retries every failed job `filter` names (at most [`BULK_RETRY_LIMIT`],
/// oldest verdict first), each as [`retry`] does: for the daemon's workers
/// to run. Each job's outcome, in order; one that cannot be retried (its
/// file gone, its name taken) changes nothing and does not stop the rest.
pub async fn retry_failed(
    db: &PgPool,
    filter: &queue::FailedFilter,
    by: &Actor<'_>,
) -> Result<Vec<(Uuid, Result<Retried, ControlError>)>, ControlError> {
    let ids = queue::failed_ids(db, filter, BULK_RETRY_LIMIT).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push((id, retry(db, id, false, by).await));
    }
    Ok(out)
}

/// Queues a new job that imports succeeded (or duplicate) job `id`'s file
/// again on purpose (`replay_of` names `id`; its import supersedes the
/// target ledger's entry instead of calling the file a duplicate), with
/// its `job.replayed` event saying who and why. The file is found where the
/// job says or in its inbox's `processed/` (as `<name>` or `<job>_<name>`),
/// told from another file of that name by its content (the job's size
/// and sha256), and goes back into the inbox: it ends in `processed/` or
/// `failed/` again, once.
pub async fn replay(db: &PgPool, id: Uuid, by: &Actor<'_>) -> Result<Retried, ControlError> {
    let job = jobs::get(db, id).await?.ok_or(JobError::NotFound(id))?;
    queue::check_replayable(&job)?;
    let config = project_config(db, &job.project_name).await?;
    if let (Some(config), Ok(FileRef::Object(o))) = (&config, FileRef::parse(&job.file_path)) {
        return objects::bring_back(db, &job, &o, config, by, Write::Replay).await;
    }
    let found = {
        let (job, config) = (job.clone(), config.clone());
        tokio::task::spawn_blocking(move || locate_processed(&job, config.as_ref()))
            .await
            .ok()
            .flatten()
    };
    let Some(found) = found else {
        return Err(JobError::FileGone {
            id,
            path: job.file_path.clone(),
        }
        .into());
    };
    let (file, back) = match found {
        Located::InPlace(path) => {
            let job = write_alone(db, Write::Replay, &job, &path.to_string_lossy(), by).await?;
            return Ok(Retried {
                job,
                returned: false,
            });
        }
        Located::SetAside { file, back, .. } => (file, back),
    };
    if back.exists() {
        return Err(ControlError::InboxTaken {
            id,
            path: back.display().to_string(),
        });
    }
    // The row first, as for a retry: it holds the file's path in the
    // one-active-job-per-file index before the file is back.
    let mut tx = db.begin().await.map_err(JobError::Db)?;
    let created = write(&mut tx, Write::Replay, &job, &back.to_string_lossy(), by).await?;
    move_back(&file, &back, &short(created.id)).map_err(|e| ControlError::Move {
        id,
        from: file.display().to_string(),
        to: back.display().to_string(),
        source: e,
    })?;
    if let Err(e) = tx.commit().await {
        let undo = std::fs::rename(&back, &file);
        tracing::warn!(file = %back.display(), undone = undo.is_ok(), "the replay could not be recorded");
        return Err(JobError::Db(e).into());
    }
    Ok(Retried {
        job: created,
        returned: true,
    })
}

/// Cancels job `id`: a queued job fails now with `cancelled by WHO: WHY`
/// and its file goes to `failed/` with a report saying so; a running job's
/// worker is asked to stop (its import rolls back and the file goes to
/// `failed/` the same way). The `job.cancelled` event says who and why.
pub async fn cancel(db: &PgPool, id: Uuid, by: &Actor<'_>) -> Result<Cancel, ControlError> {
    let job = jobs::get(db, id).await?.ok_or(JobError::NotFound(id))?;
    let why = match by.reason {
        Some(r) => format!("cancelled by {}: {r}", by.who),
        None => format!("cancelled by {}", by.who),
    };
    if job.status != JobStatus::Queued {
        let mut tx = db.begin().await.map_err(JobError::Db)?;
        let cancelled = queue::cancel(&mut *tx, &job, &why, by).await?;
        audited(&mut tx, by).await?;
        tx.commit().await.map_err(JobError::Db)?;
        return Ok(Cancel {
            job,
            cancelled,
            moved: None,
        });
    }
    let config = project_config(db, &job.project_name).await?;
    let mut failed = job.clone();
    failed.status = JobStatus::Failed;
    failed.error = Some(why.clone());
    if let (Some(config), Ok(FileRef::Object(o))) = (&config, FileRef::parse(&job.file_path)) {
        let (cancelled, moved) =
            objects::cancel_queued(db, &job, &failed, &o, config, &why, by).await?;
        return Ok(Cancel {
            job: failed,
            cancelled,
            moved,
        });
    }
    // The verdict and the move in one transaction: until it commits the
    // job is queued and holds the file's path, so no scan queues the file
    // again before it is in `failed/`.
    let mut tx = db.begin().await.map_err(JobError::Db)?;
    let cancelled = queue::cancel(&mut *tx, &job, &why, by).await?;
    audited(&mut tx, by).await?;
    let path = PathBuf::from(&job.file_path);
    let dir = match (&config, FileRef::parse(&job.file_path)) {
        (Some(config), Ok(file @ FileRef::Local(_))) if path.is_file() => {
            match file.destination(config, true) {
                Ok(Destination::Folder(dir)) => Some(dir),
                _ => None,
            }
        }
        _ => None,
    };
    let short = short(id);
    let moved = match dir {
        Some(dir) => {
            Some(
                inbox::move_into(&path, &dir, &short).map_err(|e| ControlError::Move {
                    id,
                    from: path.display().to_string(),
                    to: dir.display().to_string(),
                    source: e,
                })?,
            )
        }
        None => None,
    };
    if let Err(e) = tx.commit().await {
        if let Some(to) = &moved {
            let undo = std::fs::rename(to, &path);
            tracing::warn!(file = %to.display(), undone = undo.is_ok(), "the cancel could not be recorded");
        }
        return Err(JobError::Db(e).into());
    }
    if let Some(to) = &moved {
        if let Err(e) = inbox::write_report_beside(to, &short, &report_of(&failed)) {
            tracing::warn!(file = %to.display(), error = %e, "cannot write the report beside the cancelled file");
        }
    }
    Ok(Cancel {
        job: failed,
        cancelled,
        moved,
    })
}

/// The job row a retry or a replay writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// The job queued again ([`queue::requeue`]).
    Requeue,
    /// Its replay queued ([`queue::create_replay`]).
    Replay,
}

/// Writes the job row (with its event) and the API action's audit row in
/// `tx`, the action's transaction.
pub(crate) async fn write(
    tx: &mut PgConnection,
    how: Write,
    job: &Job,
    path: &str,
    by: &Actor<'_>,
) -> Result<Job, JobError> {
    let written = match how {
        Write::Requeue => queue::requeue(&mut *tx, job, path, by).await?,
        Write::Replay => queue::create_replay(&mut *tx, job, path, by).await?,
    };
    audited(tx, by).await?;
    Ok(written)
}

/// [`write`] in a transaction of its own.
pub(crate) async fn write_alone(
    db: &PgPool,
    how: Write,
    job: &Job,
    path: &str,
    by: &Actor<'_>,
) -> Result<Job, JobError> {
    let mut tx = db.begin().await?;
    let written = write(&mut tx, how, job, path, by).await?;
    tx.commit().await?;
    Ok(written)
}

/// The API action's audit row, if any, in `tx`: it commits with the
/// change or not at all.
pub(crate) async fn audited(tx: &mut PgConnection, by: &Actor<'_>) -> Result<(), JobError> {
    match by.audit {
        Some(row) => Ok(row.record(tx).await?),
        None => Ok(()),
    }
}

/// Where a finished job's file is: where the job says (a file given to
/// `cpi import`), or in its inbox's `processed/`; in either place only
/// when its content is the job's (size and sha256, as far as known).
/// Blocking: it may hash files.
fn locate_processed(job: &Job, config: Option<&ProjectConfig>) -> Option<Located> {
    if crate::object_storage::is_object(&job.file_path) {
        return None;
    }
    let path = PathBuf::from(&job.file_path);
    let inbox = config
        .and_then(local_inbox)
        .unwrap_or_else(|| path.parent().map(Path::to_path_buf).unwrap_or_default());
    if path.is_file() && same_content(&path, job) {
        return Some(Located::InPlace(path));
    }
    let processed = config?.processed_path(&inbox);
    let back = inbox.join(&job.file_name);
    [
        format!("{}_{}", short(job.id), job.file_name),
        job.file_name.clone(),
    ]
    .into_iter()
    .map(|name| processed.join(name))
    .find(|file| file.is_file() && same_content(file, job))
    .map(|file| Located::SetAside {
        file,
        report: None,
        back,
    })
}

/// Whether `path` holds the content `job` imported (size, then sha256).
fn same_content(path: &Path, job: &Job) -> bool {
    let size = std::fs::metadata(path).map(|m| m.len()).ok();
    if job.file_size.is_some() && size.map(|s| s as i64) != job.file_size {
        return false;
    }
    match &job.file_sha256 {
        Some(sha) => crate::import::reader::hash_file(path).is_ok_and(|(h, _)| &h == sha),
        None => true,
    }
}

/// After a foreground run of a job whose file [`retry`] returned from
/// `failed/` (`returned`): moves the file to `processed/` or, with its
/// report, `failed/`, as a daemon worker does. A file that was retried
/// where it lay is left there (as `cpi import` leaves its files), and so
/// is one whose job stays queued (its run reached no verdict: the daemon
/// takes it from the inbox). Where the file went, if it moved.
pub async fn set_aside(
    db: &PgPool,
    id: Uuid,
    returned: bool,
) -> Result<Option<PathBuf>, ControlError> {
    let job = jobs::get(db, id).await?.ok_or(JobError::NotFound(id))?;
    let failed = match job.status {
        JobStatus::Failed => true,
        JobStatus::Succeeded | JobStatus::Duplicate => false,
        JobStatus::Queued | JobStatus::Running => return Ok(None),
    };
    let Some(config) = project_config(db, &job.project_name).await? else {
        return Ok(None);
    };
    let path = match FileRef::parse(&job.file_path) {
        Ok(FileRef::Local(path)) => path,
        Ok(FileRef::Object(o)) if returned => {
            return objects::set_aside(&job, o, &config, failed).await;
        }
        _ => return Ok(None),
    };
    let file = FileRef::Local(path.clone());
    if !returned || !path.is_file() {
        return Ok(None);
    }
    let Ok(Destination::Folder(dir)) = file.destination(&config, failed) else {
        return Ok(None);
    };
    let short = short(id);
    let to = inbox::move_into(&path, &dir, &short).map_err(|e| ControlError::Move {
        id,
        from: path.display().to_string(),
        to: dir.display().to_string(),
        source: e,
    })?;
    if failed {
        let report = report_of(&job);
        if let Err(e) = inbox::write_report_beside(&to, &short, &report) {
            tracing::warn!(file = %to.display(), error = %e, "cannot write the report beside the failed file");
        }
    }
    Ok(Some(to))
}

/// The project's parsed config (`None`: the project is gone or its config
/// unreadable: its file is then only retried where it lies).
async fn project_config(db: &PgPool, name: &str) -> Result<Option<ProjectConfig>, JobError> {
    match store::project_by_name(db, name).await {
        Ok(p) => Ok(p.and_then(|p| p.parsed.ok())),
        Err(store::StoreError::Db(e)) => Err(JobError::Db(e)),
        Err(_) => Ok(None),
    }
}

/// The project's inbox folder, when it is a local one (absolute).
fn local_inbox(config: &ProjectConfig) -> Option<PathBuf> {
    let inbox = config.inbox.as_deref()?;
    if crate::object_storage::is_object(inbox) {
        return None;
    }
    Some(std::path::absolute(inbox).unwrap_or_else(|_| PathBuf::from(inbox)))
}

/// Where the job's file is: where the job says, or set aside in its
/// inbox's `failed/` (as `<name>` or, when that was taken, `<job>_<name>`,
/// told from another job's file of the same name by the report beside it).
/// `None`: gone (or an object: its retry finds nothing here).
fn locate(job: &Job, config: Option<&ProjectConfig>) -> Option<Located> {
    let path = PathBuf::from(&job.file_path);
    if crate::object_storage::is_object(&job.file_path) {
        return None;
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let Some(config) = config else {
        return path.is_file().then_some(Located::InPlace(path));
    };
    // A job that an earlier version's retry pointed at `failed/`: its
    // inbox is the project's.
    let inbox = match local_inbox(config) {
        Some(i) if config.failed_path(&i) == dir => i,
        _ => dir,
    };
    let failed = config.failed_path(&inbox);
    let back = inbox.join(&job.file_name);
    let short = short(job.id);
    if path.is_file() {
        if path.parent() != Some(failed.as_path()) {
            return Some(Located::InPlace(path));
        }
        let report = report_for(&path, job.id, &short).unwrap_or(None);
        return Some(Located::SetAside {
            file: path,
            report,
            back,
        });
    }
    for name in [format!("{short}_{}", job.file_name), job.file_name.clone()] {
        let file = failed.join(name);
        if !file.is_file() {
            continue;
        }
        if let Ok(report) = report_for(&file, job.id, &short) {
            return Some(Located::SetAside { file, report, back });
        }
    }
    None
}

/// The report beside `file` that job `id` wrote (`Ok(None)`: none there);
/// `Err(())` when the report there is another job's (so is the file).
fn report_for(file: &Path, id: Uuid, short: &str) -> Result<Option<PathBuf>, ()> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut others = false;
    for report in [
        dir.join(format!("{name}.error.json")),
        dir.join(format!("{short}_{name}.error.json")),
    ] {
        let Ok(bytes) = std::fs::read(&report) else {
            continue;
        };
        let job_id = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("job_id").and_then(|j| j.as_str()).map(str::to_string));
        if job_id.as_deref() == Some(id.to_string().as_str()) {
            return Ok(Some(report));
        }
        others = true;
    }
    if others {
        Err(())
    } else {
        Ok(None)
    }
}

/// Moves `file` to `back` (a name checked free), never replacing a file
/// that appeared there meanwhile: a hard link, then the old name removed;
/// across file systems, [`inbox::move_into`] (which would pick `<job>_`
/// on a name taken meanwhile: refused, the file then stays as a new one).
fn move_back(file: &Path, back: &Path, short: &str) -> std::io::Result<()> {
    match std::fs::hard_link(file, back) {
        Ok(()) => std::fs::remove_file(file),
        Err(e)
            if e.raw_os_error() == Some(libc::EXDEV) || e.raw_os_error() == Some(libc::EPERM) =>
        {
            let dir = back.parent().unwrap_or(Path::new("."));
            let to = inbox::move_into(file, dir, short)?;
            if to == back {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{} appeared meanwhile; the file is now {}",
                        back.display(),
                        to.display()
                    ),
                ))
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
