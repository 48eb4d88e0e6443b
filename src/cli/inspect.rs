//! `cpi connections` and `cpi projects`: read the management rows.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use super::args::{ConnectionsCommand, Global, ProjectsCommand};
use super::context::{cli_actor, dash, management_pool, print_list, print_one};
use crate::store;
use crate::{crypto, secret};

/// `cpi connections list|show|test`.
pub async fn connections(g: &Global, cmd: &ConnectionsCommand) -> Result<ExitCode> {
    let pool = management_pool(g).await?;
    store::require_migrated(&pool).await?;
    match cmd {
        ConnectionsCommand::List { output } => {
            let rows = store::list_connections(&pool).await?;
            // ConnectionRow skips database_url when serialized.
            print_list(
                &rows,
                *output,
                &["NAME", "DESCRIPTION", "MANAGED_BY", "SOURCE"],
                |r| {
                    vec![
                        r.name.clone(),
                        dash(&r.description),
                        dash(&r.managed_by),
                        dash(&r.source),
                    ]
                },
            )?;
        }
        ConnectionsCommand::Show {
            name,
            show_secrets,
            output,
        } => {
            let Some(r) = store::connection_by_name(&pool, name).await? else {
                bail!("connection {name:?} does not exist");
            };
            // Decrypted only to be shown: without the key (or without
            // --show-secrets) an encrypted URL shows as its envelope's key id.
            let url = match (r.url(), *show_secrets) {
                (Ok(u), true) => {
                    secret::register(&u);
                    u.expose().to_string()
                }
                (Ok(u), false) => secret::redact_url(u.expose()),
                (Err(e), true) => bail!("connection {name:?}: {e}"),
                (Err(_), false) => format!(
                    "(encrypted with key {})",
                    crypto::key_id(r.database_url.0.expose()).unwrap_or("?")
                ),
            };
            let mut v = serde_json::to_value(&r)?;
            v["database_url"] = url.into();
            print_one(&v, *output)?;
        }
        ConnectionsCommand::Test { name, timeout } => {
            let Some(r) = store::connection_by_name(&pool, name).await? else {
                bail!("connection {name:?} does not exist");
            };
            let url = r
                .url()
                .map_err(|e| anyhow::anyhow!("connection {name:?}: {e}"))?;
            secret::register(&url);
            let result = store::test_connection(&url, Duration::from_secs(*timeout)).await;
            // stdout keeps the API's exact answer; the session's encryption
            // is for the person reading, on stderr.
            match &result {
                Ok(Some(v)) => eprintln!("session: encrypted ({v})"),
                Ok(None) => eprintln!("session: not encrypted"),
                Err(_) => {}
            }
            let body = match &result {
                Ok(_) => serde_json::json!({"success": true, "message": "Connection successful"}),
                Err(e) => {
                    serde_json::json!({"success": false, "message": format!("Connection failed: {e}")})
                }
            };
            println!("{body}");
            if result.is_err() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cpi projects list|show|pause|resume`.
pub async fn projects(g: &Global, cmd: &ProjectsCommand) -> Result<ExitCode> {
    let pool = management_pool(g).await?;
    store::require_current(&pool).await?;
    match cmd {
        ProjectsCommand::List { output } => {
            let rows = store::list_projects(&pool).await?;
            let pauses = store::pauses::list(&pool).await?;
            let paused = |name: &str| pauses.iter().find(|p| p.project == name).cloned();
            let rows: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    v["paused"] = serde_json::to_value(paused(&r.name)).unwrap_or_default();
                    v
                })
                .collect();
            let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("-").to_string();
            print_list(
                &rows,
                *output,
                &[
                    "NAME",
                    "CONNECTION",
                    "DESCRIPTION",
                    "MANAGED_BY",
                    "SOURCE",
                    "PAUSED",
                ],
                |v| {
                    let paused = match v["paused"]["paused_by"].as_str() {
                        Some(by) => format!("since {} by {by}", text(&v["paused"], "paused_at")),
                        None => "-".into(),
                    };
                    vec![
                        text(v, "name"),
                        text(v, "connection_name"),
                        text(v, "description"),
                        text(v, "managed_by"),
                        text(v, "source"),
                        paused,
                    ]
                },
            )?;
        }
        ProjectsCommand::Show { name, output } => {
            let Some(r) = store::project_by_name(&pool, name).await? else {
                bail!("project {name:?} does not exist");
            };
            let pause = store::pauses::list(&pool)
                .await?
                .into_iter()
                .find(|p| p.project == *name);
            let mut v = serde_json::to_value(&r)?;
            v["paused"] = serde_json::to_value(pause)?;
            v["freshness"] =
                serde_json::to_value(crate::freshness::current(&pool, Some(name)).await?)?;
            print_one(&v, *output)?;
        }
        ProjectsCommand::Pause { name, reason } | ProjectsCommand::Resume { name, reason } => {
            let pausing = matches!(cmd, ProjectsCommand::Pause { .. });
            let who = cli_actor();
            let by = store::queue::Actor {
                who: &who,
                reason: reason.as_deref(),
                audit: None,
            };
            let done = store::pauses::set(&pool, name, pausing, &by).await?;
            let (verb, state) = if pausing {
                (
                    "paused",
                    "its files wait in the queue until `cpi projects resume`",
                )
            } else {
                ("resumed", "its waiting files are imported")
            };
            match done {
                store::pauses::Toggled::NoProject => bail!("project {name:?} does not exist"),
                store::pauses::Toggled::Already => println!("project {name} was {verb} already"),
                store::pauses::Toggled::Done => println!("project {name} {verb}: {state}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cpi freshness [--project P]`: every table with a freshness rule; exit
/// 0 all fresh, 2 one past `warn_after`, 3 one past `error_after`.
pub async fn freshness(
    g: &Global,
    project: Option<&str>,
    output: super::args::Output,
) -> Result<ExitCode> {
    let pool = management_pool(g).await?;
    store::require_current(&pool).await?;
    if let Some(p) = project {
        if store::project_by_name(&pool, p).await?.is_none() {
            bail!("project {p:?} does not exist");
        }
    }
    let tables = crate::freshness::current(&pool, project).await?;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    print_list(
        &tables,
        output,
        &[
            "PROJECT",
            "TABLE",
            "STATE",
            "LAST_IMPORT",
            "AGE",
            "WARN_AFTER",
            "ERROR_AFTER",
        ],
        |t| {
            vec![
                t.project.clone(),
                t.table.clone(),
                t.state.as_str().to_string(),
                t.last_import.map_or("-".into(), |l| {
                    l.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                }),
                humantime::format_duration(std::time::Duration::from_secs(t.age_seconds))
                    .to_string(),
                opt(&t.warn_after),
                opt(&t.error_after),
            ]
        },
    )?;
    Ok(ExitCode::from(match crate::freshness::worst(&tables) {
        crate::config::freshness::State::Fresh => 0,
        crate::config::freshness::State::Warn => 2,
        crate::config::freshness::State::Error => 3,
    }))
}
