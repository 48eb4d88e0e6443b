//! The daemon's reconcile loop: level-triggered. File events on the
//! manifests folder and the secret files are hints that start a reconcile
//! soon (debounced, so a `git pull` is one reconcile); a timer reconciles
//! every `interval` anyway, which repairs drift and anything missed. A
//! failed reconcile changes nothing and is retried with backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, watch, Notify};
use tracing::Instrument;

use super::watch::{Backend, Events, Watcher};
use crate::apply::{self, ApplyOptions};
use crate::manifest::{self, Secrets};
use crate::metrics::{Health, ReconcileStatus};
use crate::secret;
use crate::store::ReconcileTrigger;

/// What the loop reconciles and how (filled by the daemon's `run`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The manifests folder (absolute: watcher events are).
    pub manifests: PathBuf,
    /// Where relative secret file paths are resolved (absolute).
    pub secrets_dir: Option<PathBuf>,
    /// The owner id written into `managed_by`.
    pub owner: String,
    /// Take over rows of the same name that are unmanaged or another owner's.
    pub adopt: bool,
    /// Refuse a reconcile that deletes more objects than this.
    pub max_delete: usize,
    /// Allow any number of deletes.
    pub allow_delete: bool,
    /// Reconcile at least this often (repairs drift).
    pub interval: Duration,
    /// How manifest and secret changes are noticed.
    pub backend: Backend,
    /// `--inbox-root`: where a manifest's inbox may be (none: anywhere).
    pub inbox_roots: Vec<PathBuf>,
    /// The API's access rules, in which each good load replaces this owner's tokens and bindings.
    pub access: Option<crate::api::access_sync::AccessSync>,
    /// Notified by a signed push to a Receiver: reconcile now.
    pub wake: Arc<Notify>,
}

/// How long to wait after the last file event before reconciling.
const DEBOUNCE: Duration = Duration::from_millis(400);
/// A burst of events never delays a reconcile longer than this.
const DEBOUNCE_MAX: Duration = Duration::from_secs(5);

/// Backoff after consecutive failures: 2 s, 4 s, … capped at 60 s.
pub fn retry_delay(failures: u32) -> Duration {
    crate::retry::backoff(failures, Duration::from_secs(1), Duration::from_secs(60))
}

/// Reconciles at startup, on every relevant file event (debounced) and
/// every interval, until `shutdown` turns true; notifies `projects_changed`
/// after a reconcile that changed rows.
pub async fn run_loop(
    pool: PgPool,
    s: Settings,
    projects_changed: Arc<Notify>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut events) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = match Watcher::new(s.backend, Events::All, tx, health.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the manifests; reconciling every interval only");
            None
        }
    };
    let mut secret_files: Vec<PathBuf> = Vec::new();
    let mut failures = 0u32;
    let mut trigger = ReconcileTrigger::Startup;
    let mut last_error: Option<String> = None;
    loop {
        let span = tracing::info_span!("reconcile", trigger = trigger.as_str());
        let next = async {
            match reconcile_once(&pool, &s, trigger, &mut secret_files).await {
                Ok(changed) => {
                    failures = 0;
                    last_error = None;
                    if changed {
                        projects_changed.notify_one();
                    }
                    health.reconciled(ReconcileStatus::Succeeded, None);
                    s.interval
                }
                Err(Unapplied { status, error: e, recorded }) => {
                    failures += 1;
                    let text = secret::scrub_known(&e);
                    let delay = retry_delay(failures).min(s.interval);
                    tracing::error!(error = %text, retry_in = ?delay, "reconcile failed; nothing was changed, the last applied state stays in force");
                    if !recorded && last_error.as_deref() != Some(&text) {
                        record_failure(&pool, &s, trigger, status, &text).await;
                    }
                    health.reconciled(status, Some(&text));
                    last_error = Some(text);
                    delay
                }
            }
        }
        .instrument(span)
        .await;
        let mut resync = false;
        if let Some(w) = watcher.as_mut() {
            let mut paths = vec![(s.manifests.clone(), true)];
            // Watch the folders of secret files (a rotation is often a
            // rename over the old file, which a watch on the file misses).
            for f in &secret_files {
                if let Some(dir) = f.parent() {
                    if !dir.starts_with(&s.manifests) && !paths.iter().any(|(p, _)| p == dir) {
                        paths.push((dir.to_path_buf(), false));
                    }
                }
            }
            resync = w.set(&paths) && failures == 0;
        }
        // A newly watched folder may have changed between the load and the
        // watch (a rotation at startup): one more look right away.
        let next = if resync { Duration::ZERO } else { next };
        // Wait for the timer, a relevant event (then debounce), or shutdown.
        let sleep = tokio::time::sleep(next);
        tokio::pin!(sleep);
        trigger = loop {
            tokio::select! {
                _ = &mut sleep => break if resync { ReconcileTrigger::Watch } else if failures > 0 { ReconcileTrigger::Retry } else { ReconcileTrigger::Interval },
                _ = shutdown.changed() => return,
                _ = s.wake.notified() => break ReconcileTrigger::Hook,
                Some(p) = events.recv() => {
                    if relevant(&p, &s, &secret_files) {
                        debounce(&mut events).await;
                        break ReconcileTrigger::Watch;
                    }
                }
            }
        };
    }
}

