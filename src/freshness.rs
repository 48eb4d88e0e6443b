//! Freshness of the watched tables (data contracts): for every project's
//! `freshness` rules, how long since each table's last successfully
//! imported file, and the state that puts it in. Read by `cpi freshness`,
//! `cpi projects show`, `/metrics`, `GET /freshness` and the console; the
//! daemon records the changes ([`record_changes`]), each with its event.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::config::freshness::{Freshness, State};
use crate::store::{self, freshness, ProjectRow, StoreError};

/// One watched table, assessed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TableFreshness {
    /// The project.
    pub project: String,
    /// The table, as the jobs name it.
    pub table: String,
    /// When its last file was imported (`None`: none yet).
    pub last_import: Option<DateTime<Utc>>,
    /// Seconds since then (since the project was created, with none yet).
    pub age_seconds: u64,
    /// Its rule's `warn_after`, as people write it.
    pub warn_after: Option<String>,
    /// Its rule's `error_after`, as people write it.
    pub error_after: Option<String>,
    /// Where it stands.
    pub state: State,
    #[serde(skip)]
    #[schema(ignore)]
    project_id: uuid::Uuid,
}

/// The watched tables of `projects` (pure): `lasts` holds each rule's last
/// import, in the order of the projects' [`freshness_rules`](crate::config::ProjectConfig::freshness_rules).
/// A table with no import yet ages from its project's creation, so that a
/// new feed that never sends is noticed too.
pub fn assess(
    projects: &[ProjectRow],
    lasts: &[Option<DateTime<Utc>>],
    now: DateTime<Utc>,
) -> Vec<TableFreshness> {
    let mut lasts = lasts.iter();
    let mut out = Vec::new();
    for p in projects {
        for (table, rule) in rules(p) {
            let last = lasts.next().copied().flatten();
            let from = last.or(p.created_at).unwrap_or(now);
            let age = (now - from).to_std().unwrap_or(Duration::ZERO);
            out.push(TableFreshness {
                project: p.name.clone(),
                table,
                last_import: last,
                age_seconds: age.as_secs(),
                warn_after: rule.warn_after.map(human),
                error_after: rule.error_after.map(human),
                state: rule.decide(age),
                project_id: p.id,
            });
        }
    }
    out
}

fn rules(p: &ProjectRow) -> Vec<(String, Freshness)> {
    p.parsed
        .as_ref()
        .map(|c| c.freshness_rules())
        .unwrap_or_default()
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Every watched table now, or those of `project` only.
pub async fn current(
    pool: &PgPool,
    project: Option<&str>,
) -> Result<Vec<TableFreshness>, StoreError> {
    let projects: Vec<ProjectRow> = store::list_projects(pool)
        .await?
        .into_iter()
        .filter(|p| project.is_none_or(|n| p.name == n))
        .collect();
    let pairs: Vec<(String, String)> = projects
        .iter()
        .flat_map(|p| rules(p).into_iter().map(|(t, _)| (p.name.clone(), t)))
        .collect();
    let lasts = freshness::last_imports(pool, &pairs).await?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(pool).await?;
    Ok(assess(&projects, &lasts, now))
}

/// The worst state of `tables` (`Fresh` when there are none).
pub fn worst(tables: &[TableFreshness]) -> State {
    tables.iter().map(|t| t.state).max().unwrap_or(State::Fresh)
}

/// Assesses every watched table and records each change of state with its
/// event (`freshness.warn`, `freshness.error`, `freshness.recovered`); the
/// events written. The daemon calls it on a timer.
pub async fn record_changes(pool: &PgPool) -> Result<usize, StoreError> {
    let mut written = 0;
    for t in current(pool, None).await? {
        let seen = freshness::Seen {
            project_id: t.project_id,
            project: &t.project,
            table: &t.table,
            state: t.state,
            payload: serde_json::json!({
                "state": t.state.as_str(),
                "age_seconds": t.age_seconds,
                "last_import": t.last_import,
                "warn_after": t.warn_after,
                "error_after": t.error_after,
            }),
        };
        if let Some(kind) = freshness::record(pool, &seen).await? {
            tracing::info!(project = %t.project, table = %t.table, event = kind.as_str(), age_s = t.age_seconds, "freshness");
            written += 1;
        }
    }
    Ok(written)
}
