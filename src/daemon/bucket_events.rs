//! Bucket event notifications: for every `s3://` inbox whose project sets
//! `storage.events.queue_url`, the bucket's `ObjectCreated` events are read
//! from SQS and each new object of the inbox is queued at once, without a
//! listing. Events are hints: the scanner's periodic listing stays as the
//! backfill (a lost event, or the queue gone, delays a file by one
//! `--rescan`, never loses it), and the queue's dedupe makes an object
//! seen by both one job. A malformed or foreign message is logged and
//! dropped; a message is deleted only once its objects are queued.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::settings::Shared;
use crate::config::{Patterns, ProjectConfig};
use crate::location::FileRef;
use crate::object_storage::{self, events, S3Location, StorageConfig};
use crate::secret;
use crate::store::{self, queue, queue::QueuedFile};

/// How long the loop rests when no queue had a message. Receives are
/// short polls (a long poll holds some S3-compatible stores' SQS, moto's
/// among them, from taking the very events it waits for): one request a
/// second per queue when idle.
const WAIT: Duration = Duration::from_secs(1);
/// How often the projects (and their queues) are read again; while none
/// has a queue, every [`WAIT`] (a daemon starts before its first reconcile).
const REFRESH: Duration = Duration::from_secs(5);
/// Rounds of receives from one queue in a row at most, while each gives messages.
const BURST: usize = 100;
/// After a failed receive, the queue is tried again this much later.
const RETRY: Duration = Duration::from_secs(5);

/// An inbox whose bucket's events are read.
struct Watched {
    project: String,
    dir: String,
    prefix: S3Location,
    config: ProjectConfig,
    patterns: Patterns,
    storage: StorageConfig,
    queue_url: String,
    /// Not before (after a failed receive).
    next: Instant,
}

/// The inboxes with a queue (pure).
fn watched(rows: Vec<store::ProjectRow>, roots: &[std::path::PathBuf]) -> Vec<Watched> {
    rows.into_iter()
        .filter_map(|row| {
            let config = row.parsed.ok()?;
            let dir = config
                .inbox
                .clone()
                .filter(|d| object_storage::is_object(d))?;
            let storage = config.storage.clone()?;
            let queue_url = storage.events.as_ref()?.queue_url.clone();
            if !crate::rules::outside_roots(&config, roots).is_empty() {
                return None;
            }
            let prefix = object_storage::parse_location(&dir).ok()?;
            Some(Watched {
                project: row.name,
                patterns: config.patterns(),
                dir,
                prefix,
                config,
                storage,
                queue_url,
                next: Instant::now(),
            })
        })
        .collect()
}

/// The files of `created` that are the inbox's (directly under its
/// prefix, matched by a pattern), ready to queue (pure).
fn ours(w: &Watched, created: Vec<events::Created>) -> Vec<QueuedFile> {
    created
        .into_iter()
        .filter(|c| {
            c.object.bucket == w.prefix.bucket && w.prefix.direct_name(&c.object.key).is_some()
        })
        .filter_map(|c| {
            let file = FileRef::Object(c.object);
            let relative = file.relative_to(Some(&w.dir));
            if !w.patterns.matches(&relative) {
                return None;
            }
            let target = w
                .config
                .options_with(&w.patterns, &relative)
                .map(|o| (o.table.to_string(), o.mode));
            Some(QueuedFile {
                file,
                target,
                written: Some(c.at),
                seen: Some(c.at),
            })
        })
        .collect()
}

/// One receive, or four at once when `wide`: their messages, or the first
/// error when every one failed (one failing among good ones is tried again
/// next round).
/// One at a time could not keep up with ten concurrent uploads to moto:
/// its queue grew, and with it the cost of every queue operation, until a
/// burst of 1,000 uploads took 13 s and their events came over 40 s (p50
/// 23 s; a Python reader alike); four at once drained it as fast as it
/// filled (p50 0.02 s). SQS serves each receive from a sample of its
/// servers, so concurrent receives help there too.
async fn receive_round(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    wide: bool,
) -> Result<Vec<(String, String)>, object_storage::StorageError> {
    let one = || object_storage::receive_events(client, queue_url, Duration::ZERO);
    if !wide {
        return one().await;
    }
    let (a, b, c, d) = tokio::join!(one(), one(), one(), one());
    let mut messages = Vec::new();
    let mut error = None;
    let mut any_ok = false;
    for r in [a, b, c, d] {
        match r {
            Ok(m) => {
                any_ok = true;
                messages.extend(m);
            }
            Err(e) => error = error.or(Some(e)),
        }
    }
    match error {
        Some(e) if !any_ok => Err(e),
        _ => Ok(messages),
    }
}

