//! `cpi run`: the long-running process. Wiring only: the reconcile loop
//! ([`crate::reconcile`]), the inbox scanner (this file, on
//! [`crate::inbox`]), import workers (on [`crate::queue`] and
//! [`crate::import::run_job`]) and shutdown.
//!
//! Shutdown: SIGTERM or SIGINT stops the scanner and the reconcile loop and
//! stops workers from claiming; running imports get `--shutdown-timeout` to
//! finish, after which they are dropped (the target transaction rolls back)
//! and their jobs go back to the queue. The process then exits 0.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch, Notify};
use tracing::Instrument;

use crate::cli::{self, Global};
use crate::config::ProjectConfig;
use crate::import::{self, ImportError, JobOutcome};
use crate::inbox::{self, Readiness};
use crate::jobs::JobStatus;
use crate::metrics::Health;
use crate::queue;
use crate::reconcile;
use crate::secret::{self, Secret};
use crate::store;
use crate::watch::{Backend, Watcher};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Reconcile at least this often, whatever the watcher saw (repairs drift).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// List every inbox at least this often (files the watcher missed).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub rescan: Duration,
    /// Poll the file system instead of inotify (network file systems).
    #[arg(long)]
    pub poll: bool,
    /// How often --poll looks.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Import workers (concurrent imports; one at a time per target table).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// A file is ready when its size and mtime have not changed for this long
    /// (a project's `settle_seconds` overrides it).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// A claimed job is taken over by another worker when its lease is not
    /// renewed for this long (its worker died).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// On SIGTERM/SIGINT, how long running imports may take to finish before
    /// they are rolled back and requeued.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Take over rows of the same name that are unmanaged or another owner's.
    #[arg(long)]
    pub adopt: bool,
    /// Refuse a reconcile that deletes more objects than this.
    #[arg(long, default_value_t = 10)]
    pub max_delete: usize,
    /// Allow any number of deletes, including every managed object.
    #[arg(long)]
    pub allow_delete: bool,
    /// Serve the HTTP API (connections, projects, jobs, health, metrics) on host:port.
    #[arg(long, env = "CPI_LISTEN")]
    pub listen: Option<String>,
    /// A file holding the API token (writes and URL-bearing responses need it).
    #[arg(long, env = "CPI_API_TOKEN_FILE", requires = "listen")]
    pub api_token_file: Option<PathBuf>,
}

/// What the workers share.
#[derive(Clone)]
struct Shared {
    pool: PgPool,
    args: RunArgs,
    /// Files whose job could not run (target unreachable, ...): when to try again.
    retries: Arc<Mutex<HashMap<PathBuf, (Instant, u32)>>>,
    job_ready: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
}

pub async fn run(g: &Global, a: &RunArgs) -> Result<ExitCode> {
    let url = cli::management_url(g)?;
    // Arguments first: a bad token file or a taken port fails before anything runs.
    let token = a
        .api_token_file
        .as_deref()
        .map(crate::api::auth::load_token)
        .transpose()?;
    let listener = match &a.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
        ),
        None => None,
    };
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new work; running imports may finish");
        let _ = stop_tx.send(true);
    });

    let Some(pool) = connect(&url, stop.clone()).await else {
        return Ok(ExitCode::SUCCESS);
    };
    let projects_changed = Arc::new(Notify::new());
    let health = Arc::new(Health::with_reconciler());
    let api = listener.map(|l| {
        let state = crate::api::AppState::new(pool.clone(), token, health.clone());
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
    let backend = if a.poll {
        Backend::Poll(a.poll_interval)
    } else {
        Backend::Native
    };
    let settings = reconcile::Settings {
        manifests: std::path::absolute(&g.manifests).unwrap_or_else(|_| g.manifests.clone()),
        // Absolute: watcher events carry absolute paths.
        secrets_dir: g
            .secrets_dir
            .as_ref()
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone())),
        owner: g.owner.clone(),
        adopt: a.adopt,
        max_delete: a.max_delete,
        allow_delete: a.allow_delete,
        interval: a.interval,
        backend,
    };
    let reconciler = tokio::spawn(reconcile::run(
        pool.clone(),
        settings,
        projects_changed.clone(),
        health.clone(),
        stop.clone(),
    ));
    let shared = Shared {
        pool: pool.clone(),
        args: a.clone(),
        retries: Arc::default(),
        job_ready: Arc::new(Notify::new()),
        shutdown: stop.clone(),
    };
    let scanner = tokio::spawn(scan_inboxes(
        shared.clone(),
        backend,
        projects_changed,
        health,
    ));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    tracing::info!(workers = a.workers.max(1), manifests = %g.manifests.display(), "cpi is running");
    let workers: Vec<_> = (0..a.workers.max(1))
        .map(|n| {
            let id = format!("{host}:{}:w{n}", std::process::id());
            tokio::spawn(work(shared.clone(), id))
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let _ = reconciler.await;
    let _ = scanner.await;
    if let Some(api) = api {
        let _ = api.await;
    }
    pool.close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Connects and migrates, retrying with backoff while the database is down.
/// `None` when asked to stop first.
async fn connect(url: &Secret, mut stop: watch::Receiver<bool>) -> Option<PgPool> {
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
                    _ = stop.changed() => return None,
                }
            }
        }
    }
}

