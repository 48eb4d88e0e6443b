//! The long-running daemon behind `cpi run`. This file is the wiring and
//! the shutdown; its parts are modules of their own:
//! - [`reconcile`]: the reconcile loop (watch, debounce, interval, retry);
//! - `scanner`: lists and watches the inboxes, queues each ready file once;
//! - `bucket_events`: an `s3://` inbox's bucket events (SQS) queue new objects at once;
//! - `worker`: claims a job, imports its file ([`crate::import`]), moves it;
//! - [`moves`]: a file's move out of the inbox, retried until done;
//! - [`confine`]: which inboxes `--inbox-root` lets it watch, where it may move files;
//! - [`watch`]: file-system events (inotify or polling) as hints;
//! - [`prune`]: the `--retention` and freshness loops;
//! - [`notifier`]: notifications, fanned out and delivered;
//! - [`Settings`]: what the daemon is told.
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

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::import;
use crate::metrics::Health;
use crate::secret::{self, Secret};
use crate::store;

mod bucket_events;
pub mod confine;
pub mod moves;
pub mod notifier;
pub mod prune;
pub mod reconcile;
mod scanner;
mod settings;
pub mod watch;
mod worker;

use settings::Shared;
pub use settings::{default_worker_prefix, Settings};

/// Runs the daemon on `pool` (migrated here) until `shutdown` completes and
/// running imports have finished or been requeued. With a `listener`, the
/// HTTP API is served on it too.
pub async fn run(
    settings: Settings,
    pool: PgPool,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), store::StoreError> {
    store::migrate(&pool).await?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new work; running imports may finish");
        let _ = stop_tx.send(true);
    });
    // Seen by key rotations (`cpi keys promote`, `cpi rekey`) until it stops.
    let presence = tokio::spawn(store::processes::keep(
        pool.clone(),
        store::processes::Me::this("run"),
        stop.clone(),
    ));
    let projects_changed = Arc::new(Notify::new());
    let health = Arc::new(Health::with_reconciler());
    let wake = crate::api::Wake {
        reconcile: Arc::new(Notify::new()),
        rescan: projects_changed.clone(),
    };
    let api_state = listener.is_some().then(|| {
        let mut state =
            crate::api::AppState::new(pool.clone(), settings.api_token.clone(), health.clone());
        state.inbox_roots = Arc::new(settings.inbox_roots.clone());
        state.http = settings.http.clone();
        state.sso = settings.sso.clone();
        state.wake = Some(wake.clone());
        state
    });
    let api = listener.zip(api_state.clone()).map(|(l, state)| {
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
    // The API's rules follow the stored ApiTokens and RoleBindings (those
    // of every owner), this daemon's own declarations laid over them.
    let access = api_state
        .as_ref()
        .map(|s| crate::api::access_sync::AccessSync::new(pool.clone(), s.access.clone()));
    if let Some(sync) = access.clone() {
        if let Err(e) = sync.refresh().await {
            tracing::warn!(error = %e, "cannot read the access rules yet; polling");
        }
        tokio::spawn(sync.run(stop.clone()));
    }
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
        access: access.clone(),
        wake: wake.reconcile.clone(),
    };
    let reconciler = tokio::spawn(reconcile::run_loop(
        pool.clone(),
        reconcile_settings,
        projects_changed.clone(),
        health.clone(),
        stop.clone(),
    ));
    if let Some(age) = settings.retention {
        tokio::spawn(prune::every(
            pool.clone(),
            age,
            health.clone(),
            stop.clone(),
        ));
    }
    tokio::spawn(prune::freshness_every(
        pool.clone(),
        settings.freshness_interval,
        stop.clone(),
    ));
    let notifier = tokio::spawn(notifier::run(
        pool.clone(),
        notifier::Settings {
            console_url: settings.console_url.clone(),
        },
        stop.clone(),
    ));
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
    let scanner = tokio::spawn(scanner::scan(
        shared.clone(),
        shared.settings.backend,
        projects_changed,
        health,
    ));
    let bucket_events = tokio::spawn(bucket_events::run(shared.clone()));
    let workers: Vec<_> = (0..workers)
        .map(|n| {
            let id = format!("{}:w{n}", shared.settings.worker_prefix);
            tokio::spawn(worker::work(shared.clone(), id))
        })
        .collect();
    for w in workers {
        awaited("the workers", w, &stop).await;
    }
    awaited("the reconcile loop", reconciler, &stop).await;
    awaited("the inbox scanner", scanner, &stop).await;
    awaited("the notifier", notifier, &stop).await;
    awaited("the bucket events", bucket_events, &stop).await;
    if let Some(api) = api {
        awaited("the HTTP API", api, &stop).await;
    }
    awaited("leaving cpi_processes", presence, &stop).await;
    let closing = import::targets::close_idle();
    awaited("closing target connections", closing, &stop).await;
    awaited("closing the management pool", pool.close(), &stop).await;
    tracing::info!("stopped");
    Ok(())
}

/// Awaits one part of the daemon; once `stop` is set, says every
/// [`STILL_WAITING`] which part it still waits for: a stop that hangs
/// names its cause in the log.
async fn awaited<F: Future>(what: &str, part: F, stop: &tokio::sync::watch::Receiver<bool>) {
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
