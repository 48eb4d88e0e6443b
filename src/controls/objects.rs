//! The controls for an object of an `s3://` inbox, as for a file of a
//! folder inbox: a retry brings a failed object back from `failed/` into
//! the inbox (its report removed), a replay brings a processed one back
//! from `processed/`, and a cancelled queued object goes to `failed/` with
//! a report saying so. Each way is a server-side copy, then the delete of
//! the original once the job row says where the object is: nothing is
//! deleted before its copy exists and the queue knows it.
//!
//! A failed object is told from another of the same name in `failed/` by
//! the report beside it (the operator may have fixed it there, so its
//! content is no longer the job's); a processed one by the job's ETag (a
//! server-side copy of a single-part upload keeps it) or size (the copy of
//! a multipart upload gets an ETag of its own).

use std::path::PathBuf;

use sqlx::PgPool;

use super::outcome::{report_of, short, ControlError, Retried};
use crate::config::ProjectConfig;
use crate::controls::{audited, write_alone, Write};
use crate::location::{Destination, FileRef};
use crate::object_storage::{self, ObjectMove, ObjectRef, S3Location, StorageError};
use crate::store::jobs::{Job, JobError};
use crate::store::queue::{self, Actor, Cancelled};

/// An object job's inbox, and its `failed/` (or `processed/`) prefix.
fn places(o: &ObjectRef, config: &ProjectConfig, failed: bool) -> Option<(S3Location, S3Location)> {
    let inbox = config
        .inbox
        .as_deref()
        .and_then(|i| object_storage::parse_location(i).ok())
        .unwrap_or_else(|| o.location());
    match FileRef::Object(o.clone()).destination(config, failed) {
        Ok(Destination::Prefix(dir)) => Some((inbox, dir)),
        _ => None,
    }
}

/// How an object set aside is told from another of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tell {
    /// By the report beside it naming the job (`failed/`: the operator may
    /// have fixed the object there, so its content is no longer the job's);
    /// with no report there, it is taken.
    ByReport,
    /// By the job's ETag or size (`processed/`: nothing edits it there).
    ByContent,
}

/// The report written beside an object set aside: `<name>.error.json`, or
/// `<job>_<name>.error.json` when that was taken.
fn reports(dir: &S3Location, file: &ObjectRef, short: &str) -> [ObjectRef; 2] {
    [
        format!("{}.error.json", file.name()),
        format!("{short}_{}.error.json", file.name()),
    ]
    .map(|name| ObjectRef {
        bucket: dir.bucket.clone(),
        key: format!("{}{name}", dir.prefix),
        etag: None,
    })
}

/// A report is a few kilobytes; a larger object there is not one.
const MAX_REPORT_BYTES: u64 = 1 << 20;

/// Job `job`'s object set aside in `dir` (`<job>_<name>` or `<name>`), and
/// its report there, if any.
async fn find(
    client: &aws_sdk_s3::Client,
    dir: &S3Location,
    o: &ObjectRef,
    job: &Job,
    tell: Tell,
) -> Result<Option<(ObjectRef, Option<ObjectRef>)>, StorageError> {
    let short = short(job.id);
    for name in [format!("{short}_{}", o.name()), o.name().into()] {
        let candidate = ObjectRef {
            bucket: dir.bucket.clone(),
            key: format!("{}{name}", dir.prefix),
            etag: None,
        };
        let (size, etag) = match object_storage::head(client, &candidate).await {
            Ok(found) => found,
            Err(e) if e.is_gone() => continue,
            Err(e) => return Err(e),
        };
        let file = ObjectRef { etag, ..candidate };
        match tell {
            Tell::ByContent => {
                if o.etag.is_none() || file.etag == o.etag || job.file_size == Some(size as i64) {
                    return Ok(Some((file, None)));
                }
            }
            Tell::ByReport => {
                let mut others = false;
                for report in reports(dir, &file, &short) {
                    let Some(bytes) =
                        object_storage::get_small(client, &report, MAX_REPORT_BYTES).await?
                    else {
                        continue;
                    };
                    let id = serde_json::from_slice::<serde_json::Value>(&bytes)
                        .ok()
                        .and_then(|v| v.get("job_id").and_then(|j| j.as_str()).map(str::to_string));
                    if id.as_deref() == Some(job.id.to_string().as_str()) {
                        return Ok(Some((file, Some(report))));
                    }
                    others = true;
                }
                if !others {
                    return Ok(Some((file, None)));
                }
            }
        }
    }
    Ok(None)
}

/// Copies `file` back into `inbox` under the job's name, never over an
/// object there; the copy, with its ETag.
async fn come_back(
    client: &aws_sdk_s3::Client,
    job: &Job,
    name: &str,
    file: &ObjectRef,
    inbox: &S3Location,
) -> Result<ObjectRef, ControlError> {
    let store = |source| ControlError::Store { id: job.id, source };
    let back = ObjectRef {
        bucket: inbox.bucket.clone(),
        key: format!("{}{name}", inbox.prefix),
        etag: None,
    };
    if object_storage::exists(client, &back.bucket, &back.key)
        .await
        .map_err(store)?
    {
        return Err(ControlError::InboxTaken {
            id: job.id,
            path: back.url(),
        });
    }
    let etag = object_storage::copy(client, file, &back)
        .await
        .map_err(store)?;
    Ok(ObjectRef {
        etag: etag.or_else(|| file.etag.clone()),
        ..back
    })
}

