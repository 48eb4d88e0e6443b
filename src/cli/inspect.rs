//! `cpi connections` and `cpi projects`: read the management rows.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use super::args::{ConnectionsCommand, Global, ProjectsCommand};
use super::context::{dash, management_pool, print_list, print_one};
use crate::secret;
use crate::store;

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
            let url = if *show_secrets {
                r.database_url.0.expose().to_string()
            } else {
                secret::redact_url(r.database_url.0.expose())
            };
            let mut v = serde_json::to_value(&r)?;
            v["database_url"] = url.into();
            print_one(&v, *output)?;
        }
        ConnectionsCommand::Test { name, timeout } => {
            let Some(r) = store::connection_by_name(&pool, name).await? else {
                bail!("connection {name:?} does not exist");
            };
            secret::register(&r.database_url.0);
            let result =
                store::test_connection(&r.database_url.0, Duration::from_secs(*timeout)).await;
            let body = match &result {
                Ok(()) => serde_json::json!({"success": true, "message": "Connection successful"}),
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
