//! `cpi keygen`, `cpi rekey`, and the process's key ring from
//! `--encryption-key-file`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::args::Global;
use super::context::management_pool;
use crate::crypto::{self, Keyring};
use crate::store;

/// Loads `--encryption-key-file`, if given, as the process's key ring.
pub fn install(g: &Global) -> Result<()> {
    if let Some(f) = &g.encryption_key_file {
        crypto::install(Keyring::load(f)?);
    }
    Ok(())
}

/// The start-up warning of the commands that store or serve connection
/// URLs (`run`, `serve`, `apply`) when no key is given: the URLs, their
/// passwords with them, are then stored in plain text in the management
/// database. Logged once, at start.
pub fn warn_if_plain(g: &Global) {
    if g.encryption_key_file.is_none() {
        tracing::warn!(
            "no {} given: connection URLs (with their passwords) are stored in plain text in the management database; see docs/security.md (encryption at rest)",
            crypto::FLAG
        );
    }
}

/// `cpi keygen --file FILE`: a new key file, mode 0600 from creation on;
/// an existing file is never overwritten (it may hold the only key).
pub fn keygen(output: &Path) -> Result<ExitCode> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .with_context(|| {
            format!(
                "cannot create key file {} (an existing file is never overwritten)",
                output.display()
            )
        })?;
    f.write_all(crypto::generate().as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write key file {}", output.display()))?;
    eprintln!(
        "wrote a new encryption key to {} (mode 0600); give it with --encryption-key-file",
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `cpi rekey`: every stored URL re-encrypted with the first key.
pub async fn rekey(g: &Global) -> Result<ExitCode> {
    let ring = crypto::keyring();
    let Some(id) = ring.current_id().map(str::to_string) else {
        anyhow::bail!("cpi rekey needs the key file: give {}", crypto::FLAG);
    };
    let pool = management_pool(g).await?;
    store::require_migrated(&pool).await?;
    let mut tx = pool.begin().await?;
    let (changed, total) =
        store::reseal_connections(&mut tx, &ring, store::Reseal::NotCurrent).await?;
    tx.commit().await?;
    println!("re-encrypted {changed} of {total} connection URLs with key {id}");
    Ok(ExitCode::SUCCESS)
}
