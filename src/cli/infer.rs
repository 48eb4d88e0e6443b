//! `cpi infer FILE… [--project P]`: the `CREATE TABLE` that
//! `create_table: infer` would run, for review in a pull request.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};

use super::args::{Global, InferArgs};
use super::context::management_pool;
use crate::config::{Encoding, ProjectConfig, ResolvedOptions};
use crate::import::{self, infer};
use crate::store;

/// Prints one `CREATE TABLE` per file, the decisions as SQL comments.
pub async fn infer(g: &Global, a: &InferArgs) -> Result<ExitCode> {
    for f in &a.files {
        if !f.is_file() {
            bail!("{} is not a file", f.display());
        }
    }
    let config = match &a.project {
        Some(p) => {
            let pool = management_pool(g).await?;
            let row = store::project_by_name(&pool, p)
                .await?
                .ok_or_else(|| anyhow!("project {p} does not exist"))?;
            store::parse_config(&row.config)
                .map_err(|e| anyhow!("project {p}: its config does not parse: {e}"))?
        }
        None => ProjectConfig::default(),
    };
    for f in &a.files {
        let o = options(&config, f)?;
        let name = file_name(f);
        let path = f.clone();
        let opts = o.clone();
        let (o, shape, inf) = tokio::task::spawn_blocking(move || {
            let source = path.into();
            // The decisions an import takes before reading the file.
            let (opts, mut sniffed) = if opts.encoding == Encoding::Auto || opts.delimiter_auto {
                let full = opts.encoding == Encoding::Auto;
                let s = import::sniff::sniff(&source, full, &opts.limits)
                    .map_err(|e| anyhow!("{name}: cannot read: {e}"))?;
                import::sniff::decide(&s, &opts)
            } else {
                (opts, Vec::new())
            };
            let (o, shape) = import::shape::decide(&source, &opts)
                .map_err(|e| anyhow!("{}", import::pipeline::csv_error(&name, &e)))?;
            sniffed.extend(shape);
            let shape = sniffed;
            let inf = import::infer_file(&source, &name, &o)?;
            anyhow::Ok((o, shape, inf))
        })
        .await??;
        println!("-- {}", f.display());
        for n in shape.iter().chain(&inf.file_notes).chain(&inf.notes) {
            println!("-- {n}");
        }
        println!(
            "{};",
            infer::create_table(&o.table.quoted(), &inf, &o.primary_key)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn file_name(f: &Path) -> String {
    f.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The project's options for the file; without a project (or a pattern
/// matching it) the defaults, with the table named after the file.
fn options(config: &ProjectConfig, f: &Path) -> Result<ResolvedOptions> {
    let name = file_name(f);
    let relative = import::relative_path(config.inbox.as_deref(), f, &name);
    if let Some(o) = config.options_for(&relative) {
        return Ok(o);
    }
    let any = ProjectConfig {
        defaults: Some(crate::config::ImportOptions {
            file_pattern: Some("*".into()),
            ..config.defaults.clone().unwrap_or_default()
        }),
        ..ProjectConfig::default()
    };
    any.options_for(&name)
        .ok_or_else(|| anyhow!("{}: no options apply", f.display()))
}
