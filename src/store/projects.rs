//! `cpi_projects`: the row type (with its connection's name and its config
//! parsed once) and the HTTP API's reads and writes of unmanaged rows.

use std::sync::Arc;

use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row as _};
use uuid::Uuid;

use super::error::Result;
use super::lookup::{delete_unmanaged, fetch_by};
use crate::config::ProjectConfig;

/// A project's config as read from its row: parsed once, here, or why it
/// does not parse (the row is still read: an invalid config must not hide
/// the project from listings, and each caller decides what it means).
pub type ParsedConfig = Result<ProjectConfig, Arc<serde_json::Error>>;

/// Parses a stored `cpi_projects.config`.
pub fn parse_config(raw: &serde_json::Value) -> ParsedConfig {
    serde_json::from_value(raw.clone()).map_err(Arc::new)
}

/// A `cpi_projects` row, with its connection's name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectRow {
    /// The row's id.
    pub id: Uuid,
    /// The project's unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Its connection, if any.
    pub connection_id: Option<Uuid>,
    /// Its connection's name, if any.
    pub connection_name: Option<String>,
    /// The config as stored (JSON), shown as is by the API.
    pub config: serde_json::Value,
    /// [`Self::config`] parsed.
    #[serde(skip)]
    pub parsed: ParsedConfig,
    /// The reconciler that owns the row, if any.
    pub managed_by: Option<String>,
    /// The manifest file the row came from, if any.
    pub source: Option<String>,
    /// When the row was created.
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the row last changed.
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for ProjectRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let config: serde_json::Value = row.try_get("config")?;
        Ok(ProjectRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            connection_id: row.try_get("connection_id")?,
            connection_name: row.try_get("connection_name")?,
            parsed: parse_config(&config),
            config,
            managed_by: row.try_get("managed_by")?,
            source: row.try_get("source")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// Every column of [`ProjectRow`], from the projects joined with their
/// connections (`p` and `c`).
const SELECT: &str = "SELECT p.id, p.name, p.description, p.connection_id, c.name AS connection_name, p.config, p.managed_by, p.source, p.created_at, p.updated_at
  FROM cpi_projects p LEFT JOIN cpi_connections c ON c.id = p.connection_id";

/// Every project, by name.
pub async fn list_projects(db: impl PgExecutor<'_>) -> Result<Vec<ProjectRow>> {
    Ok(
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY p.name")))
            .fetch_all(db)
            .await?,
    )
}

/// Every project's name (to filter a list by the caller's projects).
pub async fn project_names(db: impl PgExecutor<'_>) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM cpi_projects ORDER BY name")
            .fetch_all(db)
            .await?,
    )
}

/// The project named `name`, if any.
pub async fn project_by_name(db: impl PgExecutor<'_>, name: &str) -> Result<Option<ProjectRow>> {
    fetch_by(db, format!("{SELECT} WHERE p.name = $1"), name).await
}

/// The project with this id, if any.
pub async fn project_by_id(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<ProjectRow>> {
    fetch_by(db, format!("{SELECT} WHERE p.id = $1"), id).await
}

// Writes of the HTTP API: like those of connections, on unmanaged rows
// only, the row locked first.

/// The row, locked until the end of the transaction.
pub async fn lock_project(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<ProjectRow>> {
    fetch_by(db, format!("{SELECT} WHERE p.id = $1 FOR UPDATE OF p"), id).await
}

/// Inserts an unmanaged project; its id.
pub async fn insert_project(
    db: impl PgExecutor<'_>,
    name: &str,
    description: Option<&str>,
    connection_id: Option<Uuid>,
    config: &serde_json::Value,
) -> Result<Uuid> {
    let (id,): (Uuid,) = sqlx::query_as(
        "INSERT INTO cpi_projects (name, description, connection_id, config) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(name)
    .bind(description)
    .bind(connection_id)
    .bind(config)
    .fetch_one(db)
    .await?;
    Ok(id)
}

/// Updates a project no reconciler owns; `false` when there is none.
pub async fn update_unmanaged_project(
    db: impl PgExecutor<'_>,
    id: Uuid,
    name: &str,
    description: Option<&str>,
    connection_id: Option<Uuid>,
    config: &serde_json::Value,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE cpi_projects SET name = $2, description = $3, connection_id = $4, config = $5, updated_at = NOW()
          WHERE id = $1 AND managed_by IS NULL",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(connection_id)
    .bind(config)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a project no reconciler owns; `false` when there is none.
pub async fn delete_unmanaged_project(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool> {
    delete_unmanaged(db, "cpi_projects", id).await
}
