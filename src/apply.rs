//! Applying a plan: one transaction under the reconcile advisory lock, so
//! that replicas never apply at once and each plans against what the one
//! before it left.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::manifest::{Desired, UrlState};
use crate::plan::{self, Action, Change, Counts, Plan};
use crate::render;
use crate::store::{self, ConnectionWrite, Managed, ProjectWrite, StoreError};
use crate::store::{NewRun, ReconcileStatus, ReconcileTrigger};

/// How `apply` runs: whose rows, and how far it may go.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The owner name written into `managed_by`.
    pub owner: String,
    /// Take over rows nobody or another owner manages.
    pub adopt: bool,
    /// The most deletes allowed without `allow_delete`.
    pub max_delete: usize,
    /// Allow any number of deletes, all managed rows included.
    pub allow_delete: bool,
    /// What started the run, recorded in `cpi_reconcile_runs`.
    pub trigger: ReconcileTrigger,
    /// The manifests' git revision, when known.
    pub revision: Option<String>,
}

/// A finished apply.
#[derive(Debug)]
pub struct Applied {
    /// The `cpi_reconcile_runs` row of this run.
    pub run_id: Uuid,
    /// The plan that was applied.
    pub plan: Plan,
    /// What it changed.
    pub counts: Counts,
}

/// Why an apply changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Rows of other owners (or of none) and no `--adopt`.
    #[error("{} conflict{}:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n"))]
    Conflicts(Vec<plan::Conflict>),
    /// The delete guard refused the plan (the message says how to allow it).
    #[error("{0}")]
    DeleteGuard(String),
    /// A connection whose secret file is missing cannot be written.
    #[error("connection {0:?} has no known URL (a secret file is missing)")]
    UnknownSecret(String),
    /// Stored URLs are encrypted and no key was given: writing would put
    /// plain text beside them.
    #[error(
        "the management database stores connection URLs encrypted: give the key file with {}",
        crate::crypto::FLAG
    )]
    NeedKey,
    /// The management database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        ApplyError::Store(StoreError::Db(e))
    }
}

/// Plans against the rows as they are once the lock is held, and applies.
/// A refused or failed apply changes nothing and is still recorded in
/// `cpi_reconcile_runs`.
pub async fn apply(
    pool: &PgPool,
    desired: &Desired,
    opts: &ApplyOptions,
) -> Result<Applied, ApplyError> {
    let mut tx = pool.begin().await?;
    let started = store::lock_reconcile(&mut tx).await?;
    let observed = store::load_observed(&mut tx).await?;
    let plan = plan::plan(desired, &observed, &opts.owner, opts.adopt);
    let diff = render::text(&plan, false);
    let counts = plan.counts();
    let refusal = if !plan.conflicts.is_empty() {
        Some(ApplyError::Conflicts(plan.conflicts.clone()))
    } else {
        plan.check_deletes(opts.max_delete, opts.allow_delete)
            .err()
            .map(|e| ApplyError::DeleteGuard(e.to_string()))
    };
    if let Some(err) = refusal {
        tx.rollback().await?;
        record_unapplied(
            pool,
            opts,
            started,
            ReconcileStatus::Refused,
            &counts,
            &diff,
            &err.to_string(),
        )
        .await?;
        return Err(err);
    }
    match write(&mut tx, &plan).await {
        Ok(()) => {}
        Err(e) => {
            let _ = tx.rollback().await;
            let _ = record_unapplied(
                pool,
                opts,
                started,
                ReconcileStatus::Failed,
                &counts,
                &diff,
                &e.to_string(),
            )
            .await;
            return Err(e);
        }
    }
    // A no-op extends the last run when that was a no-op too: an
    // `--interval` that finds nothing to do adds no row (288 a day, forever).
    let repeated = if plan.is_empty() {
        store::extend_noop_run(&mut *tx, &opts.owner, opts.revision.as_deref()).await?
    } else {
        None
    };
    let run_id = match repeated {
        Some(id) => id,
        None => {
            record_run(
                &mut *tx,
                opts,
                started,
                ReconcileStatus::Succeeded,
                &counts,
                &diff,
                None,
            )
            .await?
        }
    };
    tx.commit().await?;
    Ok(Applied {
        run_id,
        plan,
        counts,
    })
}

