//! `cpi_audit`: the audit trail's rows, written once and read newest first.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use super::error::Result;

/// One action of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Its place in the trail.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `token:NAME`, `token:--api-token-file` or `anonymous`.
    pub actor: String,
    /// What: the method and the route (`POST /jobs/{id}/retry`).
    pub action: String,
    /// On what: a project or connection, or the request's path.
    pub target: String,
    /// How it ended: the HTTP status.
    pub outcome: String,
    /// From where: the peer address.
    pub source: Option<String>,
}

/// A row to write.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// On what.
    pub target: &'a str,
    /// How it ended.
    pub outcome: &'a str,
    /// From where.
    pub source: Option<&'a str>,
}

/// Appends one row.
pub async fn record(db: impl PgExecutor<'_>, e: &NewEntry<'_>) -> Result<()> {
    let row = Pending {
        actor: e.actor.into(),
        action: e.action.into(),
        target: e.target.into(),
        outcome: e.outcome.into(),
        source: e.source.map(str::to_string),
    };
    Ok(row.record(db).await?)
}

/// An action's row, known before the action runs and written by the
/// action itself in its own transaction: it commits with the change, or
/// vanishes with it (the enforcing layer then records the failure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// How it ends when it commits: the HTTP status of the answer.
    pub outcome: String,
    /// From where.
    pub source: Option<String>,
}

impl Pending {
    /// Appends the row with `db`, the action's transaction. A bare
    /// `sqlx::Error`, as the action's own statements fail with.
    pub async fn record(&self, db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO cpi_audit (actor, action, target, outcome, source) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&self.actor)
        .bind(&self.action)
        .bind(&self.target)
        .bind(&self.outcome)
        .bind(&self.source)
        .execute(db)
        .await?;
        Ok(())
    }
}

/// Which rows of the trail: all, or one actor's, or one action's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this actor's rows (`token:ci`, `user:alice@example.com`).
    pub actor: Option<String>,
    /// Only this action's rows (`POST /jobs/{id}/retry`).
    pub action: Option<String>,
}

/// A page of the trail, newest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<Vec<AuditEntry>> {
    Ok(sqlx::query_as(
        "SELECT id, at, actor, action, target, outcome, source FROM cpi_audit
          WHERE ($3::text IS NULL OR actor = $3) AND ($4::text IS NULL OR action = $4)
          ORDER BY id DESC LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .bind(filter.actor.as_deref())
    .bind(filter.action.as_deref())
    .fetch_all(db)
    .await?)
}

/// Deletes the rows older than `age`; how many.
pub async fn delete_old(db: impl PgExecutor<'_>, age: Duration) -> Result<u64> {
    super::lookup::delete_older_than(
        db,
        "DELETE FROM cpi_audit WHERE at < now() - make_interval(secs => $1)",
        age,
    )
    .await
}
