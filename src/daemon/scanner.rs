//! The inbox scanner: watches and lists every project's inbox, tells when
//! a file is ready ([`crate::inbox::Readiness`]) and queues it once. What a
//! listing's ready files become ([`to_queue`]) is decided purely.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, Notify};

use super::settings::Shared;
use super::watch::{Backend, Events, Watcher};
use crate::config::{Patterns, ProjectConfig};
use crate::inbox::{self, Readiness};
use crate::location::FileRef;
use crate::metrics::Health;
use crate::object_storage::{self, AddressError, S3Location, StorageError};
use crate::secret;
use crate::store;
use crate::store::queue;
use crate::store::queue::QueuedFile;

/// One project's inbox as the scanner tracks it.
struct Inbox {
    dir: PathBuf,
    /// The inbox's prefix, when it is in object storage.
    prefix: Option<S3Location>,
    config: ProjectConfig,
    /// `config`'s file patterns, compiled when the config changes (not per scan).
    patterns: Patterns,
    settle: Duration,
    readiness: Readiness<FileRef>,
}

/// One file of a listing: where it is, its size and its last write.
type Listed = (FileRef, u64, SystemTime);

/// Why an inbox could not be listed.
#[derive(Debug, thiserror::Error)]
enum ListError {
    #[error(transparent)]
    Folder(#[from] std::io::Error),
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Store(#[from] StorageError),
}

/// Each project's inbox folder, config and settle window (pure): projects
/// without an inbox or with an invalid config are left out (logged).
fn inboxes_from(
    rows: Vec<store::ProjectRow>,
    settle: Duration,
) -> BTreeMap<String, (PathBuf, ProjectConfig, Duration)> {
    let mut out = BTreeMap::new();
    for row in rows {
        let config: ProjectConfig = match row.parsed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(project = %row.name, error = %e, "project config is invalid; its inbox is not watched");
                continue;
            }
        };
        let Some(dir) = config.inbox.clone() else {
            continue;
        };
        // Objects appear whole (a PUT is atomic): no settle window.
        let settle = if object_storage::is_object(&dir) {
            Duration::ZERO
        } else {
            config.settle().unwrap_or(settle)
        };
        out.insert(row.name, (PathBuf::from(dir), config, settle));
    }
    out
}

/// The files of a listing that belong to the project: those a pattern of
/// its config matches (pure).
fn ours(listing: Vec<Listed>, dir: &str, patterns: &Patterns) -> Vec<Listed> {
    listing
        .into_iter()
        .filter(|(f, _, _)| patterns.matches(&f.relative_to(Some(dir))))
        .collect()
}

/// What a listing's ready files become in the queue (pure): each with its
/// table and mode when the config's options resolve (the queue orders and
/// serializes jobs per table), and an object's last write (the enqueue
/// skips an object imported since), and `seen` (when the listing began:
/// objects only, as `written`).
fn to_queue(
    ready: Vec<FileRef>,
    dir: &str,
    config: &ProjectConfig,
    patterns: &Patterns,
    written: &HashMap<FileRef, SystemTime>,
    seen: Option<SystemTime>,
) -> Vec<QueuedFile> {
    ready
        .into_iter()
        .map(|file| {
            let opts = config.options_with(patterns, &file.relative_to(Some(dir)));
            let target = opts.map(|o| (o.table.to_string(), o.mode));
            let written = written.get(&file).copied();
            QueuedFile {
                file,
                target,
                written,
                seen,
            }
        })
        .collect()
}

