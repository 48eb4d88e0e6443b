//! Applying a plan: one transaction under the reconcile advisory lock, so
//! that replicas never apply at once and each plans against what the one
//! before it left.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::manifest::{Desired, UrlState};
use crate::plan::{self, Action, Change, Counts, Plan};
use crate::render;
use crate::store::ReconcileStatus;
use crate::store::{self, StoreError};

/// One key for every reconciler on a database: two owners sharing a
/// database still serialize, which keeps the audit trail linear.
const RECONCILE_LOCK: i64 = 0x0063_7069_5f72_6563; // "cpi_rec"

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
    /// What started the run (`cli`, `daemon`, …), recorded in `cpi_reconcile_runs`.
    pub trigger: String,
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
    // started_at is when the lock was granted, not when the transaction
    // began: run intervals of concurrent reconcilers never overlap.
    let (started,): (chrono::DateTime<chrono::Utc>,) = sqlx::query_as(
        "SELECT clock_timestamp() FROM (SELECT pg_advisory_xact_lock($1)) AS locked",
    )
    .bind(RECONCILE_LOCK)
    .fetch_one(&mut *tx)
    .await?;
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
        record_run(
            pool,
            opts,
            started,
            ReconcileStatus::Refused,
            &counts,
            &diff,
            Some(&err.to_string()),
        )
        .await?;
        return Err(err);
    }
    match write(&mut tx, &plan).await {
        Ok(()) => {}
        Err(e) => {
            let _ = tx.rollback().await;
            let _ = record_run(
                pool,
                opts,
                started,
                ReconcileStatus::Failed,
                &counts,
                &diff,
                Some(&e.to_string()),
            )
            .await;
            return Err(e);
        }
    }
    // A no-op extends the last run when that was a no-op too: an
    // `--interval` that finds nothing to do adds no row (288 a day, forever).
    let repeated = if plan.is_empty() {
        extend_noop(&mut *tx, opts).await?
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

/// Records a reconcile that failed before it could plan (invalid manifests,
/// unreadable secrets): the audit trail shows why nothing was applied.
pub async fn record_failure(
    pool: &PgPool,
    opts: &ApplyOptions,
    error: &str,
) -> Result<Uuid, ApplyError> {
    record_run(
        pool,
        opts,
        chrono::Utc::now(),
        ReconcileStatus::Failed,
        &Counts::default(),
        "",
        Some(error),
    )
    .await
}

/// Moves the `finished_at` of the latest run to now when it is a no-op of
/// the same owner and revision (succeeded, nothing changed or drifted);
/// its id, or `None` when the latest run is anything else.
async fn extend_noop(
    db: impl sqlx::PgExecutor<'_>,
    opts: &ApplyOptions,
) -> Result<Option<Uuid>, ApplyError> {
    let id: Option<(Uuid,)> = sqlx::query_as(
        "UPDATE cpi_reconcile_runs SET finished_at = clock_timestamp()
          WHERE id = (SELECT id FROM cpi_reconcile_runs ORDER BY started_at DESC LIMIT 1)
            AND owner = $1 AND revision IS NOT DISTINCT FROM $2 AND status = 'succeeded'
            AND created = 0 AND updated = 0 AND deleted = 0 AND drifted = 0
          RETURNING id",
    )
    .bind(&opts.owner)
    .bind(&opts.revision)
    .fetch_optional(db)
    .await?;
    Ok(id.map(|r| r.0))
}

async fn record_run(
    db: impl sqlx::PgExecutor<'_>,
    opts: &ApplyOptions,
    started: chrono::DateTime<chrono::Utc>,
    status: ReconcileStatus,
    c: &Counts,
    diff: &str,
    error: Option<&str>,
) -> Result<Uuid, ApplyError> {
    let (id,): (Uuid,) = sqlx::query_as(
        "INSERT INTO cpi_reconcile_runs (owner, trigger, revision, status, created, updated, deleted, drifted, diff, error, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, clock_timestamp()) RETURNING id",
    )
    .bind(&opts.owner)
    .bind(&opts.trigger)
    .bind(&opts.revision)
    .bind(status)
    .bind(c.create as i32)
    .bind(c.update as i32)
    .bind(c.delete as i32)
    .bind(c.drift as i32)
    .bind(diff)
    .bind(error)
    .bind(started)
    .fetch_one(db)
    .await?;
    Ok(id)
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
        store::reseal_connections(tx, &ring, store::Reseal::Plain).await?;
    } else if written(&plan.connections).next().is_some()
        && store::has_sealed_urls(&mut *tx).await?
    {
        return Err(ApplyError::NeedKey);
    }
    let mut names: Vec<String> = Vec::new();
    let mut descs: Vec<Option<String>> = Vec::new();
    let mut urls: Vec<String> = Vec::new();
    let mut owners: Vec<Option<String>> = Vec::new();
    let mut sources: Vec<Option<String>> = Vec::new();
    let mut digests: Vec<Option<String>> = Vec::new();
    for s in written(&plan.connections) {
        let UrlState::Known(url) = &s.url else {
            return Err(ApplyError::UnknownSecret(s.name.clone()));
        };
        names.push(s.name.clone());
        descs.push(s.description.clone());
        let stored = ring.seal(url);
        digests.push(Some(plan::connection_digest(
            &s.name,
            s.description.as_deref(),
            &stored,
        )));
        urls.push(stored);
        owners.push(s.managed_by.clone());
        sources.push(s.source.clone());
    }
    if !names.is_empty() {
        sqlx::query(
            "INSERT INTO cpi_connections (name, description, database_url, managed_by, source, applied_digest)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
             ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description,
                 database_url = EXCLUDED.database_url, managed_by = EXCLUDED.managed_by,
                 source = EXCLUDED.source, applied_digest = EXCLUDED.applied_digest, updated_at = NOW()",
        )
        .bind(&names)
        .bind(&descs)
        .bind(&urls)
        .bind(&owners)
        .bind(&sources)
        .bind(&digests)
        .execute(&mut *tx)
        .await?;
    }

    let mut names: Vec<String> = Vec::new();
    let mut descs: Vec<Option<String>> = Vec::new();
    let mut conn_names: Vec<String> = Vec::new();
    let mut configs: Vec<serde_json::Value> = Vec::new();
    let mut owners: Vec<Option<String>> = Vec::new();
    let mut sources: Vec<Option<String>> = Vec::new();
    let mut digests: Vec<String> = Vec::new();
    for s in written(&plan.projects) {
        names.push(s.name.clone());
        descs.push(s.description.clone());
        conn_names.push(s.connection.clone().unwrap_or_default());
        configs.push(s.config.clone());
        owners.push(s.managed_by.clone());
        sources.push(s.source.clone());
        digests.push(plan::project_digest(s));
    }
    if !names.is_empty() {
        // The connection id is looked up by name in the same statement: a
        // connection created above is visible to it inside this transaction.
        sqlx::query(
            "INSERT INTO cpi_projects (name, description, connection_id, config, managed_by, source, applied_digest)
             SELECT u.name, u.description, c.id, u.config, u.managed_by, u.source, u.digest
               FROM UNNEST($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::text[], $7::text[])
                    AS u(name, description, connection, config, managed_by, source, digest)
               LEFT JOIN cpi_connections c ON c.name = u.connection
             ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description,
                 connection_id = EXCLUDED.connection_id, config = EXCLUDED.config,
                 managed_by = EXCLUDED.managed_by, source = EXCLUDED.source,
                 applied_digest = EXCLUDED.applied_digest, updated_at = NOW()",
        )
        .bind(&names)
        .bind(&descs)
        .bind(&conn_names)
        .bind(&configs)
        .bind(&owners)
        .bind(&sources)
        .bind(&digests)
        .execute(&mut *tx)
        .await?;
    }

    // Projects first: they reference connections.
    delete_rows(tx, "cpi_projects", &plan.projects).await?;
    delete_rows(tx, "cpi_connections", &plan.connections).await?;
    Ok(())
}

/// The rows a kind's creates and updates will hold.
fn written<T>(changes: &[Change<T>]) -> impl Iterator<Item = &T> {
    changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .filter_map(|c| c.after.as_ref())
}

/// Deletes the rows of `table` that `changes` deletes.
async fn delete_rows<T>(
    tx: &mut PgConnection,
    table: &str,
    changes: &[Change<T>],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .filter_map(|c| c.id)
        .collect();
    if !ids.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE id = ANY($1)"
        )))
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
