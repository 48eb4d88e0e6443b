//! `cpi_deliveries`: one row per event and Alert that takes it, and every
//! attempt to send it (`cpi_delivery_attempts`). Events reach delivery
//! through `cpi_notify_queue`, filled by a trigger in the transaction that
//! writes each event (migration 0111); [`take_queued`] and
//! [`insert_deliveries`] run in one transaction, so an event is fanned out
//! exactly once. The sender claims the oldest due delivery of an Alert and
//! project whose predecessors are all done, `FOR UPDATE SKIP LOCKED`, so
//! replicas never send one event at once and each Alert's events of a
//! project go out in order.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::error::Result;
use super::events::Event;

const EVENT_COLUMNS: &str =
    "e.id, e.seq, e.at, e.kind, e.severity, e.project, e.target_table, e.job_id, e.run_id, e.payload";

/// Takes up to `limit` queued events, oldest first (the rows leave the
/// queue when the transaction commits).
pub async fn take_queued(tx: &mut PgConnection, limit: i64) -> Result<Vec<Event>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH q AS (SELECT event_id FROM cpi_notify_queue LIMIT $1 FOR UPDATE SKIP LOCKED),
              gone AS (DELETE FROM cpi_notify_queue WHERE event_id IN (SELECT event_id FROM q))
         SELECT {EVENT_COLUMNS} FROM cpi_events e JOIN q ON q.event_id = e.id ORDER BY e.seq"
    )))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?)
}

/// Whether the notifier has work: a queued event, or a pending delivery
/// that is due. One statement outside any transaction (the partial index
/// on pending deliveries keeps it small): all an idle notifier costs.
pub async fn work_waiting(db: impl PgExecutor<'_>) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM cpi_notify_queue)
             OR EXISTS (SELECT 1 FROM cpi_deliveries
                         WHERE state = 'pending' AND next_attempt_at <= clock_timestamp())",
    )
    .fetch_one(db)
    .await?)
}

/// A delivery to create: an event an Alert takes, due at `due`.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    /// The event.
    pub event: &'a Event,
    /// The Alert's name.
    pub alert: &'a str,
    /// Not sent before (the end of its group window).
    pub due: DateTime<Utc>,
}

/// Creates deliveries (one per event and Alert, whatever happens twice).
pub async fn insert_deliveries(tx: &mut PgConnection, rows: &[NewDelivery<'_>]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let events: Vec<Uuid> = rows.iter().map(|r| r.event.id).collect();
    let alerts: Vec<&str> = rows.iter().map(|r| r.alert).collect();
    let projects: Vec<Option<&str>> = rows.iter().map(|r| r.event.project.as_deref()).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.event.seq).collect();
    let due: Vec<DateTime<Utc>> = rows.iter().map(|r| r.due).collect();
    sqlx::query(
        "INSERT INTO cpi_deliveries (event_id, alert, project, seq, next_attempt_at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::timestamptz[])
         ON CONFLICT (event_id, alert) DO NOTHING",
    )
    .bind(&events)
    .bind(&alerts)
    .bind(&projects)
    .bind(&seqs)
    .bind(&due)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A claimed delivery and its event.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery.
    pub id: Uuid,
    /// Its Alert.
    pub alert: String,
    /// Attempts made before this one.
    pub attempts: i32,
    /// The event.
    pub event: Event,
    /// The first line of the event's job's or run's error.
    pub error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    delivery_id: Uuid,
    alert: String,
    attempts: i32,
    error: Option<String>,
    #[sqlx(flatten)]
    event: Event,
}

impl From<ClaimedRow> for Claimed {
    fn from(r: ClaimedRow) -> Self {
        Claimed {
            id: r.delivery_id,
            alert: r.alert,
            attempts: r.attempts,
            event: r.event,
            error: r.error,
        }
    }
}

fn claim_sql(filter: &str, order_limit: &str) -> String {
    format!(
        "SELECT d.id AS delivery_id, d.alert, d.attempts,
                left(split_part(COALESCE(j.error, r.error), E'\\n', 1), 1000) AS error, {EVENT_COLUMNS}
           FROM cpi_deliveries d
           JOIN cpi_events e ON e.id = d.event_id
           LEFT JOIN cpi_import_jobs j ON j.id = e.job_id
           LEFT JOIN cpi_reconcile_runs r ON r.id = e.run_id
          WHERE d.state = 'pending' AND {filter}
          {order_limit}
          FOR UPDATE OF d SKIP LOCKED"
    )
}

/// The oldest due delivery whose Alert and project have no older pending
/// one, locked until the transaction ends.
pub async fn claim(tx: &mut PgConnection) -> Result<Option<Claimed>> {
    let sql = claim_sql(
        "d.next_attempt_at <= clock_timestamp()
            AND NOT EXISTS (SELECT 1 FROM cpi_deliveries o
                             WHERE o.alert = d.alert AND o.project IS NOT DISTINCT FROM d.project
                               AND o.state = 'pending' AND o.seq < d.seq)",
        "ORDER BY d.next_attempt_at, d.seq LIMIT 1",
    );
    let row: Option<ClaimedRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row.map(Claimed::from))
}