/// Watches and lists every project's inbox, and queues each file once it is
/// ready. Inboxes follow `cpi_projects` (whoever wrote the rows).
pub(super) async fn scan(
    s: Shared,
    backend: Backend,
    projects_changed: Arc<Notify>,
    health: Arc<Health>,
) {
    let (tx, mut events) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = Watcher::new(backend, Events::Arrivals, tx, health.clone())
        .map_err(
            |e| tracing::warn!(error = %e, "cannot watch inboxes; listing them every --rescan"),
        )
        .ok();
    if let (Some(w), Some(cap)) = (watcher.as_mut(), s.settings.inotify_watch_cap) {
        w.cap_native(cap);
    }
    let mut inboxes: BTreeMap<String, Inbox> = BTreeMap::new();
    // Inbox folder → project, for the watcher's events.
    let mut by_dir: HashMap<PathBuf, String> = HashMap::new();
    let mut dirty: HashSet<String> = HashSet::new();
    let mut next_full = Instant::now();
    let mut shutdown = s.shutdown.clone();
    let queued_by = format!("scanner:{}", std::process::id());
    loop {
        let pass = Instant::now();
        let full = pass >= next_full;
        // An upload after the move is a new file at the next listing. (Not
        // listed at once: each listing is one more chance for another
        // replica's import to commit while the enqueue runs.)
        let moved: Vec<FileRef> = std::mem::take(&mut *s.moved_objects.lock().unwrap());
        for ib in inboxes.values_mut() {
            for f in &moved {
                ib.readiness.forget(f);
            }
        }
        if full {
            match store::list_projects(&s.pool).await {
                Ok(rows) => {
                    let wanted = inboxes_from(rows, s.settings.settle);
                    let wanted = super::confine::watched(wanted, &s.settings.inbox_roots, &health);
                    inboxes
                        .retain(|name, ib| wanted.get(name).is_some_and(|(d, _, _)| *d == ib.dir));
                    for (name, (dir, config, settle)) in wanted {
                        let prefix = dir
                            .to_str()
                            .filter(|d| object_storage::is_object(d))
                            .map(object_storage::parse_location);
                        let prefix = match prefix {
                            None => {
                                if let Err(e) = std::fs::create_dir_all(&dir) {
                                    tracing::warn!(project = %name, inbox = %dir.display(), error = %e, "cannot create the inbox");
                                }
                                None
                            }
                            // A prefix needs no creating.
                            Some(Ok(p)) => Some(p),
                            Some(Err(e)) => {
                                tracing::warn!(project = %name, error = %e, "cannot list the inbox");
                                continue;
                            }
                        };
                        let ib = inboxes.entry(name).or_insert_with(|| Inbox {
                            dir: dir.clone(),
                            prefix,
                            patterns: config.patterns(),
                            config: config.clone(),
                            settle,
                            readiness: Readiness::default(),
                        });
                        if ib.config != config {
                            ib.patterns = config.patterns();
                            ib.config = config;
                        }
                        ib.settle = settle;
                    }
                    by_dir = inboxes
                        .iter()
                        .map(|(name, ib)| (ib.dir.clone(), name.clone()))
                        .collect();
                    if let Some(w) = watcher.as_mut() {
                        let paths: Vec<(PathBuf, bool)> = inboxes
                            .values()
                            .filter(|ib| ib.prefix.is_none())
                            .map(|ib| (ib.dir.clone(), false))
                            .collect();
                        w.set(&paths);
                    }
                    dirty.extend(inboxes.keys().cloned());
                }
                Err(e) => {
                    tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot list projects")
                }
            }
            next_full = Instant::now() + s.settings.rescan;
        }
        let mut listed = 0usize;
        for (name, ib) in inboxes.iter_mut() {
            if !dirty.contains(name) && !ib.readiness.settling() {
                continue;
            }
            listed += 1;
            // A listing is new work: shutdown does not wait for it (an
            // object store that stopped answering holds it for the
            // client's read timeout, a minute).
            let listed_at = SystemTime::now();
            let listing = tokio::select! {
                l = list(ib) => l,
                _ = shutdown.changed() => return,
            };
            let listing = match listing {
                Ok(l) => l,
                Err(e) => {
                    if ib.prefix.is_some() {
                        tracing::warn!(project = %name, error = %e, "cannot list the inbox")
                    } else {
                        tracing::debug!(project = %name, error = %e, "cannot list the inbox")
                    }
                    continue;
                }
            };
            let dir = ib.dir.to_string_lossy();
            let listing = ours(listing, &dir, &ib.patterns);
            let ready =
                ib.readiness
                    .observe(&listing, ib.settle, Instant::now(), SystemTime::now());
            let written: HashMap<FileRef, SystemTime> = if ib.prefix.is_some() {
                listing.into_iter().map(|(f, _, m)| (f, m)).collect()
            } else {
                HashMap::new()
            };
            let seen = ib.prefix.is_some().then_some(listed_at);
            let mut files = to_queue(ready, &dir, &ib.config, &ib.patterns, &written, seen);
            if ib.prefix.is_some() {
                // Moved by this process while the listing ran: the listing
                // may have seen it before the move. Forgotten at the next
                // pass (`moved` above), so an upload since is listed then.
                let moved = s.moved_objects.lock().unwrap();
                files.retain(|f| !moved.contains(&f.file));
            }
            match queue::enqueue(&s.pool, name, &files, &queued_by).await {
                Ok(queued) => {
                    for (id, file) in &queued {
                        tracing::info!(project = %name, file = %file, job = %id, "file ready: queued");
                    }
                    if !queued.is_empty() {
                        s.job_ready.notify_waiters();
                    }
                    if queued.len() < files.len() {
                        tracing::debug!(project = %name, files = files.len() - queued.len(), "already queued");
                    }
                }
                Err(e) => {
                    tracing::warn!(project = %name, files = files.len(), error = %secret::scrub_known(&e.to_string()), "cannot queue; will retry");
                    for f in &files {
                        ib.readiness.release(&f.file);
                    }
                }
            }
        }
        dirty.clear();
        if full {
            // What a rescan of every inbox costs (docs/benchmarks.md).
            tracing::debug!(
                inboxes = inboxes.len(),
                listed,
                ms = pass.elapsed().as_secs_f64() * 1000.0,
                "full inbox scan"
            );
        }
        let settling = inboxes.values().any(|ib| ib.readiness.settling());
        let wait = if settling {
            Duration::from_millis(200)
        } else {
            next_full.saturating_duration_since(Instant::now())
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
            _ = projects_changed.notified() => {
                next_full = Instant::now();
                // Files waiting for a configuration fix are due at once.
                match queue::fixes_due(&s.pool).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(jobs = n, "projects changed: jobs waiting for a fix are due");
                        s.job_ready.notify_waiters();
                    }
                    Err(e) => tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot make waiting jobs due"),
                }
            }
            Some(p) = events.recv() => {
                // A burst of files is one burst of events: take them all
                // before listing, or each event lists the inbox again.
                let mut next = Some(p);
                while let Some(p) = next {
                    let dir = if by_dir.contains_key(&p) { Some(p.as_path()) } else { p.parent() };
                    if let Some(name) = dir.and_then(|d| by_dir.get(d)) {
                        dirty.insert(name.clone());
                    }
                    next = events.try_recv().ok();
                }
            }
        }
    }
}

