//! What the daemon is told ([`Settings`], plain values that `cpi run`'s
//! arguments or a test fill in) and what its tasks share ([`Shared`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{watch, Notify};

use super::watch::Backend;
use crate::location::FileRef;
use crate::metrics::Health;
use crate::secret::Secret;

/// What the daemon does and how often: plain values, no parsing (the
/// command line fills them from `cpi run`'s arguments, tests directly).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The manifests folder; made absolute by [`run`](crate::daemon::run) (watcher events are absolute).
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
    /// Single sign-on for the console (`--oidc-issuer`); none: tokens only.
    pub sso: Option<std::sync::Arc<crate::api::session::Sso>>,
    /// `--retention`: prune finished jobs and runs older than this, hourly.
    pub retention: Option<Duration>,
    /// `--freshness-interval`: how often the watched tables' freshness is
    /// assessed and its changes written as events.
    pub freshness_interval: Duration,
    /// Test-only: at most this many inotify watches for inboxes, the rest
    /// polled (as when the kernel's budget runs out). `None`: the kernel decides.
    pub inotify_watch_cap: Option<usize>,
    /// The console's address, for the job links of notifications.
    pub console_url: Option<String>,
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
            // The command line's default; the library's HttpSettings keeps viewer.
            http: crate::api::server::HttpSettings {
                anonymous: crate::access::Anonymous::Auto,
                ..Default::default()
            },
            sso: None,
            retention: None,
            freshness_interval: Duration::from_secs(30),
            inotify_watch_cap: None,
            console_url: None,
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

/// What the scanner and the workers share.
#[derive(Clone)]
pub(super) struct Shared {
    /// The management database.
    pub pool: PgPool,
    /// What the daemon was told.
    pub settings: Arc<Settings>,
    /// Woken when this process queued a job: its workers claim at once.
    pub job_ready: Arc<Notify>,
    /// Set when the daemon stops.
    pub shutdown: watch::Receiver<bool>,
    /// Counts the imports that could not reach their target.
    pub health: Arc<Health>,
    /// Objects this process moved out of their inbox, for the scanner to
    /// forget: a listing tells an object only by key, ETag, size and a
    /// write time in whole seconds, so the same content uploaded again
    /// within the second would otherwise look like the one already judged.
    pub moved_objects: Arc<std::sync::Mutex<Vec<FileRef>>>,
}
