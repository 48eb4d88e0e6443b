//! `cpi connections` and `cpi projects`: read the management rows.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use super::args::{ConnectionsCommand, Global, Output, ProjectsCommand};
use super::context::{dash, management_pool, table};
use crate::secret;
use crate::store;

/// `cpi connections list|show|test`.
pub async fn connections(g: &Global, cmd: &ConnectionsCommand) -> Result<ExitCode> {
    let pool = management_pool(g).await?;
    store::require_migrated(&pool).await?;
    match cmd {
        ConnectionsCommand::List { output } => {
            let rows = store::list_connections(&pool).await?;
            match output {
                // ConnectionRow skips database_url when serialized.
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Text => {
                    let mut t = vec![vec![
                        "NAME".into(),
                        "DESCRIPTION".into(),
                        "MANAGED_BY".into(),
                        "SOURCE".into(),
                    ]];
                    t.extend(rows.iter().map(|r| {
                        vec![
                            r.name.clone(),
                            dash(&r.description),
                            dash(&r.managed_by),
                            dash(&r.source),
                        ]
                    }));
                    print!("{}", table(t));
                }
            }
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
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Text => print!("{}", serde_yaml::to_string(&v)?),
            }
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
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Text => {
                    let mut t = vec![vec![
                        "NAME".into(),
                        "CONNECTION".into(),
                        "DESCRIPTION".into(),
                        "MANAGED_BY".into(),
                        "SOURCE".into(),
                    ]];
                    t.extend(rows.iter().map(|r| {
                        vec![
                            r.name.clone(),
                            dash(&r.connection_name),
                            dash(&r.description),
                            dash(&r.managed_by),
                            dash(&r.source),
                        ]
                    }));
                    print!("{}", table(t));
                }
            }
        }
        ProjectsCommand::Show { name, output } => {
            let Some(r) = store::project_by_name(&pool, name).await? else {
                bail!("project {name:?} does not exist");
            };
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                Output::Text => print!("{}", serde_yaml::to_string(&r)?),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
