//! `cpi_events`: what happened, for whoever is told (DESIGN §9). A row is
//! written in the same transaction as its cause: the statement that
//! finishes a job or records a reconcile run writes its event too (one
//! statement, a data-modifying `WITH`), so an event exists exactly when its
//! cause committed. Delivery keeps its own state elsewhere; here events are
//! only written, listed and pruned with the history.
//!
//! A payload holds counts, names and ids: never a secret and never a row
//! value (a job's error text may quote a value, so it stays on the job).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::error::Result;

/// What happened. The spelling (`import.failed`, ...) is the column's and
/// the JSON's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[sqlx(type_name = "text")]
pub enum EventKind {
    /// A file was rejected (it went to `failed/`).
    #[serde(rename = "import.failed")]
    #[sqlx(rename = "import.failed")]
    ImportFailed,
    /// A file loaded with rows skipped (`on_error: skip_rows`).
    #[serde(rename = "import.rejected_rows")]
    #[sqlx(rename = "import.rejected_rows")]
    ImportRejectedRows,
    /// A contract check failed: the file was rolled back.
    #[serde(rename = "check.failed")]
    #[sqlx(rename = "check.failed")]
    CheckFailed,
    /// A contract check warned: the file loaded.
    #[serde(rename = "check.warned")]
    #[sqlx(rename = "check.warned")]
    CheckWarned,
    /// A table went past its `warn_after`.
    #[serde(rename = "freshness.warn")]
    #[sqlx(rename = "freshness.warn")]
    FreshnessWarn,
    /// A table went past its `error_after`.
    #[serde(rename = "freshness.error")]
    #[sqlx(rename = "freshness.error")]
    FreshnessError,
    /// A stale table got a file again.
    #[serde(rename = "freshness.recovered")]
    #[sqlx(rename = "freshness.recovered")]
    FreshnessRecovered,
    /// A reconcile could not load, plan or write the manifests.
    #[serde(rename = "reconcile.failed")]
    #[sqlx(rename = "reconcile.failed")]
    ReconcileFailed,
    /// A reconcile put rows changed behind cpi's back back as git says.
    #[serde(rename = "drift.corrected")]
    #[sqlx(rename = "drift.corrected")]
    DriftCorrected,
    /// An operator retried a job.
    #[serde(rename = "job.retried")]
    #[sqlx(rename = "job.retried")]
    JobRetried,
    /// An operator imported a processed file again on purpose.
    #[serde(rename = "job.replayed")]
    #[sqlx(rename = "job.replayed")]
    JobReplayed,
    /// An operator cancelled a job.
    #[serde(rename = "job.cancelled")]
    #[sqlx(rename = "job.cancelled")]
    JobCancelled,
    /// An operator paused a project.
    #[serde(rename = "project.paused")]
    #[sqlx(rename = "project.paused")]
    ProjectPaused,
    /// An operator resumed a project.
    #[serde(rename = "project.resumed")]
    #[sqlx(rename = "project.resumed")]
    ProjectResumed,
}

impl EventKind {
    /// Every kind, in the order of DESIGN §9.
    pub const ALL: [EventKind; 14] = [
        EventKind::ImportFailed,
        EventKind::ImportRejectedRows,
        EventKind::CheckFailed,
        EventKind::CheckWarned,
        EventKind::FreshnessWarn,
        EventKind::FreshnessError,
        EventKind::FreshnessRecovered,
        EventKind::ReconcileFailed,
        EventKind::DriftCorrected,
        EventKind::JobRetried,
        EventKind::JobReplayed,
        EventKind::JobCancelled,
        EventKind::ProjectPaused,
        EventKind::ProjectResumed,
    ];