/// Deletes what a control no longer needs; a failure leaves a stray copy
/// (never a loss), so it is logged, not returned.
async fn remove(client: &aws_sdk_s3::Client, o: &ObjectRef) {
    if let Err(e) = object_storage::delete(client, o).await {
        tracing::warn!(object = %o.url(), error = %e, "cannot remove the object a control left behind");
    }
}

/// Where the job's object is now, for a retry or a replay: still in the
/// inbox (its move after the job did not happen), or set aside.
enum Found {
    InPlace,
    SetAside(ObjectRef, Option<ObjectRef>),
    Gone,
}

async fn locate(
    client: &aws_sdk_s3::Client,
    o: &ObjectRef,
    dir: &S3Location,
    job: &Job,
    tell: Tell,
) -> Result<Found, ControlError> {
    let store = |source| ControlError::Store { id: job.id, source };
    match object_storage::head(client, o).await {
        Ok(_) => return Ok(Found::InPlace),
        Err(e) if e.is_gone() => {}
        Err(e) => return Err(store(e)),
    }
    Ok(
        match find(client, dir, o, job, tell).await.map_err(store)? {
            Some((file, report)) => Found::SetAside(file, report),
            None => Found::Gone,
        },
    )
}

fn gone(job: &Job) -> ControlError {
    JobError::FileGone {
        id: job.id,
        path: job.file_path.clone(),
    }
    .into()
}

/// The job's object back in its inbox and the job row saying so: found
/// where it was set aside, copied back, the row written (the job queued
/// again, or its replay), then the copy set aside (and its report) deleted.
/// An object still in the inbox is queued where it is. The controls'
/// retry of a failed object job (`Write::Requeue`) and replay of a
/// processed one (`Write::Replay`).
pub(super) async fn bring_back(
    db: &PgPool,
    job: &Job,
    o: &ObjectRef,
    config: &ProjectConfig,
    by: &Actor<'_>,
    how: Write,
) -> Result<Retried, ControlError> {
    let (failed, tell) = match how {
        Write::Requeue => (true, Tell::ByReport),
        Write::Replay => (false, Tell::ByContent),
    };
    let Some((inbox, dir)) = places(o, config, failed) else {
        return Err(gone(job));
    };
    let row = |path: String| async move { write_alone(db, how, job, &path, by).await };
    let client = object_storage::client(config.storage.as_ref()).await;
    let (file, report) = match locate(&client, o, &dir, job, tell).await? {
        Found::InPlace => {
            return Ok(Retried {
                job: row(o.job_path()).await?,
                returned: false,
            });
        }
        Found::SetAside(file, report) => (file, report),
        Found::Gone => return Err(gone(job)),
    };
    let back = come_back(&client, job, o.name(), &file, &inbox).await?;
    let queued = match row(back.job_path()).await {
        Ok(j) => j,
        Err(e) => {
            // Nothing changed: the object stays where it was set aside.
            remove(&client, &back).await;
            return Err(e.into());
        }
    };
    remove(&client, &file).await;
    if let Some(report) = report {
        remove(&client, &report).await;
    }
    Ok(Retried {
        job: queued,
        returned: true,
    })
}

/// The controls' cancel of a queued object job: the verdict, and the object
/// moved to `failed/` with `failed`'s report, in one transaction (a move
/// that fails changes nothing); where it went.
pub(super) async fn cancel_queued(
    db: &PgPool,
    job: &Job,
    failed: &Job,
    o: &ObjectRef,
    config: &ProjectConfig,
    why: &str,
    by: &Actor<'_>,
) -> Result<(Cancelled, Option<PathBuf>), ControlError> {
    let mut tx = db.begin().await.map_err(JobError::Db)?;
    let cancelled = queue::cancel(&mut *tx, job, why, by).await?;
    audited(&mut tx, by).await?;
    let mut moved = None;
    if let Some((_, dir)) = places(o, config, true) {
        let client = object_storage::client(config.storage.as_ref()).await;
        let mut m = ObjectMove::new(
            client,
            o.clone(),
            dir,
            &short(job.id),
            Some(report_of(failed)),
        );
        moved = m
            .attempt()
            .await
            .map_err(|source| ControlError::Store { id: job.id, source })?
            .map(|copy| PathBuf::from(copy.url()));
    }
    if let Err(e) = tx.commit().await {
        tracing::warn!(object = %o.url(), "the cancel could not be recorded; its object is in failed/");
        return Err(JobError::Db(e).into());
    }
    Ok((cancelled, moved))
}

/// The controls' set-aside of an object a foreground run finished.
pub(super) async fn set_aside(
    job: &Job,
    o: ObjectRef,
    config: &ProjectConfig,
    failed: bool,
) -> Result<Option<PathBuf>, ControlError> {
    let Some((_, dir)) = places(&o, config, failed) else {
        return Ok(None);
    };
    let client = object_storage::client(config.storage.as_ref()).await;
    let report = failed.then(|| report_of(job));
    let mut m = ObjectMove::new(client, o, dir, &short(job.id), report);
    m.attempt()
        .await
        .map(|copy| copy.map(|c| PathBuf::from(c.url())))
        .map_err(|source| ControlError::Store { id: job.id, source })
}
