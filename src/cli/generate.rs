//! `cpi export` and `cpi convert-legacy`: manifests generated from the
//! management rows or from legacy configs (by [`crate::export`] and
//! [`crate::legacy`]), written by [`crate::output`].

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::legacy::{convert, read_input};
use crate::output::{self, SecretRefs};
use crate::secret;
use crate::store;

/// `cpi export --dir DIR --secrets-out DIR [--force]`.
pub async fn export(
    pool: &sqlx::PgPool,
    output: &Path,
    secrets_out: &Path,
    force: bool,
) -> Result<ExitCode> {
    let refs = SecretRefs::new(output, secrets_out)?;
    store::require_migrated(pool).await?;
    let conns = store::list_connections(pool).await?;
    let projs = store::list_projects(pool).await?;
    for c in &conns {
        if let Ok(url) = c.url() {
            secret::register(&url);
        }
    }
    let objects: Vec<_> = store::simple::load_objects(pool)
        .await?
        .into_iter()
        .map(|r| r.state)
        .collect();
    let exported = crate::export::export(&conns, &projs, &objects, &refs);
    output::write_all(&exported.files, output, secrets_out, force)?;
    for s in &exported.skipped {
        eprintln!("warning: skipped {s}");
    }
    for (p, _) in &exported.files.manifests {
        println!("wrote {}", output.join(p).display());
    }
    for (p, _) in &exported.files.secrets {
        println!("wrote {} (mode 0600)", secrets_out.join(p).display());
    }
    println!(
        "Exported {} manifest(s) and {} secret file(s); skipped {} row(s).",
        exported.files.manifests.len(),
        exported.files.secrets.len(),
        exported.skipped.len()
    );
    let secrets_flag = refs.secrets_dir_flag(secrets_out);
    println!(
        "Next: cpi diff --manifests {}{secrets_flag} --adopt, then cpi apply with the same flags to take the rows over.",
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `cpi convert-legacy --input DIR --dir DIR --secrets-out DIR [--force]`.
pub fn convert_legacy(
    input: &Path,
    output: &Path,
    secrets_out: &Path,
    force: bool,
) -> Result<ExitCode> {
    let refs = SecretRefs::new(output, secrets_out)?;
    let docs = read_input(input)?;
    let converted = convert(&docs, |v| std::env::var(v).ok(), &refs).map_err(|errors| {
        anyhow::anyhow!(
            "nothing converted ({} problem(s)):\n  {}",
            errors.len(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    })?;
    for (_, s) in &converted.files.secrets {
        secret::register(s);
    }
    output::write_all(&converted.files, output, secrets_out, force)?;
    for (var, name, users) in &converted.connections {
        println!(
            "connection {name}: URL from ${var} → {} (mode 0600); used by {}",
            secrets_out.join(format!("{name}.url")).display(),
            users.join(", ")
        );
    }
    for (p, _) in &converted.files.manifests {
        println!("wrote {}", output.join(p).display());
    }
    let secrets_flag = refs.secrets_dir_flag(secrets_out);
    println!(
        "Converted {} project(s) and {} connection(s). Next: cpi validate --manifests {}{secrets_flag}. Never commit the secret files in {}.",
        converted.files.manifests.len() - converted.connections.len(),
        converted.connections.len(),
        output.display(),
        secrets_out.display()
    );
    Ok(ExitCode::SUCCESS)
}