/// The other pending deliveries of `alert` (of `project` only, unless
/// `all_projects`) after `seq`, oldest first, locked; at most `limit`.
pub async fn pending_after(
    tx: &mut PgConnection,
    alert: &str,
    project: Option<&str>,
    all_projects: bool,
    seq: i64,
    limit: i64,
) -> Result<Vec<Claimed>> {
    let sql = claim_sql(
        "d.alert = $1 AND ($4 OR d.project IS NOT DISTINCT FROM $2) AND d.seq > $3",
        "ORDER BY d.seq LIMIT $5",
    );
    let rows: Vec<ClaimedRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(alert)
        .bind(project)
        .bind(seq)
        .bind(all_projects)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    Ok(rows.into_iter().map(Claimed::from).collect())
}

/// When the newest pending event of `alert` was written.
pub async fn newest_pending(db: impl PgExecutor<'_>, alert: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar(
        "SELECT max(e.at) FROM cpi_deliveries d JOIN cpi_events e ON e.id = d.event_id
          WHERE d.alert = $1 AND d.state = 'pending'",
    )
    .bind(alert)
    .fetch_one(db)
    .await?)
}

/// Messages `alert` sent in the last hour.
pub async fn sent_last_hour(db: impl PgExecutor<'_>, alert: &str) -> Result<u32> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT message_id) FROM cpi_deliveries
          WHERE alert = $1 AND state = 'sent' AND done_at > clock_timestamp() - interval '1 hour'",
    )
    .bind(alert)
    .fetch_one(db)
    .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Takes a transaction-long lock on `alert`'s sending, if no replica
/// holds it: one sender per Alert keeps `max_per_hour` exact.
pub async fn lock_alert(tx: &mut PgConnection, alert: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('cpi.notify.' || $1, 0))",
    )
    .bind(alert)
    .fetch_one(&mut *tx)
    .await?)
}

/// How a send of some deliveries ended.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// Sent, as message `message`.
    Sent {
        /// The message's id (the deliveries of one group share it).
        message: Uuid,
    },
    /// Not sent; tried again at `retry_at`, or never (`None`: given up).
    Failed {
        /// The error (no secret in it).
        error: &'a str,
        /// When to try again.
        retry_at: Option<DateTime<Utc>>,
    },
    /// Held back by `max_per_hour`.
    Suppressed,
    /// Their Alert or Provider is gone.
    Dropped(&'a str),
}

/// What [`finish`] writes: state, error, next attempt, message, attempt's success.
type Columns<'a> = (
    &'a str,
    Option<&'a str>,
    Option<DateTime<Utc>>,
    Option<Uuid>,
    Option<bool>,
);

/// Records an outcome for deliveries `ids` (an attempt each, unless
/// suppressed or dropped).
pub async fn finish(tx: &mut PgConnection, ids: &[Uuid], outcome: &Outcome<'_>) -> Result<()> {
    let (state, error, retry_at, message, attempt): Columns<'_> = match outcome {
        Outcome::Sent { message } => ("sent", None, None, Some(*message), Some(true)),
        Outcome::Failed {
            error,
            retry_at: Some(at),
        } => ("pending", Some(error), Some(*at), None, Some(false)),
        Outcome::Failed {
            error,
            retry_at: None,
        } => ("failed", Some(error), None, None, Some(false)),
        Outcome::Suppressed => ("suppressed", None, None, None, None),
        Outcome::Dropped(why) => ("dropped", Some(why), None, None, None),
    };
    sqlx::query(
        "UPDATE cpi_deliveries
            SET state = $2, last_error = COALESCE($3, last_error),
                next_attempt_at = COALESCE($4, next_attempt_at), message_id = $5,
                attempts = attempts + CASE WHEN $6::bool IS NULL THEN 0 ELSE 1 END,
                done_at = CASE WHEN $2 = 'pending' THEN NULL ELSE clock_timestamp() END
          WHERE id = ANY($1)",
    )
    .bind(ids)
    .bind(state)
    .bind(error)
    .bind(retry_at)
    .bind(message)
    .bind(attempt)
    .execute(&mut *tx)
    .await?;
    if let Some(ok) = attempt {
        sqlx::query(
            "INSERT INTO cpi_delivery_attempts (delivery_id, ok, error) SELECT UNNEST($1::uuid[]), $2, $3",
        )
        .bind(ids)
        .bind(ok)
        .bind(error)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// A delivery as `cpi events list` and `GET /events` show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Delivery {
    /// The event.
    pub event_id: Uuid,
    /// The Alert.
    pub alert: String,
    /// `pending`, `sent`, `failed` (given up), `suppressed` or `dropped`.
    pub state: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it is tried next (pending).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was sent, given up, suppressed or dropped.
    pub done_at: Option<DateTime<Utc>>,
    /// The message it went out in.
    pub message_id: Option<Uuid>,
}

/// The deliveries of `events`.
pub async fn of_events(db: impl PgExecutor<'_>, events: &[Uuid]) -> Result<Vec<Delivery>> {
    Ok(sqlx::query_as(
        "SELECT event_id, alert, state, attempts, last_error, next_attempt_at, done_at, message_id
           FROM cpi_deliveries WHERE event_id = ANY($1) ORDER BY seq, alert",
    )
    .bind(events)
    .fetch_all(db)
    .await?)
}

/// Moves deliveries' next attempt to `at` (no attempt was made).
pub async fn postpone(tx: &mut PgConnection, ids: &[Uuid], at: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE cpi_deliveries SET next_attempt_at = $2 WHERE id = ANY($1)")
        .bind(ids)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
