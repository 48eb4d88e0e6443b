//! `cpi events list` and `cpi notify test`.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use super::args::Global;
use super::context::{load_manifests, management_pool, print_value};
use super::notify_args::{EventsCommand, NotifyCommand};
use crate::manifest::notify::{AlertSpec, ProviderSpec};
use crate::manifest::{Kind, Secrets};
use crate::notify::message::{self, Told};
use crate::notify::send;
use crate::store::{self, deliveries::Delivery, events};

/// An event with its deliveries, as listed.
#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    event: events::Event,
    deliveries: Vec<Delivery>,
}

/// `cpi events ...`.
pub async fn events(g: &Global, command: &EventsCommand) -> Result<ExitCode> {
    let EventsCommand::List {
        project,
        limit,
        output,
    } = command;
    let pool = management_pool(g).await?;
    store::migrate_if_empty(&pool).await?;
    let filter = events::EventFilter {
        project: project.clone(),
        kind: None,
        among: None,
        limit: i64::from(*limit),
    };
    let list = events::list(&pool, &filter).await?;
    let ids: Vec<uuid::Uuid> = list.iter().map(|e| e.id).collect();
    let mut deliveries = store::deliveries::of_events(&pool, &ids).await?;
    let rows: Vec<Listed> = list
        .into_iter()
        .map(|event| {
            let (mine, rest) = deliveries.drain(..).partition(|d| d.event_id == event.id);
            deliveries = rest;
            Listed {
                event,
                deliveries: mine,
            }
        })
        .collect();
    if output.structured() {
        print_value(&rows, *output)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<22} {:<6} {:<20} {:<20} DELIVERIES",
        "AT", "KIND", "SEV", "PROJECT", "TABLE"
    );
    for r in &rows {
        let e = &r.event;
        let told: Vec<String> = r
            .deliveries
            .iter()
            .map(|d| format!("{}:{}({})", d.alert, d.state, d.attempts))
            .collect();
        println!(
            "{:<20} {:<22} {:<6} {:<20} {:<20} {}",
            e.at.format("%Y-%m-%dT%H:%M:%SZ"),
            e.kind,
            e.severity,
            e.project.as_deref().unwrap_or("-"),
            e.target_table.as_deref().unwrap_or("-"),
            if told.is_empty() {
                "-".to_string()
            } else {
                told.join(" ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `cpi notify ...`.
pub async fn notify(g: &Global, command: &NotifyCommand) -> Result<ExitCode> {
    let NotifyCommand::Test { alert } = command;
    let loaded = load_manifests(g, Secrets::Required)?;
    let d = &loaded.desired;
    let (_, spec): (String, AlertSpec) = d
        .specs(Kind::Alert)
        .into_iter()
        .find(|(n, _): &(String, AlertSpec)| n == alert)
        .ok_or_else(|| anyhow!("no Alert {alert:?} in the manifests"))?;
    let (_, provider): (String, ProviderSpec) = d
        .specs(Kind::Provider)
        .into_iter()
        .find(|(n, _): &(String, ProviderSpec)| *n == spec.provider)
        .ok_or_else(|| anyhow!("no Provider {:?} in the manifests", spec.provider))?;
    let project = spec
        .projects
        .iter()
        .find(|p| !p.contains(['*', '?', '[']))
        .cloned();
    let event = events::Event {
        id: uuid::Uuid::new_v4(),
        seq: 0,
        at: chrono::Utc::now(),
        kind: "notify.test".into(),
        severity: "info".into(),
        project,
        target_table: None,
        job_id: None,
        run_id: None,
        payload: serde_json::json!({"test": true}),
    };
    let msg = message::build(
        alert,
        &[Told { event, error: None }],
        0,
        spec.include_values,
        None,
    );
    match send::send(&send::client(), &provider, &msg).await {
        Ok(()) => {
            println!(
                "sent a test message for alert {alert:?} through provider {:?} (event {})",
                spec.provider, msg.event_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => bail!(
            "alert {alert:?}: provider {:?} did not take the test message: {}",
            spec.provider,
            crate::secret::scrub_known(&e.to_string())
        ),
    }
}
