//! `cpi validate`, `cpi diff` and `cpi apply`: the manifests against the
//! database (or another manifests folder).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::args::{ApplyArgs, DiffArgs, Global, Output, ValidateArgs};
use super::context::{load_manifests_confined, load_manifests_from, management_pool};
use crate::apply::{self, ApplyOptions};
use crate::manifest::{self, Secrets};
use crate::plan::{self, Observed};
use crate::render;
use crate::store;

/// Exit code of `cpi diff` when there are changes (`terraform plan -detailed-exitcode`).
pub const EXIT_CHANGES: u8 = 2;

/// `cpi validate`: parse and check, no database.
pub fn validate(g: &Global, a: &ValidateArgs) -> Result<ExitCode> {
    let loaded = match (
        load_manifests_confined(g, &a.roots.inbox_roots, Secrets::Optional),
        a.output,
    ) {
        (Ok(l), _) => l,
        (Err(e), Output::Json | Output::Yaml) => {
            match e.downcast::<crate::manifest::InvalidManifests>() {
                Ok(invalid) => {
                    let problems: Vec<_> = invalid
                    .0
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "file": p.file, "line": p.line, "column": p.column, "message": p.message
                        })
                    })
                    .collect();
                    let out = serde_json::json!({"valid": false, "problems": problems});
                    super::context::print_value(&out, a.output)?;
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e),
            }
        }
        (Err(e), Output::Text) => return Err(e),
    };
    match a.output {
        Output::Text => println!(
            "{}: {} connection(s), {} project(s) in {} file(s): valid",
            g.manifests.display(),
            loaded.desired.connections.len(),
            loaded.desired.projects.len(),
            loaded.files.len()
        ),
        Output::Json | Output::Yaml => super::context::print_value(
            &serde_json::json!({
                "valid": true,
                "connections": loaded.desired.connections.len(),
                "projects": loaded.desired.projects.len(),
                "files": loaded.files.len(),
                "problems": [],
            }),
            a.output,
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(p: &plan::Plan, output: Output) {
    match output {
        Output::Text => print!("{}", render::text(p, std::io::stdout().is_terminal())),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&render::json(p)).unwrap_or_default()
        ),
        Output::Yaml => print!(
            "{}",
            serde_yaml::to_string(&render::json(p)).unwrap_or_default()
        ),
    }
}

/// `cpi diff`: the plan, and [`EXIT_CHANGES`] when it is not empty.
pub async fn diff(g: &Global, a: &DiffArgs) -> Result<ExitCode> {
    let loaded = load_manifests_confined(g, &a.roots.inbox_roots, Secrets::Optional)?;
    let observed = match &a.against {
        Some(dir) => {
            let base = load_manifests_from(dir, g.secrets_dir.as_deref(), Secrets::Optional)
                .with_context(|| format!("loading --against {}", dir.display()))?;
            plan::observed_from_manifests(&base.desired, &g.owner)
        }
        None => {
            let pool = management_pool(g).await?;
            let mut conn = pool.acquire().await?;
            if store::is_migrated(&mut *conn).await? {
                store::load_observed(&mut conn).await?
            } else {
                Observed::default()
            }
        }
    };
    let p = plan::plan(&loaded.desired, &observed, &g.owner, a.adopt);
    print_plan(&p, a.output);
    if !p.conflicts.is_empty() {
        bail!(
            "{} conflict(s): the plan cannot be applied as it is",
            p.conflicts.len()
        );
    }
    if let Err(e) = p.check_deletes(10, false) {
        eprintln!("warning: `cpi apply` with default flags would refuse this plan: {e}");
    }
    Ok(if p.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHANGES)
    })
}

/// `cpi apply`: the plan, applied in one transaction.
pub async fn apply(g: &Global, a: &ApplyArgs) -> Result<ExitCode> {
    let loaded = load_manifests_confined(g, &a.roots.inbox_roots, Secrets::Required)?;
    let pool = management_pool(g).await?;
    store::migrate_if_empty(&pool).await?;
    let opts = ApplyOptions {
        owner: g.owner.clone(),
        adopt: a.guards.adopt,
        max_delete: a.guards.max_delete,
        allow_delete: a.guards.allow_delete,
        trigger: store::ReconcileTrigger::Cli,
        revision: manifest::revision(&g.manifests),
    };
    let refused =
        crate::import::expressions::refused(&pool, &loaded.desired, &g.owner, a.guards.adopt)
            .await?;
    if !refused.is_empty() {
        let error = format!(
            "nothing applied: {} expression check(s) the target refuses:\n  {}",
            refused.len(),
            refused.join("\n  ")
        );
        let _ = apply::record_failure(&pool, &opts, store::ReconcileStatus::Refused, &error).await;
        anyhow::bail!("{error}");
    }
    let applied = apply::apply(&pool, &loaded.desired, &opts).await?;
    print_plan(&applied.plan, a.output);
    if a.output == Output::Text {
        let c = applied.counts;
        println!(
            "Applied: {} created, {} updated, {} deleted (run {}).",
            c.create, c.update, c.delete, applied.run_id
        );
    }
    Ok(ExitCode::SUCCESS)
}
