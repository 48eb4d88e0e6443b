//! What a request acts on, for its permission's scope: a project's name,
//! a connection's name and the projects that use it, a job's project.
//! `None` when the row does not exist (the handler then answers 404).

use sqlx::PgExecutor;
use uuid::Uuid;

use super::error::Result;

/// The name of the project with id `id`.
pub async fn project_name(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM cpi_projects WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// The name of connection `id` and the names of the projects that use it.
pub async fn connection_scope(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<(String, Vec<String>)>> {
    let row: Option<(String, Vec<String>)> = sqlx::query_as(
        "SELECT c.name, COALESCE(array_agg(p.name) FILTER (WHERE p.name IS NOT NULL), '{}')
           FROM cpi_connections c LEFT JOIN cpi_projects p ON p.connection_id = c.id
          WHERE c.id = $1 GROUP BY c.name",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row)
}

/// Every connection's id with the names of the projects that use it (a
/// connection no project uses is absent), for filtering the list.
pub async fn connection_projects(db: impl PgExecutor<'_>) -> Result<Vec<(Uuid, Vec<String>)>> {
    Ok(sqlx::query_as(
        "SELECT connection_id, array_agg(name ORDER BY name) FROM cpi_projects
          WHERE connection_id IS NOT NULL GROUP BY connection_id",
    )
    .fetch_all(db)
    .await?)
}

/// The project name of job `id` (kept on the job when its project is gone).
pub async fn job_project(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT project_name FROM cpi_import_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}
