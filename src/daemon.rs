//! The long-running daemon behind `cpi run`. Wiring only: the reconcile
//! loop ([`crate::reconcile`]), the inbox scanner (this file, on
//! [`crate::inbox`]), import workers (on [`crate::queue`] and
//! [`crate::import::run_job`]), the optional HTTP API and shutdown.
//!
//! [`run`] takes plain [`Settings`], a pool, an optional listener and a
//! shutdown future, so tests run it in-process; the command line
//! (`cpi run`) builds those from its arguments, waits for the
//! database with [`connect_waiting`] and turns SIGTERM/SIGINT into the
//! shutdown future.
//!
//! Shutdown: when the future completes, the scanner and the reconcile loop
//! stop and workers stop claiming; running imports get `shutdown_timeout`
//! to finish, after which they are dropped (the target transaction rolls
//! back) and their jobs go back to the queue. Then [`run`] returns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch, Notify};
use tracing::Instrument;

use crate::config::{Patterns, ProjectConfig};
use crate::import::{self, Action, ImportError, JobOutcome};
use crate::inbox::{self, Readiness};
use crate::jobs::JobStatus;
use crate::metrics::Health;
use crate::queue;
use crate::reconcile;
use crate::secret::{self, Secret};
use crate::storage;
use crate::store;
use crate::watch::{Backend, Events, Watcher};

/// What the daemon does and how often: plain values, no parsing (the
/// command line fills them from `cpi run`'s arguments, tests directly).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The manifests folder; made absolute by [`run`] (watcher events are absolute).
    pub manifests: PathBuf,
    /// Where relative secret file paths are resolved (default: the manifests folder).
    pub secrets_dir: Option<PathBuf>,
    /// The owner id written into `managed_by`.
    pub owner: String,
    /// Reconcile at least this often, whatever the watcher saw (repairs drift).
    pub interval: Duration,
    /// List every inbox at least this often (files the watcher missed).
    pub rescan: Duration,
    /// How file-system changes are noticed (inotify or polling).
    pub backend: Backend,
    /// Import workers (concurrent imports; one at a time per target table).
    pub workers: usize,
    /// A file is ready when its size and mtime have not changed for this long.
    pub settle: Duration,
    /// A claimed job not renewed for this long is taken over by another worker.
    pub lease: Duration,
    /// After shutdown, how long running imports may take before they are rolled back.
    pub shutdown_timeout: Duration,
    /// Take over rows of the same name that are unmanaged or another owner's.
    pub adopt: bool,
    /// Refuse a reconcile that deletes more objects than this.
    pub max_delete: usize,
    /// Allow any number of deletes.
    pub allow_delete: bool,
    /// The API token (writes and URL-bearing responses need it); used when a listener is given.
    pub api_token: Option<Secret>,
    /// Worker ids are `<worker_prefix>:w<n>`; unique per replica (default `host:pid`).
    pub worker_prefix: String,
    /// `--inbox-root`: inboxes, processed and failed folders must resolve
    /// inside one of these (none: anywhere).
    pub inbox_roots: Vec<PathBuf>,
    /// The HTTP server's connection cap, timeouts and CORS origins.
    pub http: crate::api::server::HttpSettings,
    /// `--retention`: prune finished jobs and runs older than this, hourly.
    pub retention: Option<Duration>,
    /// Test-only: at most this many inotify watches for inboxes, the rest
    /// polled (as when the kernel's budget runs out). `None`: the kernel decides.
    pub inotify_watch_cap: Option<usize>,
}

impl Settings {
    /// `cpi run`'s defaults for the manifests folder `manifests`.
    pub fn new(manifests: impl Into<PathBuf>) -> Settings {
        Settings {
            manifests: manifests.into(),
            secrets_dir: None,
            owner: "cpi".into(),
            interval: Duration::from_secs(300),
            rescan: Duration::from_secs(30),
            backend: Backend::Native,
            workers: 2,
            settle: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            adopt: false,
            max_delete: 10,
            allow_delete: false,
            api_token: None,
            worker_prefix: default_worker_prefix(),
            inbox_roots: Vec::new(),
            http: Default::default(),
            retention: None,
            inotify_watch_cap: None,
        }
    }
}