/// One project's inbox as the scanner tracks it.
struct Inbox {
    dir: PathBuf,
    config: ProjectConfig,
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
        let settle = config
            .settle_seconds
            .map_or(settle, Duration::from_secs_f64);
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
    let mut watcher = Watcher::new(backend, tx, health)
        .map_err(
            |e| tracing::warn!(error = %e, "cannot watch inboxes; listing them every --rescan"),
        )
        .ok();
    let mut inboxes: BTreeMap<String, Inbox> = BTreeMap::new();
    let mut dirty: HashSet<String> = HashSet::new();
    let mut next_full = Instant::now();
    let mut shutdown = s.shutdown.clone();
    let queued_by = format!("scanner:{}", std::process::id());
    loop {
        if Instant::now() >= next_full {
            match store::list_projects(&s.pool).await {
                Ok(rows) => {
                    let wanted = inboxes_from(rows, s.args.settle);
                    inboxes
                        .retain(|name, ib| wanted.get(name).is_some_and(|(d, _, _)| *d == ib.dir));
                    for (name, (dir, config, settle)) in wanted {
                        if let Err(e) = std::fs::create_dir_all(&dir) {
                            tracing::warn!(project = %name, inbox = %dir.display(), error = %e, "cannot create the inbox");
                        }
                        let ib = inboxes.entry(name).or_insert_with(|| Inbox {
                            dir: dir.clone(),
                            config: config.clone(),
                            settle,
                            readiness: Readiness::default(),
                        });
                        ib.config = config;
                        ib.settle = settle;
                    }
                    if let Some(w) = watcher.as_mut() {
                        let paths: Vec<(PathBuf, bool)> =
                            inboxes.values().map(|ib| (ib.dir.clone(), false)).collect();
                        w.set(&paths);
                    }
                    dirty.extend(inboxes.keys().cloned());
                }
                Err(e) => {
                    tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot list projects")
                }
            }
            next_full = Instant::now() + s.args.rescan;
        }
        // Files whose import must be tried again.
        let due: Vec<PathBuf> = {
            let mut retries = s.retries.lock().unwrap();
            let now = Instant::now();
            // A file removed by hand needs no more tries.
            retries.retain(|p, _| p.exists());
            let due: Vec<PathBuf> = retries
                .iter()
                .filter(|(_, (at, _))| *at <= now)
                .map(|(p, _)| p.clone())
                .collect();
            for p in &due {
                if let Some(entry) = retries.get_mut(p) {
                    // Keep the attempt count; push the time out until the job reports again.
                    entry.0 = now + Duration::from_secs(3600);
                }
            }
            due
        };
        for (name, ib) in inboxes.iter_mut() {
            for p in &due {
                if p.parent() == Some(ib.dir.as_path()) {
                    ib.readiness.release(p);
                    dirty.insert(name.clone());
                }
            }
        }
        for (name, ib) in inboxes.iter_mut() {
            if !dirty.contains(name) && !ib.readiness.settling() {
                continue;
            }
            let listing = match inbox::list(&ib.dir) {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(project = %name, error = %e, "cannot list the inbox");
                    continue;
                }
            };
            // Only this project's files: the ones a pattern of its config matches.
            let listing: Vec<_> = listing
                .into_iter()
                .filter(|(p, _, _)| options_for(&ib.config, &ib.dir, p).is_some())
                .collect();
            for path in ib.readiness.observe(&listing, ib.settle, Instant::now()) {
                let opts = options_for(&ib.config, &ib.dir, &path);
                let table = opts.as_ref().map(|o| o.table.to_string());
                let mode = opts.as_ref().map(|o| o.mode.as_str());
                match queue::enqueue(&s.pool, name, &path, &queued_by, table.as_deref(), mode).await
                {
                    Ok(Some(id)) => {
                        tracing::info!(project = %name, file = %path.display(), job = %id, "file ready: queued");
                        s.job_ready.notify_waiters();
                    }
                    Ok(None) => tracing::debug!(file = %path.display(), "already queued"),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %secret::scrub_known(&e.to_string()), "cannot queue; will retry");
                        ib.readiness.release(&path);
                    }
                }
            }
        }
        dirty.clear();
        let settling = inboxes.values().any(|ib| ib.readiness.settling());
        let has_retries = !s.retries.lock().unwrap().is_empty();
        let wait = if settling || has_retries {
            Duration::from_millis(200)
        } else {
            next_full.saturating_duration_since(Instant::now())
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
            _ = projects_changed.notified() => next_full = Instant::now(),
            Some(p) = events.recv() => {
                for (name, ib) in &inboxes {
                    if p.parent() == Some(ib.dir.as_path()) || p == ib.dir {
                        dirty.insert(name.clone());
                    }
                }
            }
        }
    }
}