/// Records a reconcile that failed (invalid manifests, unreadable
/// secrets) or was refused (an expression the target cannot plan) before
/// it could apply: the audit trail shows why nothing was applied.
pub async fn record_failure(
    pool: &PgPool,
    opts: &ApplyOptions,
    status: ReconcileStatus,
    error: &str,
) -> Result<Uuid, ApplyError> {
    record_unapplied(
        pool,
        opts,
        chrono::Utc::now(),
        status,
        &Counts::default(),
        "",
        error,
    )
    .await
}

/// Records a run that applied nothing, or extends the last one when it
/// ended the same way ([`store::extend_repeated_run`]).
async fn record_unapplied(
    pool: &PgPool,
    opts: &ApplyOptions,
    started_at: chrono::DateTime<chrono::Utc>,
    status: ReconcileStatus,
    counts: &Counts,
    diff: &str,
    error: &str,
) -> Result<Uuid, ApplyError> {
    if let Some(id) = store::extend_repeated_run(pool, &opts.owner, status, error).await? {
        return Ok(id);
    }
    record_run(pool, opts, started_at, status, counts, diff, Some(error)).await
}

async fn record_run(
    db: impl sqlx::PgExecutor<'_>,
    opts: &ApplyOptions,
    started_at: chrono::DateTime<chrono::Utc>,
    status: ReconcileStatus,
    counts: &Counts,
    diff: &str,
    error: Option<&str>,
) -> Result<Uuid, ApplyError> {
    // With encryption at rest on, the history keeps no URL at all.
    let kept = crate::crypto::keyring()
        .has_key()
        .then(|| render::redact_history(diff))
        .flatten();
    let diff = kept.as_deref().unwrap_or(diff);
    let run = NewRun {
        owner: &opts.owner,
        trigger: opts.trigger,
        revision: opts.revision.as_deref(),
        status,
        counts,
        diff,
        error,
        started_at,
    };
    Ok(store::insert_run(db, &run).await?)
}

/// Connections upserted, projects upserted, projects deleted, connections
/// deleted: projects always find their connection, and no delete leaves a
/// dangling reference for the next statement. Each step is one statement
/// over arrays, so 10,000 objects cost a handful of round trips.
async fn write(tx: &mut PgConnection, plan: &Plan) -> Result<(), ApplyError> {
    let ring = crate::crypto::keyring();
    if ring.has_key() {
        // Rows written before the key existed: encrypted now, whatever
        // the plan says (the stored text changes, the value does not).
        let (sealed, _) = store::reseal_connections(tx, &ring, store::Reseal::Plain).await?;
        if sealed > 0 {
            // Encryption was just turned on: the history written before
            // it names those URLs (redacted, but with hosts and paths).
            store::rewrite_run_diffs(tx, render::redact_history).await?;
        }
    } else if written(&plan.connections).next().is_some()
        && store::has_sealed_urls(&mut *tx).await?
    {
        return Err(ApplyError::NeedKey);
    }
    let mut connections = Vec::new();
    for s in written(&plan.connections) {
        let UrlState::Known(url) = &s.url else {
            return Err(ApplyError::UnknownSecret(s.name.clone()));
        };
        let stored = ring.seal(url);
        let digest = plan::connection_digest(&s.name, s.description.as_deref(), &stored);
        connections.push(ConnectionWrite {
            managed: Managed::new(&s.name, &s.description, &s.managed_by, &s.source, digest),
            database_url: stored,
        });
    }
    store::upsert_connections(tx, &connections).await?;
    let projects: Vec<ProjectWrite> = written(&plan.projects)
        .map(|s| ProjectWrite {
            managed: Managed::new(
                &s.name,
                &s.description,
                &s.managed_by,
                &s.source,
                plan::project_digest(s),
            ),
            connection: s.connection.clone(),
            config: s.config.clone(),
        })
        .collect();
    store::upsert_projects(tx, &projects).await?;
    let objects: Vec<_> = written(&plan.objects).collect();
    store::simple::upsert_objects(tx, &objects).await?;
    store::simple::delete_objects(tx, &deleted(&plan.objects)).await?;
    store::delete_objects(tx, &deleted(&plan.projects), &deleted(&plan.connections)).await?;
    Ok(())
}

/// The rows a kind's creates and updates will hold.
fn written<T>(changes: &[Change<T>]) -> impl Iterator<Item = &T> {
    changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .filter_map(|c| c.after.as_ref())
}

/// The ids of the rows a kind's deletes remove.
fn deleted<T>(changes: &[Change<T>]) -> Vec<Uuid> {
    changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .filter_map(|c| c.id)
        .collect()
}