/// `host:pid`: what tells this process's workers from other replicas'.
pub fn default_worker_prefix() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// What the workers share.
#[derive(Clone)]
struct Shared {
    pool: PgPool,
    settings: Arc<Settings>,
    job_ready: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    /// Counts the imports that could not reach their target.
    health: Arc<Health>,
    /// Objects this process moved out of their inbox, for the scanner to
    /// forget: a listing tells an object only by key, ETag, size and a
    /// write time in whole seconds, so the same content uploaded again
    /// within the second would otherwise look like the one already judged.
    moved_objects: Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

/// Runs the daemon on `pool` (migrated here) until `shutdown` completes and
/// running imports have finished or been requeued. With a `listener`, the
/// HTTP API is served on it too.
pub async fn run(
    settings: Settings,
    pool: PgPool,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    store::migrate(&pool).await?;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new work; running imports may finish");
        let _ = stop_tx.send(true);
    });
    let projects_changed = Arc::new(Notify::new());
    let health = Arc::new(Health::with_reconciler());
    let api = listener.map(|l| {
        let mut state =
            crate::api::AppState::new(pool.clone(), settings.api_token.clone(), health.clone());
        state.inbox_roots = Arc::new(settings.inbox_roots.clone());
        state.http = settings.http.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::api::serve(l, state, shutdown).await {
                tracing::error!(error = %e, "the HTTP API stopped");
            }
        })
    });
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let reconcile_settings = reconcile::Settings {
        // Absolute: watcher events carry absolute paths.
        manifests: absolute(&settings.manifests),
        secrets_dir: settings.secrets_dir.as_ref().map(absolute),
        owner: settings.owner.clone(),
        adopt: settings.adopt,
        max_delete: settings.max_delete,
        allow_delete: settings.allow_delete,
        interval: settings.interval,
        backend: settings.backend,
        inbox_roots: settings.inbox_roots.clone(),
    };
    let reconciler = tokio::spawn(reconcile::run(
        pool.clone(),
        reconcile_settings,
        projects_changed.clone(),
        health.clone(),
        stop.clone(),
    ));
    if let Some(age) = settings.retention {
        tokio::spawn(crate::prune::every(pool.clone(), age, stop.clone()));
    }
    let workers = settings.workers.max(1);
    tracing::info!(workers, manifests = %settings.manifests.display(), "cpi is running");
    let shared = Shared {
        pool: pool.clone(),
        settings: Arc::new(settings),
        job_ready: Arc::new(Notify::new()),
        shutdown: stop.clone(),
        health: health.clone(),
        moved_objects: Arc::default(),
    };
    let scanner = tokio::spawn(scan_inboxes(
        shared.clone(),
        shared.settings.backend,
        projects_changed,
        health,
    ));
    let workers: Vec<_> = (0..workers)
        .map(|n| {
            let id = format!("{}:w{n}", shared.settings.worker_prefix);
            tokio::spawn(work(shared.clone(), id))
        })
        .collect();
    for w in workers {
        awaited("the workers", w, &stop).await;
    }
    awaited("the reconcile loop", reconciler, &stop).await;
    awaited("the inbox scanner", scanner, &stop).await;
    if let Some(api) = api {
        awaited("the HTTP API", api, &stop).await;
    }
    let closing = import::targets::close_idle();
    awaited("closing target connections", closing, &stop).await;
    awaited("closing the management pool", pool.close(), &stop).await;
    tracing::info!("stopped");
    Ok(())
}

/// Awaits one part of the daemon; once `stop` is set, says every
/// [`STILL_WAITING`] which part it still waits for: a stop that hangs
/// names its cause in the log.
async fn awaited<F: Future>(what: &str, part: F, stop: &watch::Receiver<bool>) {
    let mut part = std::pin::pin!(part);
    loop {
        tokio::select! {
            _ = &mut part => return,
            _ = tokio::time::sleep(STILL_WAITING) => {
                if *stop.borrow() {
                    tracing::info!(waiting_for = what, "stopping: still waiting");
                }
            }
        }
    }
}

