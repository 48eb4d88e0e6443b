//! `cpi_project_pauses`: the operator's pause of a project (`cpi projects
//! pause`, `POST /projects/{name}/pause`). While a project is paused its
//! files are still queued, but the claim (`cpi_claim`, migration 0086)
//! takes none of its jobs: files wait, nothing is lost. A pause is the
//! operator's, not the manifests': reconcile never touches it.

use sqlx::PgExecutor;

use super::events::{EventKind, Severity};
use super::queue::Actor;

/// What a pause or a resume did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggled {
    /// The project is now paused (or resumed), and its event written.
    Done,
    /// It already was: nothing changed, no event.
    Already,
    /// No project has that name.
    NoProject,
}

/// A paused project.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Pause {
    /// The project's name.
    pub project: String,
    /// Since when.
    pub paused_at: chrono::DateTime<chrono::Utc>,
    /// Who paused it (`api`, `cli:<user>`).
    pub paused_by: String,
    /// Why, if said.
    pub reason: Option<String>,
}

/// Pauses project `name` (`paused`) or resumes it, with its
/// `project.paused` or `project.resumed` event (who, why) in the same
/// statement. A resumed project's waiting jobs are claimed again at once.
pub async fn set(
    db: impl PgExecutor<'_>,
    name: &str,
    paused: bool,
    by: &Actor<'_>,
) -> Result<Toggled, sqlx::Error> {
    let (change, kind) = if paused {
        (
            "INSERT INTO cpi_project_pauses (project_id, paused_by, reason)
         SELECT id, $2, $3 FROM p ON CONFLICT DO NOTHING RETURNING project_id",
            EventKind::ProjectPaused,
        )
    } else {
        (
            "DELETE FROM cpi_project_pauses z USING p WHERE z.project_id = p.id RETURNING z.project_id",
            EventKind::ProjectResumed,
        )
    };
    toggle(db, change, kind, name, by).await
}

/// One statement: find the project (`p`), change its pause (`change`,
/// returning `project_id` when it did) and write the event when it did.
async fn toggle(
    db: impl PgExecutor<'_>,
    change: &str,
    kind: EventKind,
    name: &str,
    by: &Actor<'_>,
) -> Result<Toggled, sqlx::Error> {
    let (found, changed): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH p AS (SELECT id, name FROM cpi_projects WHERE name = $1),
              z AS ({change}),
              e AS (INSERT INTO cpi_events (kind, severity, project, payload)
                    SELECT $4, $5, p.name, jsonb_build_object('by', $2::text, 'reason', $3::text)
                      FROM p JOIN z ON z.project_id = p.id)
         SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM z)"
    )))
    .bind(name)
    .bind(by.who)
    .bind(by.reason)
    .bind(kind)
    .bind(Severity::Info)
    .fetch_one(db)
    .await?;
    Ok(match (found, changed) {
        (0, _) => Toggled::NoProject,
        (_, 0) => Toggled::Already,
        _ => Toggled::Done,
    })
}

/// Every paused project, by name.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Pause>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.name AS project, z.paused_at, z.paused_by, z.reason
           FROM cpi_project_pauses z JOIN cpi_projects p ON p.id = z.project_id
          ORDER BY p.name",
    )
    .fetch_all(db)
    .await
}
