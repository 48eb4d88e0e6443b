//! The daemon's timers over the history: retention (`cpi prune
//! --older-than AGE` and `cpi run --retention AGE` delete finished import
//! jobs, reconcile runs and events older than AGE) and freshness. Safe for exactly-once: the ledger that keeps an import single
//! lives in the target database, not in the job rows.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::store::{self, StoreError};

/// What one prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Finished import jobs (succeeded, failed, duplicate).
    pub jobs: u64,
    /// Reconcile runs (the latest one is always kept).
    pub reconcile_runs: u64,
    /// Events (`cpi_events`).
    pub events: u64,
    /// Audit rows (`cpi_audit`).
    pub audit: u64,
}

/// Deletes finished jobs and reconcile runs that ended more than `age` ago.
/// Queued and running jobs stay, and so does the latest reconcile run
/// (`/metrics` and `/readyz` tell its time).
pub async fn prune(pool: &PgPool, age: Duration) -> Result<Pruned, StoreError> {
    Ok(Pruned {
        jobs: store::delete_finished_jobs(pool, age).await?,
        reconcile_runs: store::delete_old_runs(pool, age).await?,
        events: store::events::delete_old_events(pool, age).await?,
        audit: store::audit::delete_old(pool, age).await?,
    })
}

/// How often the daemon prunes under `--retention`.
pub const EVERY: Duration = Duration::from_secs(3600);

/// The daemon's retention loop: prunes at start, then every [`EVERY`],
/// until `stop` is set. Each prune runs between two readings of the
/// counters (`metrics::around_prune`), so no `/metrics` counter takes the
/// deleted rows for a fall or loses the imports of the scrape interval.
pub async fn every(
    pool: PgPool,
    age: Duration,
    health: std::sync::Arc<crate::metrics::Health>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match crate::metrics::around_prune(&pool, &health, prune(&pool, age)).await {
            Ok(p) if p != Pruned::default() => {
                tracing::info!(
                    jobs = p.jobs,
                    reconcile_runs = p.reconcile_runs,
                    events = p.events,
                    "pruned history older than --retention"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %crate::secret::scrub_known(&e.to_string()), "cannot prune history")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The daemon's freshness loop: every `interval` until `stop` is set,
/// [`crate::freshness::record_changes`] writes each watched table's change
/// of state with its event.
pub async fn freshness_every(pool: PgPool, interval: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = crate::freshness::record_changes(&pool).await {
            tracing::warn!(error = %crate::secret::scrub_known(&e.to_string()), "cannot assess freshness");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval.max(Duration::from_millis(100))) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