    /// The kind as the column spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ImportFailed => "import.failed",
            EventKind::ImportRejectedRows => "import.rejected_rows",
            EventKind::CheckFailed => "check.failed",
            EventKind::CheckWarned => "check.warned",
            EventKind::FreshnessWarn => "freshness.warn",
            EventKind::FreshnessError => "freshness.error",
            EventKind::FreshnessRecovered => "freshness.recovered",
            EventKind::ReconcileFailed => "reconcile.failed",
            EventKind::DriftCorrected => "drift.corrected",
            EventKind::JobRetried => "job.retried",
            EventKind::JobReplayed => "job.replayed",
            EventKind::JobCancelled => "job.cancelled",
            EventKind::ProjectPaused => "project.paused",
            EventKind::ProjectResumed => "project.resumed",
        }
    }

    /// The kind spelled `s`, if any.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How much an event matters (an Alert's minimum severity filters on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing (an operator action, a recovery).
    Info,
    /// Something to look at; nothing was lost.
    Warn,
    /// A file or a reconcile was refused.
    Error,
}

/// An event to write, within the transaction of its cause.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// What happened.
    pub kind: EventKind,
    /// How much it matters.
    pub severity: Severity,
    /// The project, when there is one.
    pub project: Option<&'a str>,
    /// The target table, when there is one.
    pub table: Option<&'a str>,
    /// The import job it is about.
    pub job_id: Option<Uuid>,
    /// The reconcile run it is about.
    pub run_id: Option<Uuid>,
    /// Counts, names and ids; no secret, no row value.
    pub payload: serde_json::Value,
}

/// Writes `event` (on the executor of its cause's transaction); its id.
pub async fn record(db: impl PgExecutor<'_>, event: &NewEvent<'_>) -> Result<Uuid> {
    let (id,): (Uuid,) = sqlx::query_as(
        "INSERT INTO cpi_events (kind, severity, project, target_table, job_id, run_id, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(event.kind)
    .bind(event.severity)
    .bind(event.project)
    .bind(event.table)
    .bind(event.job_id)
    .bind(event.run_id)
    .bind(&event.payload)
    .fetch_one(db)
    .await?;
    Ok(id)
}

/// A `cpi_events` row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Event {
    /// The event's id: stable, for receivers to deduplicate.
    pub id: Uuid,
    /// Its place in the order events were written.
    pub seq: i64,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// What happened (`import.failed`, ...; read as text, so a kind written
    /// by a newer cpi still lists).
    pub kind: String,
    /// `info`, `warn` or `error`.
    pub severity: String,
    /// The project, when there is one.
    pub project: Option<String>,
    /// The target table, when there is one.
    pub target_table: Option<String>,
    /// The import job it is about.
    pub job_id: Option<Uuid>,
    /// The reconcile run it is about.
    pub run_id: Option<Uuid>,
    /// Counts, names and ids.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// Which events to list: newest first, optionally of one project or kind,
/// at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this project's.
    pub project: Option<String>,
    /// Only this kind.
    pub kind: Option<EventKind>,
    /// Only these projects' (`None`: every event, of no project too).
    pub among: Option<Vec<String>>,
    /// How many at most.
    pub limit: i64,
}

/// The events `f` selects, newest first.
pub async fn list(db: impl PgExecutor<'_>, f: &EventFilter) -> Result<Vec<Event>> {
    Ok(sqlx::query_as(
        "SELECT id, seq, at, kind, severity, project, target_table, job_id, run_id, payload
           FROM cpi_events
          WHERE ($1::text IS NULL OR project = $1) AND ($2::text IS NULL OR kind = $2)
            AND ($4::text[] IS NULL OR project = ANY($4))
          ORDER BY seq DESC LIMIT $3",
    )
    .bind(f.project.as_deref())
    .bind(f.kind)
    .bind(f.limit)
    .bind(&f.among)
    .fetch_all(db)
    .await?)
}

/// Deletes the events written more than `age` ago (retention, with the
/// jobs and runs they are about); how many.
pub async fn delete_old_events(db: impl PgExecutor<'_>, age: Duration) -> Result<u64> {
    super::lookup::delete_older_than(
        db,
        "DELETE FROM cpi_events WHERE at < clock_timestamp() - make_interval(secs => $1)",
        age,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One spelling per kind: the column's (`as_str`, sqlx's rename) and
    /// the JSON's (serde) agree, and `parse` reads it back.
    #[test]
    fn kind_spellings_agree() {
        for k in EventKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("import.done"), None);
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            crate::manifest::notify::EVENT_KINDS,
            "an Alert may name every kind"
        );
        assert!(Severity::Error > Severity::Warn && Severity::Warn > Severity::Info);
    }
}