fn relevant(p: &std::path::Path, s: &Settings, secret_files: &[PathBuf]) -> bool {
    p.starts_with(&s.manifests) || secret_files.iter().any(|f| f == p)
}

async fn debounce(events: &mut mpsc::UnboundedReceiver<PathBuf>) {
    let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
    loop {
        let quiet = tokio::time::sleep(DEBOUNCE);
        tokio::select! {
            _ = quiet => return,
            _ = tokio::time::sleep_until(deadline) => return,
            e = events.recv() => if e.is_none() { return },
        }
    }
}

/// Why a reconcile applied nothing.
struct Unapplied {
    /// `failed` or `refused`.
    status: ReconcileStatus,
    /// Why.
    error: String,
    /// The apply recorded its run itself (a refusal, a failed write).
    recorded: bool,
}

impl Unapplied {
    fn failed(error: String) -> Unapplied {
        Unapplied {
            status: ReconcileStatus::Failed,
            error,
            recorded: false,
        }
    }
}

/// Loads and applies once. `Ok(true)` when rows changed.
async fn reconcile_once(
    pool: &PgPool,
    s: &Settings,
    trigger: ReconcileTrigger,
    secret_files: &mut Vec<PathBuf>,
) -> Result<bool, Unapplied> {
    // Reading secret files and parsing YAML is work of the file's size, done
    // on the blocking pool: the runtime's few workers keep `/healthz`, lease
    // renewal and the shutdown signal on time whatever the manifests hold.
    let (dir, secrets_dir, roots) = (
        s.manifests.clone(),
        s.secrets_dir.clone(),
        s.inbox_roots.clone(),
    );
    let loaded = tokio::task::spawn_blocking(move || {
        manifest::load_confined(&dir, secrets_dir.as_deref(), Secrets::Required, &roots)
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("the manifest load stopped: {e}")))
    // On failure the secret files of the last good load stay watched.
    .map_err(Unapplied::failed)?;
    for sec in loaded.secrets() {
        secret::register(sec);
    }
    *secret_files = loaded.secret_files.clone();
    // Access follows the manifests as soon as they load, before the apply:
    // a revoked token stops working even if the apply is refused.
    if let Some(access) = &s.access {
        access.declare(
            &s.owner,
            loaded.desired.known_tokens(),
            loaded.desired.bindings.values().cloned().collect(),
        );
    }
    let opts = options(s, trigger).await;
    let refused = crate::import::expressions::refused(pool, &loaded.desired, &s.owner, s.adopt)
        .await
        .map_err(|e| Unapplied::failed(e.to_string()))?;
    if !refused.is_empty() {
        return Err(Unapplied {
            status: ReconcileStatus::Refused,
            error: format!(
                "nothing applied: {} expression check(s) the target refuses: {}",
                refused.len(),
                refused.join("; ")
            ),
            recorded: false,
        });
    }
    let applied = apply::apply(pool, &loaded.desired, &opts)
        .await
        .map_err(|e| {
            let status = match e {
                apply::ApplyError::Conflicts(_) | apply::ApplyError::DeleteGuard(_) => {
                    ReconcileStatus::Refused
                }
                _ => ReconcileStatus::Failed,
            };
            // The apply records its refusals and failed writes; what failed
            // before it could plan (the database gone) it cannot record.
            let recorded = !matches!(e, apply::ApplyError::Store(_));
            Unapplied {
                status,
                error: e.to_string(),
                recorded,
            }
        })?;
    let c = applied.counts;
    if applied.plan.is_empty() {
        tracing::debug!("manifests and tables agree");
    } else {
        tracing::info!(
            created = c.create,
            updated = c.update,
            deleted = c.delete,
            drift = c.drift,
            run = %applied.run_id,
            "reconciled"
        );
        if c.drift > 0 {
            tracing::warn!(
                drift = c.drift,
                "rows changed outside cpi were set back to their manifests"
            );
        }
    }
    Ok(!applied.plan.is_empty())
}

async fn options(s: &Settings, trigger: ReconcileTrigger) -> ApplyOptions {
    // `git rev-parse` is a child process: waited for on the blocking pool.
    let dir = s.manifests.clone();
    let revision = tokio::task::spawn_blocking(move || manifest::revision(&dir))
        .await
        .ok()
        .flatten();
    ApplyOptions {
        owner: s.owner.clone(),
        adopt: s.adopt,
        max_delete: s.max_delete,
        allow_delete: s.allow_delete,
        trigger,
        revision,
    }
}

async fn record_failure(
    pool: &PgPool,
    s: &Settings,
    trigger: ReconcileTrigger,
    status: ReconcileStatus,
    error: &str,
) {
    if let Err(e) = apply::record_failure(pool, &options(s, trigger).await, status, error).await {
        tracing::warn!(error = %secret::scrub_known(&e.to_string()), "cannot record the failed reconcile");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backs_off_to_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(2), Duration::from_secs(4));
        assert_eq!(retry_delay(10), Duration::from_secs(60));
    }
}