/// The candidate files of an inbox: a folder's, or an `s3://` prefix's
/// objects (each with its ETag, so that a new upload under the same key is
/// a new file).
async fn list(ib: &Inbox) -> Result<Vec<Listed>, ListError> {
    let Some(prefix) = &ib.prefix else {
        // A folder of many files is a long read_dir and a stat per file:
        // on the blocking pool, as the file reads are.
        let dir = ib.dir.clone();
        let listed = tokio::task::spawn_blocking(move || inbox::list(&dir))
            .await
            .map_err(|e| std::io::Error::other(format!("the listing stopped: {e}")))??;
        return Ok(listed
            .into_iter()
            .map(|(p, size, modified)| (FileRef::local(&p), size, modified))
            .collect());
    };
    let client = object_storage::client(ib.config.storage.as_ref()).await;
    let listed = object_storage::list(&client, prefix).await?;
    Ok(listed
        .into_iter()
        .filter(|l| inbox::is_candidate(l.object.name()))
        .map(|l| (FileRef::Object(l.object), l.size, l.modified))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    fn config(yaml: &str) -> ProjectConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn only_files_a_pattern_matches_are_the_projects() {
        let c =
            config("inbox: /in\ntables:\n  - file_pattern: \"orders_*.csv\"\n    table: orders\n");
        let listing = vec![
            (FileRef::parse("/in/orders_1.csv").unwrap(), 1, at(1)),
            (FileRef::parse("/in/notes.txt").unwrap(), 1, at(1)),
        ];
        let kept = ours(listing, "/in", &c.patterns());
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0.name(), "orders_1.csv");
    }

    #[test]
    fn ready_files_are_queued_with_their_table_and_an_objects_write_and_sighting_times() {
        let c = config("inbox: s3://bucket/in/\ntables:\n  - file_pattern: \"orders_*.csv\"\n    table: orders\n    mode: append\n");
        let matched = FileRef::parse("s3://bucket/in/orders_1.csv#aa").unwrap();
        let written = HashMap::from([(matched.clone(), at(7))]);
        let queued = to_queue(
            vec![matched.clone()],
            "s3://bucket/in/",
            &c,
            &c.patterns(),
            &written,
            Some(at(9)),
        );
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].file, matched);
        assert_eq!(queued[0].target, Some(("orders".to_string(), Mode::Append)));
        assert_eq!(queued[0].written, Some(at(7)));
        assert_eq!(queued[0].seen, Some(at(9)));
    }

    #[test]
    fn a_file_without_options_is_queued_without_a_table() {
        let c =
            config("inbox: /in\ntables:\n  - file_pattern: \"orders_*.csv\"\n    table: orders\n");
        let f = FileRef::parse("/in/other.txt").unwrap();
        let queued = to_queue(vec![f], "/in", &c, &c.patterns(), &HashMap::new(), None);
        assert_eq!(queued[0].target, None);
        assert_eq!(queued[0].written, None);
    }
}
