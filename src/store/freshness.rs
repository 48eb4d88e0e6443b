//! `cpi_freshness` and the job history read for freshness: each watched
//! table's last successful import, and the state it was last seen in, so
//! that a change of state writes its event once, in the transaction that
//! records the change.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::error::Result;
use super::events::{self, EventKind, NewEvent, Severity};
use crate::config::freshness::State;

/// When each `(project, table)` last had a file imported (`None`: never,
/// or no longer in the history); one index lookup per pair.
pub async fn last_imports(
    pool: &PgPool,
    pairs: &[(String, String)],
) -> Result<Vec<Option<DateTime<Utc>>>> {
    let (projects, tables): (Vec<&str>, Vec<&str>) =
        pairs.iter().map(|(p, t)| (p.as_str(), t.as_str())).unzip();
    let rows: Vec<(Option<DateTime<Utc>>,)> = sqlx::query_as(
        "SELECT (SELECT max(j.finished_at) FROM cpi_import_jobs j
                  WHERE j.status = 'succeeded' AND j.project_name = w.project
                    AND j.target_table = w.tbl)
           FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(project, tbl, n)
          ORDER BY w.n",
    )
    .bind(projects)
    .bind(tables)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(t,)| t).collect())
}

/// The event a change from `old` to `new` writes, if any (pure): a table
/// that goes stale says how stale; one that comes back says it recovered.
pub fn transition(old: State, new: State) -> Option<(EventKind, Severity)> {
    match (old, new) {
        (o, n) if o == n => None,
        (_, State::Warn) => Some((EventKind::FreshnessWarn, Severity::Warn)),
        (_, State::Error) => Some((EventKind::FreshnessError, Severity::Error)),
        (_, State::Fresh) => Some((EventKind::FreshnessRecovered, Severity::Info)),
    }
}

/// A table's state as just assessed.
pub struct Seen<'a> {
    /// The project's id.
    pub project_id: Uuid,
    /// The project's name.
    pub project: &'a str,
    /// The table, as the jobs name it.
    pub table: &'a str,
    /// Its state now.
    pub state: State,
    /// The event's payload (ages and bounds; no secret, no row value).
    pub payload: serde_json::Value,
}

/// Records `seen`; the event it wrote, when its state changed. A table seen
/// the first time counts as having been fresh. Row-locked, so replicas that
/// look at once write one event.
pub async fn record(pool: &PgPool, seen: &Seen<'_>) -> Result<Option<EventKind>> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO cpi_freshness (project_id, target_table, state) VALUES ($1, $2, 'fresh')
         ON CONFLICT DO NOTHING",
    )
    .bind(seen.project_id)
    .bind(seen.table)
    .execute(&mut *tx)
    .await?;
    let (old,): (String,) = sqlx::query_as(
        "SELECT state FROM cpi_freshness WHERE project_id = $1 AND target_table = $2 FOR UPDATE",
    )
    .bind(seen.project_id)
    .bind(seen.table)
    .fetch_one(&mut *tx)
    .await?;
    let old = State::parse(&old).unwrap_or(State::Fresh);
    let Some((kind, severity)) = transition(old, seen.state) else {
        tx.commit().await?;
        return Ok(None);
    };
    sqlx::query(
        "UPDATE cpi_freshness SET state = $3, since = now()
          WHERE project_id = $1 AND target_table = $2",
    )
    .bind(seen.project_id)
    .bind(seen.table)
    .bind(seen.state.as_str())
    .execute(&mut *tx)
    .await?;
    let mut payload = seen.payload.clone();
    payload["was"] = old.as_str().into();
    events::record(
        &mut *tx,
        &NewEvent {
            kind,
            severity,
            project: Some(seen.project),
            table: Some(seen.table),
            job_id: None,
            run_id: None,
            payload,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_of_state_is_one_event_and_no_change_none() {
        use State::*;
        assert_eq!(transition(Fresh, Fresh), None);
        assert_eq!(transition(Warn, Warn), None);
        assert_eq!(transition(Fresh, Warn).unwrap().0, EventKind::FreshnessWarn);
        assert_eq!(
            transition(Warn, Error).unwrap().0,
            EventKind::FreshnessError
        );
        assert_eq!(transition(Fresh, Error).unwrap().1, Severity::Error);
        assert_eq!(transition(Error, Warn).unwrap().0, EventKind::FreshnessWarn);
        assert_eq!(
            transition(Error, Fresh).unwrap(),
            (EventKind::FreshnessRecovered, Severity::Info)
        );
    }
}