fn options_for(
    config: &ProjectConfig,
    dir: &Path,
    path: &Path,
) -> Option<crate::config::ResolvedOptions> {
    let name = path.file_name()?.to_str()?;
    let relative = import::relative_path(dir.to_str(), path, name);
    config.options_for(&relative)
}

/// Backoff for a file whose job could not run: 5 s, 10 s, … capped at 5 min.
pub fn file_retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(
        5u64.saturating_mul(2u64.saturating_pow(attempt.min(6)))
            .min(300),
    )
}

/// One import worker: claim, import under a renewed lease, move the file.
async fn work(s: Shared, worker: String) {
    let mut shutdown = s.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let claimed = match queue::claim(&s.pool, &worker, s.args.lease).await {
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
        let span = tracing::info_span!("import", job_id = %job.id, project = %job.project_name, file = %job.file_name);
        process(&s, &worker, job).instrument(span).await;
    }
}

async fn process(s: &Shared, worker: &str, job: queue::Claimed) {
    if !Path::new(&job.file_path).exists() {
        return vanished(s, &job).await;
    }
    let lease = s.args.lease;
    let renewer = {
        let pool = s.pool.clone();
        let (id, worker) = (job.id, worker.to_string());
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
        let import = import::run_job(&s.pool, job.id, worker, None);
        let mut stop = s.shutdown.clone();
        let timeout = s.args.shutdown_timeout;
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
    let path = PathBuf::from(&job.file_path);
    match result {
        None => {
            // Dropping the import rolled its target transaction back.
            tracing::warn!("shutdown timeout: import rolled back, job requeued");
            if let Err(e) = queue::requeue(&s.pool, job.id, worker).await {
                tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot requeue; its lease will expire");
            }
        }
        Some(Ok(outcome)) => {
            s.retries.lock().unwrap().remove(&path);
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
            finish_file(s.pool.clone(), job.clone(), path.clone(), outcome).await;
        }
        Some(Err(ImportError::FileUnreadable { source, .. })) if path.exists() => {
            let outcome = JobOutcome {
                job_id: job.id,
                file_name: job.file_name.clone(),
                status: JobStatus::Failed,
                target_table: None,
                mode: None,
                sha256: None,
                counts: Default::default(),
                error: Some(source.to_string()),
                errors: Vec::new(),
                errors_total: 0,
            };
            finish_file(s.pool.clone(), job.clone(), path.clone(), outcome).await;
        }
        Some(Err(ImportError::FileUnreadable { .. })) => vanished(s, &job).await,
        Some(Err(e)) => {
            // Target down, project without connection, ...: the file waits
            // in place and is tried again with backoff.
            let mut retries = s.retries.lock().unwrap();
            let attempt = retries.get(&path).map_or(0, |(_, n)| *n);
            let delay = file_retry_delay(attempt);
            retries.insert(path, (Instant::now() + delay, attempt + 1));
            tracing::warn!(error = %secret::scrub_known(&e.to_string()), retry_in = ?delay, "import could not run; the file stays in the inbox");
        }
    }
}

async fn vanished(s: &Shared, job: &queue::Claimed) {
    s.retries.lock().unwrap().remove(Path::new(&job.file_path));
    match queue::settle_vanished(&s.pool, job.id, &job.file_path).await {
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
async fn finish_file(pool: PgPool, job: queue::Claimed, path: PathBuf, outcome: JobOutcome) {
    let path = path.as_path();
    let project = match store::project_by_name(&pool, &job.project_name).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            tracing::warn!("project no longer exists; the file stays where it is");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot read the project; the file stays where it is");
            return;
        }
    };
    let config: ProjectConfig = project.parsed.unwrap_or_default();
    let inbox_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let id = job.id.to_string();
    let short = &id[..8];
    let moved = if outcome.status == JobStatus::Failed {
        let dir = inbox::failed_dir(&config, &inbox_dir);
        let report = inbox::ErrorReport {
            job_id: id.clone(),
            project: &job.project_name,
            file: &job.file_name,
            error: outcome.error.as_deref(),
            errors: serde_json::to_value(&outcome.errors).unwrap_or_default(),
            errors_total: outcome.errors_total,
        };
        inbox::write_report(&dir, &job.file_name, &report)
            .and_then(|_| inbox::move_into(path, &dir, short))
    } else {
        inbox::move_into(path, &inbox::processed_dir(&config, &inbox_dir), short)
    };
    match moved {
        Ok(to) => tracing::info!(to = %to.display(), "file moved"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!("file already moved (another replica)")
        }
        Err(e) => tracing::error!(error = %e, "cannot move the file; it stays in the inbox"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_retries_back_off_to_five_minutes() {
        assert_eq!(file_retry_delay(0), Duration::from_secs(5));
        assert_eq!(file_retry_delay(1), Duration::from_secs(10));
        assert_eq!(file_retry_delay(9), Duration::from_secs(300));
    }
}