/// Runs until shutdown.
pub(super) async fn run(s: Shared) {
    let mut shutdown = s.shutdown.clone();
    let mut inboxes: Vec<Watched> = Vec::new();
    let mut clients: HashMap<String, aws_sdk_sqs::Client> = HashMap::new();
    let mut refreshed: Option<Instant> = None;
    let queued_by = format!("events:{}", std::process::id());
    loop {
        if *shutdown.borrow() {
            return;
        }
        let every = if inboxes.is_empty() { WAIT } else { REFRESH };
        if refreshed.is_none_or(|t| t.elapsed() >= every) {
            match store::list_projects(&s.pool).await {
                Ok(rows) => inboxes = watched(rows, &s.settings.inbox_roots),
                Err(e) => {
                    tracing::warn!(error = %secret::scrub_known(&e.to_string()), "bucket events: cannot list projects")
                }
            }
            refreshed = Some(Instant::now());
        }
        let due: Vec<usize> = (0..inboxes.len())
            .filter(|&i| inboxes[i].next <= Instant::now())
            .collect();
        let mut any = false;
        if due.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(WAIT) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        for i in due {
            let w = &mut inboxes[i];
            let client = match clients.get(&w.queue_url) {
                Some(c) => c.clone(),
                None => {
                    let c = object_storage::queue_client(&w.storage, &w.queue_url).await;
                    clients.insert(w.queue_url.clone(), c.clone());
                    c
                }
            };
            // Drain while the queue gives messages (a burst of uploads), at
            // most BURST receives before the other inboxes' turn. Not only
            // while batches are full: moto (and SQS, which samples its
            // servers) often gives fewer than ten while more are waiting,
            // and resting a second after each such batch held a burst of
            // 1,000 uploads to ~10 objects a second.
            // One receive while idle (an idle queue costs one request a
            // second, as before); four at once from the round after one
            // that gave messages.
            let mut wide = false;
            for _ in 0..BURST {
                let got = tokio::select! {
                    r = receive_round(&client, &w.queue_url, wide) => r,
                    _ = shutdown.changed() => return,
                };
                let messages = match got {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(project = %w.project, error = %secret::scrub_known(&e.to_string()), retry_in = ?RETRY, "bucket events: cannot receive; the listing goes on");
                        w.next = Instant::now() + RETRY;
                        break;
                    }
                };
                let drained = messages.is_empty();
                any |= !drained;
                wide = !drained;
                let mut files = Vec::new();
                let mut receipts = Vec::new();
                for (receipt, body) in messages {
                    match events::created(&body) {
                        Ok(created) => files.extend(ours(w, created)),
                        Err(e) => {
                            tracing::warn!(project = %w.project, error = %e, "bucket events: a message dropped")
                        }
                    }
                    receipts.push(receipt);
                }
                if !files.is_empty() {
                    match queue::enqueue(&s.pool, &w.project, &files, &queued_by).await {
                        Ok(queued) => {
                            for (id, file) in &queued {
                                tracing::info!(project = %w.project, file = %file, job = %id, "bucket event: queued");
                            }
                            if !queued.is_empty() {
                                s.job_ready.notify_waiters();
                            }
                        }
                        Err(e) => {
                            // Not deleted: SQS gives the messages again.
                            tracing::warn!(project = %w.project, error = %secret::scrub_known(&e.to_string()), "bucket events: cannot queue; the messages come again");
                            break;
                        }
                    }
                }
                if let Err(e) =
                    object_storage::delete_events(&client, &w.queue_url, &receipts).await
                {
                    tracing::warn!(project = %w.project, error = %secret::scrub_known(&e.to_string()), "bucket events: cannot delete handled messages (they come again; the queue dedupes)");
                }
                if drained {
                    break;
                }
            }
        }
        if !any {
            tokio::select! {
                _ = tokio::time::sleep(WAIT) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
