//! `cpi connections` and `cpi projects`: read the management rows.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use super::args::{ConnectionsCommand, Global, ProjectsCommand};
use super::context::{dash, management_pool, print_list, print_one};
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

/// `cpi projects list|show`.
pub async fn projects(g: &Global, cmd: &ProjectsCommand) -> Result<ExitCode> {
    let pool = management_pool(g).await?;
    store::require_migrated(&pool).await?;
    match cmd {
        ProjectsCommand::List { output } => {
            let rows = store::list_projects(&pool).await?;
            print_list(
                &rows,
                *output,
                &["NAME", "CONNECTION", "DESCRIPTION", "MANAGED_BY", "SOURCE"],
                |r| {
                    vec![
                        r.name.clone(),
                        dash(&r.connection_name),
                        dash(&r.description),
                        dash(&r.managed_by),
                        dash(&r.source),
                    ]
                },
            )?;
        }
        ProjectsCommand::Show { name, output } => {
            let Some(r) = store::project_by_name(&pool, name).await? else {
                bail!("project {name:?} does not exist");
            };
            print_one(&r, *output)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
