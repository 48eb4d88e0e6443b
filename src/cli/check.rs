//! `cpi check -p P FILE…`: each file through a dry run of its import
//! ([`crate::import::dry_run`]), a report per file, and one exit code for
//! all: the worst file's (0 would load, 2 with warnings, 3 would fail).

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};

use super::args::{CheckArgs, Global};
use super::context::{load_manifests, management_pool, print_value};
use crate::import::dry_run::{check_file, Report, Target, Verdict};
use crate::manifest::{Secrets, UrlState};
use crate::secret::{self, Secret};

/// Runs the dry runs and prints their reports.
pub async fn check(g: &Global, a: &CheckArgs) -> Result<ExitCode> {
    for f in &a.files {
        if !f.is_file() {
            bail!("{} is not a file", f.display());
        }
    }
    let override_url = match &a.target_url_file {
        Some(f) => Some(secret_file(f)?),
        None => None,
    };
    let target = if a.from_manifests {
        described(g, &a.project, override_url)?
    } else {
        let pool = management_pool(g).await?;
        crate::store::require_current(&pool).await?;
        let t = Target::applied(&pool, &a.project).await?;
        match override_url {
            Some(url) => t.with_url(url),
            None => t,
        }
    };
    let mut reports = Vec::new();
    for f in &a.files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let r = check_file(&target, f, &name)
            .await
            .map_err(|e| anyhow!("{}: {}", f.display(), secret::scrub_known(&e.to_string())))?;
        if !a.output.structured() {
            print!("{}", text(&r));
        }
        reports.push(r);
    }
    if a.output.structured() {
        print_value(&reports, a.output)?;
    }
    let code = reports
        .iter()
        .map(|r| r.verdict.exit_code())
        .max()
        .unwrap_or(0);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// The URL a `--target-url-file` holds (trimmed), registered for scrubbing.
fn secret_file(f: &std::path::Path) -> Result<Secret> {
    let text = std::fs::read_to_string(f)
        .map_err(|e| anyhow!("--target-url-file {}: {e}", f.display()))?;
    let url = Secret::new(text.trim().to_string());
    secret::register(&url);
    Ok(url)
}

/// The project and its connection as the manifests folder has them.
fn described(g: &Global, project: &str, url: Option<Secret>) -> Result<Target> {
    let loaded = load_manifests(g, Secrets::Optional)?;
    let p = loaded
        .desired
        .projects
        .get(project)
        .ok_or_else(|| anyhow!("project {project} is not in {}", g.manifests.display()))?;
    if let Some(url) = url {
        return Ok(Target::described(project, p.config.clone(), url));
    }
    let c = loaded
        .desired
        .connections
        .get(&p.connection)
        .ok_or_else(|| {
            anyhow!(
                "project {project}: its connection {} is not in {}",
                p.connection,
                g.manifests.display()
            )
        })?;
    match &c.url {
        UrlState::Known(url) => Ok(Target::described(project, p.config.clone(), url.clone())),
        _ => bail!(
            "connection {}: its secret file is missing ({}): a check needs the target database",
            c.name,
            c.source
        ),
    }
}

/// One file's report for people.
fn text(r: &Report) -> String {
    let what = match r.verdict {
        Verdict::Load => "would load",
        Verdict::LoadWithWarnings => "would load with warnings",
        Verdict::Fail => "would fail",
        Verdict::Duplicate => "would be skipped (already imported)",
    };
    let c = &r.counts;
    let mut out = format!(
        "{}: {what} into {} ({}): read {}, insert {}, update {}, delete {}, skip {}\n",
        r.file,
        r.target_table,
        r.mode.as_str(),
        c.rows_read,
        c.rows_inserted,
        c.rows_updated,
        c.rows_deleted,
        c.rows_rejected
    );
    if let Some(m) = &r.message {
        for part in m.split("; ") {
            out.push_str(&format!("  {part}\n"));
        }
    }
    for e in r.errors.iter().take(10) {
        if r.message.as_deref() != Some(e.message.as_str()) {
            out.push_str(&format!("  {}\n", e.message));
        }
    }
    if r.errors_total > 10 {
        out.push_str(&format!("  … {} row error(s) in all\n", r.errors_total));
    }
    for ch in &r.checks {
        out.push_str(&format!(
            "  check {}: {} ({} of {} row(s) fail)\n",
            ch.check, ch.outcome, ch.failing, ch.rows
        ));
    }
    if let Some(create) = &r.create_table {
        out.push_str(&format!("  would run: {}\n", create.replace('\n', " ")));
    }
    out
}
