//! Applying a plan: one transaction under the reconcile advisory lock, so
//! that replicas never apply at once and each plans against what the one
//! before it left.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::manifest::{Desired, UrlState};
use crate::metrics::ReconcileStatus;
use crate::plan::{self, Action, Counts, Plan};
use crate::render;
use crate::store::{self, StoreError};

/// One key for every reconciler on a database: two owners sharing a
/// database still serialize, which keeps the audit trail linear.
const RECONCILE_LOCK: i64 = 0x0063_7069_5f72_6563; // "cpi_rec"

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub owner: String,
    pub adopt: bool,
    pub max_delete: usize,
    pub allow_delete: bool,
    pub trigger: String,
    pub revision: Option<String>,
}

#[derive(Debug)]
pub struct Applied {
    pub run_id: Uuid,
    pub plan: Plan,
    pub counts: Counts,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{} conflict{}:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n"))]
    Conflicts(Vec<plan::Conflict>),
    #[error("{0}")]
    DeleteGuard(String),
    #[error("connection {0:?} has no known URL (a secret file is missing)")]
    UnknownSecret(String),
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
            .map(ApplyError::DeleteGuard)
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
    let run_id = record_run(
        &mut *tx,
        opts,
        started,
        ReconcileStatus::Succeeded,
        &counts,
        &diff,
        None,
    )
    .await?;
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
    let mut names: Vec<String> = Vec::new();
    let mut descs: Vec<Option<String>> = Vec::new();
    let mut urls: Vec<String> = Vec::new();
    let mut owners: Vec<Option<String>> = Vec::new();
    let mut sources: Vec<Option<String>> = Vec::new();
    let mut digests: Vec<Option<String>> = Vec::new();
    for c in &plan.connections {
        let Some(s) = (c.action != Action::Delete)
            .then_some(c.after.as_ref())
            .flatten()
        else {
            continue;
        };
        let UrlState::Known(url) = &s.url else {
            return Err(ApplyError::UnknownSecret(s.name.clone()));
        };
        names.push(s.name.clone());
        descs.push(s.description.clone());
        urls.push(url.expose().to_string());
        owners.push(s.managed_by.clone());
        sources.push(s.source.clone());
        digests.push(plan::connection_digest(s));
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
    for p in &plan.projects {
        let Some(s) = (p.action != Action::Delete)
            .then_some(p.after.as_ref())
            .flatten()
        else {
            continue;
        };
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

    let deleted_projects: Vec<Uuid> = plan
        .projects
        .iter()
        .filter(|p| p.action == Action::Delete)
        .filter_map(|p| p.id)
        .collect();
    if !deleted_projects.is_empty() {
        sqlx::query("DELETE FROM cpi_projects WHERE id = ANY($1)")
            .bind(&deleted_projects)
            .execute(&mut *tx)
            .await?;
    }
    let deleted_connections: Vec<Uuid> = plan
        .connections
        .iter()
        .filter(|c| c.action == Action::Delete)
        .filter_map(|c| c.id)
        .collect();
    if !deleted_connections.is_empty() {
        sqlx::query("DELETE FROM cpi_connections WHERE id = ANY($1)")
            .bind(&deleted_connections)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