/// See [`awaited`].
const STILL_WAITING: Duration = Duration::from_secs(5);

/// Connects and migrates, retrying with backoff while the database is down
/// (a daemon may start before its database). `None` when `stop` completes first.
pub async fn connect_waiting(url: &Secret, stop: impl Future<Output = ()>) -> Option<PgPool> {
    let mut stop = std::pin::pin!(stop);
    let mut failures = 0u32;
    loop {
        let attempt = async {
            let pool = store::connect(url).await?;
            store::migrate(&pool).await?;
            Ok::<_, store::StoreError>(pool)
        };
        match attempt.await {
            Ok(pool) => return Some(pool),
            Err(e) => {
                failures += 1;
                let delay = reconcile::retry_delay(failures).min(Duration::from_secs(30));
                tracing::warn!(error = %secret::scrub_known(&e.to_string()), retry_in = ?delay, "management database not available");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut stop => {
                        tracing::info!("stopped while waiting for the management database");
                        return None;
                    }
                }
            }
        }
    }
}

/// One project's inbox as the scanner tracks it.
struct Inbox {
    dir: PathBuf,
    config: ProjectConfig,
    /// `config`'s file patterns, compiled when the config changes (not per scan).
    patterns: Patterns,
    settle: Duration,
    readiness: Readiness,
}

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
        let settle = if storage::is_object(&dir) {
            Duration::ZERO
        } else {
            config.settle().unwrap_or(settle)
        };
        out.insert(row.name, (PathBuf::from(dir), config, settle));
    }
    out
}

