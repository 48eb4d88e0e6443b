//! The delivery worker: fans queued events out to the Alerts that take
//! them, then sends due deliveries one at a time, each inside the
//! transaction that claimed it (`FOR UPDATE SKIP LOCKED`): a replica that
//! dies mid-send releases its claim and the message is sent again, once,
//! with the same event id. Alerts and Providers are read from
//! `cpi_objects` at each send, so every replica acts on what was applied.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::manifest::notify::{AlertSpec, ProviderSpec};
use crate::manifest::Kind;
use crate::notify::matching::{self, EventRef};
use crate::notify::message::{self, Told};
use crate::notify::send;
use crate::secret;
use crate::store::deliveries::{self, Claimed, NewDelivery, Outcome};
use crate::store::{self, StoreError};

/// How often the worker looks for queued events and due deliveries when idle.
pub const POLL: Duration = Duration::from_millis(500);
/// Queued events fanned out per transaction.
const FAN_OUT_BATCH: i64 = 500;
/// Events told in one message at most (a group window's worth).
const MAX_GROUP: i64 = 1000;

/// What the worker needs beside the pool.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The console's address, for job links (`--console-url`).
    pub console_url: Option<String>,
}

/// Runs until `stop` turns true. Idle, it asks one cheap question each
/// [`POLL`] ([`deliveries::work_waiting`]) instead of opening the fan-out's
/// and the sender's transactions: 2 statements a second per replica
/// where it was 12 (two transactions of three statements each poll).
pub async fn run(pool: PgPool, s: Settings, mut stop: watch::Receiver<bool>) {
    let client = send::client();
    let mut idle = false;
    loop {
        if *stop.borrow() {
            return;
        }
        if idle {
            let waiting = deliveries::work_waiting(&pool).await.unwrap_or_else(|e| {
                tracing::warn!(error = %secret::scrub_known(&e.to_string()), "notifications: cannot look for work");
                false
            });
            if !waiting {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        }
        let mut busy = false;
        match fan_out(&pool).await {
            Ok(n) => busy |= n > 0,
            Err(e) => {
                tracing::warn!(error = %secret::scrub_known(&e.to_string()), "notifications: fan-out failed")
            }
        }
        match send_one(&pool, &client, &s).await {
            Ok(sent) => busy |= sent,
            Err(e) => {
                tracing::warn!(error = %secret::scrub_known(&e.to_string()), "notifications: delivery failed")
            }
        }
        idle = !busy;
        if !busy {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

fn alert_of(v: serde_json::Value) -> Option<AlertSpec> {
    serde_json::from_value(v).ok()
}

fn window(a: &AlertSpec) -> Option<Duration> {
    a.group_window.as_ref().map(|w| w.duration())
}

/// One batch of queued events made into deliveries; how many events.
pub async fn fan_out(pool: &PgPool) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    let events = deliveries::take_queued(&mut tx, FAN_OUT_BATCH).await?;
    if events.is_empty() {
        return Ok(0);
    }
    let alerts: Vec<(String, AlertSpec)> = store::simple::specs(&mut *tx, Kind::Alert)
        .await?
        .into_iter()
        .filter_map(|(n, v)| alert_of(v).map(|a| (n, a)))
        .collect();
    let mut rows = Vec::new();
    for e in &events {
        let r = EventRef {
            kind: &e.kind,
            severity: &e.severity,
            project: e.project.as_deref(),
            at: e.at,
        };
        for (name, a) in &alerts {
            if matching::takes(a, &r) {
                let wait = window(a)
                    .and_then(|w| chrono::Duration::from_std(w).ok())
                    .unwrap_or_default();
                rows.push(NewDelivery {
                    event: e,
                    alert: name,
                    due: e.at + wait,
                });
            }
        }
    }
    deliveries::insert_deliveries(&mut tx, &rows).await?;
    tx.commit().await?;
    Ok(events.len())
}

fn ids(c: &[Claimed]) -> Vec<Uuid> {
    c.iter().map(|c| c.id).collect()
}

/// Sends the oldest due delivery (with its group); whether there was one.
pub async fn send_one(
    pool: &PgPool,
    client: &reqwest::Client,
    s: &Settings,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let Some(head) = deliveries::claim(&mut tx).await? else {
        return Ok(false);
    };
    if !deliveries::lock_alert(&mut tx, &head.alert).await? {
        // Another replica is sending for this Alert: its turn.
        return Ok(false);
    }
    let alert = store::simple::spec(&mut *tx, Kind::Alert, &head.alert)
        .await?
        .and_then(alert_of);
    let Some(alert) = alert else {
        deliveries::finish(
            &mut tx,
            &[head.id],
            &Outcome::Dropped("the alert was removed"),
        )
        .await?;
        tx.commit().await?;
        return Ok(true);
    };
    let provider: Option<ProviderSpec> =
        store::simple::spec(&mut *tx, Kind::Provider, &alert.provider)
            .await?
            .and_then(|v| serde_json::from_value(v).ok());
    let Some(provider) = provider else {
        deliveries::finish(
            &mut tx,
            &[head.id],
            &Outcome::Dropped("the provider was removed"),
        )
        .await?;
        tx.commit().await?;
        return Ok(true);
    };
    let sent = deliveries::sent_last_hour(&mut *tx, &head.alert).await?;
    if alert.max_per_hour.is_some_and(|m| sent >= m) {
        deliveries::finish(&mut tx, &[head.id], &Outcome::Suppressed).await?;
        tx.commit().await?;
        return Ok(true);
    }
    let last = alert.max_per_hour.is_some_and(|m| sent + 1 >= m);
    let now = Utc::now();
    if last {
        // The hour's last message counts what it holds back: it waits
        // until events stop coming for a moment.
        let quiet =
            chrono::Duration::from_std(crate::notify::LAST_MESSAGE_QUIET).unwrap_or_default();
        let newest = deliveries::newest_pending(&mut *tx, &head.alert).await?;
        if newest.is_some_and(|at| at > now - quiet) {
            deliveries::postpone(&mut tx, &[head.id], now + chrono::Duration::seconds(1)).await?;
            tx.commit().await?;
            return Ok(false);
        }
    }
    let window = window(&alert);
    let after = if window.is_some() || last {
        deliveries::pending_after(
            &mut tx,
            &head.alert,
            head.event.project.as_deref(),
            last,
            head.event.seq,
            MAX_GROUP,
        )
        .await?
    } else {
        Vec::new()
    };
    let mut run = vec![head.clone()];
    run.extend(after);
    let refs: Vec<EventRef> = run
        .iter()
        .map(|c| EventRef {
            kind: &c.event.kind,
            severity: &c.event.severity,
            project: c.event.project.as_deref(),
            at: c.event.at,
        })
        .collect();
    let messages = matching::messages(&refs, window, alert.max_per_hour, sent);
    let Some(first) = messages.first() else {
        return Ok(false);
    };
    let group: Vec<Claimed> = first.events.iter().map(|&i| run[i].clone()).collect();
    // The rest of the run: held back when this is the hour's last message,
    // otherwise left pending for their own turn.
    let held: Vec<Claimed> = if last {
        run.iter()
            .enumerate()
            .filter(|(i, _)| !first.events.contains(i))
            .map(|(_, c)| c.clone())
            .collect()
    } else {
        Vec::new()
    };
    let told: Vec<Told> = group
        .iter()
        .map(|c| Told {
            event: c.event.clone(),
            error: c.error.clone(),
        })
        .collect();
    let msg = message::build(
        &head.alert,
        &told,
        held.len(),
        alert.include_values,
        s.console_url.as_deref(),
    );
    match send::send(client, &provider, &msg).await {
        Ok(()) => {
            let message = Uuid::new_v4();
            deliveries::finish(&mut tx, &ids(&group), &Outcome::Sent { message }).await?;
            deliveries::finish(&mut tx, &ids(&held), &Outcome::Suppressed).await?;
            tracing::info!(alert = %head.alert, event = %msg.event_id, events = group.len(), suppressed = held.len(), "notification sent");
        }
        Err(e) => {
            let error = secret::scrub_known(&e.to_string());
            let attempts = u32::try_from(head.attempts).unwrap_or(0) + 1;
            let retry_at = crate::notify::retry_delay(attempts, e.retryable())
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| Utc::now() + d);
            tracing::warn!(alert = %head.alert, event = %msg.event_id, attempts, error = %error, gave_up = retry_at.is_none(), "notification not sent");
            deliveries::finish(
                &mut tx,
                &ids(&group),
                &Outcome::Failed {
                    error: &error,
                    retry_at,
                },
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}