/// Watches and lists every project's inbox, and queues each file once it is
/// ready. Inboxes follow `cpi_projects` (whoever wrote the rows).
async fn scan_inboxes(
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
        let moved: Vec<PathBuf> = std::mem::take(&mut *s.moved_objects.lock().unwrap());
        for ib in inboxes.values_mut() {
            for p in &moved {
                ib.readiness.forget(p);
            }
        }
        if full {
            match store::list_projects(&s.pool).await {
                Ok(rows) => {
                    let wanted = inboxes_from(rows, s.settings.settle);
                    let wanted = crate::confine::watched(wanted, &s.settings.inbox_roots, &health);
                    inboxes
                        .retain(|name, ib| wanted.get(name).is_some_and(|(d, _, _)| *d == ib.dir));
                    for (name, (dir, config, settle)) in wanted {
                        if is_object_path(&dir) {
                            // A prefix needs no creating.
                        } else if let Err(e) = std::fs::create_dir_all(&dir) {
                            tracing::warn!(project = %name, inbox = %dir.display(), error = %e, "cannot create the inbox");
                        }
                        let ib = inboxes.entry(name).or_insert_with(|| Inbox {
                            dir: dir.clone(),
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
                            .filter(|ib| !is_object_path(&ib.dir))
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
            let listing = tokio::select! {
                l = list_inbox(&ib.dir, &ib.config) => l,
                _ = shutdown.changed() => return,
            };
            let listing = match listing {
                Ok(l) => l,
                Err(e) => {
                    if is_object_path(&ib.dir) {
                        tracing::warn!(project = %name, error = %e, "cannot list the inbox")
                    } else {
                        tracing::debug!(project = %name, error = %e, "cannot list the inbox")
                    }
                    continue;
                }
            };
            // Only this project's files: the ones a pattern of its config matches.
            let listing: Vec<_> = listing
                .into_iter()
                .filter(|(p, _, _)| relative(&ib.dir, p).is_some_and(|r| ib.patterns.matches(&r)))
                .collect();
            let ready = ib.readiness.observe(&listing, ib.settle, Instant::now());
            // An object's write time: the enqueue skips an object imported since.
            let written: HashMap<&Path, std::time::SystemTime> = if is_object_path(&ib.dir) {
                listing.iter().map(|(p, _, m)| (p.as_path(), *m)).collect()
            } else {
                HashMap::new()
            };
            let files: Vec<crate::jobs::QueuedFile> = ready
                .into_iter()
                .map(|path| {
                    let opts = relative(&ib.dir, &path)
                        .and_then(|r| ib.config.options_with(&ib.patterns, &r));
                    let target = opts.map(|o| (o.table.to_string(), o.mode.as_str().to_string()));
                    let written = written.get(path.as_path()).copied();
                    crate::jobs::QueuedFile {
                        path,
                        target,
                        written,
                    }
                })
                .collect();
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
                        ib.readiness.release(&f.path);
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
/// objects (each as its job path `s3://bucket/key#etag`, so that a new
/// upload under the same key is a new file).
async fn list_inbox(
    dir: &Path,
    config: &ProjectConfig,
) -> std::result::Result<Vec<(PathBuf, u64, std::time::SystemTime)>, String> {
    let Some(url) = dir.to_str().filter(|d| storage::is_object(d)) else {
        return inbox::list(dir).map_err(|e| e.to_string());
    };
    let loc = storage::parse_location(url)?;
    let client = storage::client(config.storage.as_ref()).await;
    let listed = storage::list(&client, &loc)
        .await
        .map_err(|e| e.to_string())?;
    Ok(listed
        .into_iter()
        .filter(|l| inbox::is_candidate(l.object.name()))
        .map(|l| (PathBuf::from(l.object.job_path()), l.size, l.modified))
        .collect())
}

/// Whether an inbox or job path is in object storage.
fn is_object_path(p: &Path) -> bool {
    p.to_str().is_some_and(storage::is_object)
}

/// A file's path relative to its inbox, as the config's patterns see it;
/// an object's is its name below the inbox's prefix.
fn relative(dir: &Path, path: &Path) -> Option<String> {
    if let Some(o) = path.to_str().and_then(|p| storage::parse_object(p).ok()) {
        return Some(o.name().to_string());
    }
    let name = path.file_name()?.to_str()?;
    Some(import::relative_path(dir.to_str(), path, name))
}

/// One import worker: claim, import under a renewed lease, move the file.
async fn work(s: Shared, worker: String) {
    let mut shutdown = s.shutdown.clone();
    // The job this worker just finished: the next file of its table comes here.
    let mut previous: Option<queue::Claimed> = None;
    let mut known = import::Known::default();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let t = Instant::now();
        let claimed = match previous.take() {
            Some(p) => queue::claim_after(&s.pool, &worker, s.settings.lease, &p).await,
            None => queue::claim(&s.pool, &worker, s.settings.lease).await,
        };
        let claim_ms = t.elapsed().as_secs_f64() * 1000.0;
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot claim a job");
                None
            }
        };
        let Some(job) = claimed else {
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
    // (An object that is gone is found so by its job's first request.)
    let object = storage::is_object(&job.job.file_path);
    if !object && !Path::new(&job.job.file_path).exists() {
        return vanished(s, &job).await;
    }
    let lease = s.settings.lease;
    let renewer = {
        let pool = s.pool.clone();
        let (id, worker) = (job.job.id, worker.to_string());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                match queue::renew(&pool, id, &worker, lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("lost the lease on the job"),
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
        let import = import::run_queued(&s.pool, &job.job, worker, claim);
        let mut stop = s.shutdown.clone();
        let timeout = s.settings.shutdown_timeout;
        let deadline = async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            tokio::time::sleep(timeout).await;
        };
        tokio::select! {
            r = import => Some(r),
            _ = deadline => None,
        }
    };
    renewer.abort();
    let path = PathBuf::from(&job.job.file_path);
    match result {
        None => {
            // Dropping the import rolled its target transaction back.
            tracing::warn!("shutdown timeout: import rolled back, job requeued");
            if let Err(e) = queue::requeue(&s.pool, job.job.id, worker).await {
                tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot requeue; its lease will expire");
            }
        }
        Some(Ok(outcome)) => {
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
            finish_file(s, job.clone(), path.clone(), outcome).await;
        }
        Some(Err(ImportError::FileUnreadable { source, .. })) if path.exists() => {
            let outcome = failed_outcome(&job, source.to_string());
            finish_file(s, job.clone(), path.clone(), outcome).await;
        }
        Some(Err(ImportError::FileUnreadable { .. })) => vanished(s, &job).await,
        Some(Err(e)) => {
            // `run_queued` applied the same decision to the job row: a
            // retry or a wait puts it back in the queue with its delay.
            let attempt = u32::try_from(job.job.attempts - 1).unwrap_or(0);
            let error = secret::scrub_known(&e.to_string());
            match import::error_policy(&e, attempt) {
                Action::Retry(delay) => {
                    if unreachable_target(&e) {
                        s.health.target_error();
                    }
                    tracing::warn!(%error, retry_in = ?delay, "import could not run; the file stays in the inbox");
                }
                Action::WaitForFix => {
                    let delay = import::config_recheck(attempt);
                    tracing::warn!(%error, recheck_in = ?delay, "configuration error: the file waits in the inbox until the project is fixed");
                }
                Action::Fail => {
                    tracing::warn!(%error, "import failed; the file is set aside");
                    let outcome = failed_outcome(&job, error);
                    finish_file(s, job.clone(), path, outcome).await;
                }
            }
        }
    }
}

/// Whether the import failed because its target database could not be
/// reached (`cpi_import_target_errors_total`), rather than mid-import.
fn unreachable_target(e: &ImportError) -> bool {
    matches!(
        e,
        ImportError::TargetUnreachable { .. } | ImportError::ConnectTimeout { .. }
    )
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
/// duplicate, `failed/` with `<name>.error.json` for failed.
async fn finish_file(s: &Shared, job: queue::Claimed, path: PathBuf, outcome: JobOutcome) {
    let roots = &s.settings.inbox_roots;
    let path = path.as_path();
    // The config as the claim read it: no second read per file.
    let Some(raw) = job.project_config.as_ref() else {
        tracing::warn!("project no longer exists; the file stays where it is");
        return;
    };
    let config: ProjectConfig = store::parse_config(raw).unwrap_or_default();
    if let Some(url) = path.to_str().filter(|p| storage::is_object(p)) {
        return finish_object(s, &job, url, &config, &outcome).await;
    }
    let inbox_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let id = job.job.id.to_string();
    let short = &id[..8];
    let m = if outcome.status == JobStatus::Failed {
        let report = error_report(&job, &outcome);
        let dir = inbox::failed_dir(&config, &inbox_dir);
        crate::moves::Move::new(path.to_path_buf(), dir, short, Some(report), roots)
    } else {
        let dir = inbox::processed_dir(&config, &inbox_dir);
        crate::moves::Move::new(path.to_path_buf(), dir, short, None, roots)
    };
    crate::moves::start(m, s.shutdown.clone()).await;
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
    };
    serde_json::to_vec_pretty(&report).unwrap_or_default()
}

/// [`finish_file`] for an object: copied into `processed/` or `failed/`
/// (under the inbox's prefix, or the configured `s3://` locations), then
/// deleted. `--inbox-root` does not apply: it confines local paths.
async fn finish_object(
    s: &Shared,
    job: &queue::Claimed,
    url: &str,
    config: &ProjectConfig,
    outcome: &JobOutcome,
) {
    let object = match storage::parse_object(url) {
        Ok(o) => o,
        Err(e) => return tracing::warn!(error = %e, "the object stays where it is"),
    };
    let inbox = config
        .inbox
        .as_deref()
        .and_then(|i| storage::parse_location(i).ok())
        .unwrap_or_else(|| object.location());
    let failed = outcome.status == JobStatus::Failed;
    let to = if failed {
        storage::sub_location(&inbox, config.failed_dir.as_deref(), "failed")
    } else {
        storage::sub_location(&inbox, config.processed_dir.as_deref(), "processed")
    };
    let to = match to {
        Ok(t) => t,
        Err(e) => return tracing::warn!(error = %e, "the object stays where it is"),
    };
    let id = job.job.id.to_string();
    let report = failed.then(|| error_report(job, outcome));
    let client = storage::client(config.storage.as_ref()).await;
    let m = crate::moves::ObjectMove::new(client, object, to, &id[..8], report);
    crate::moves::start(m, s.shutdown.clone()).await;
    s.moved_objects
        .lock()
        .unwrap()
        .push(PathBuf::from(&job.job.file_path));
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
