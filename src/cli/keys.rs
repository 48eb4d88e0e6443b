//! `cpi keygen`, `cpi keys add|promote|retire|list`, `cpi rekey`, and the
//! process's key ring from `--encryption-key-file`. The rules of a safe
//! rotation are [`crate::key_file`]'s; this reads and writes around them.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::args::{Global, KeysCommand};
use super::context::management_pool;
use crate::crypto::{self, Keyring};
use crate::key_file;
use crate::store::{self, processes};

/// Loads `--encryption-key-file`, if given, as the process's key ring.
pub fn install(g: &Global) -> Result<()> {
    if let Some(f) = &g.encryption_key_file {
        crypto::install_file(f)?;
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
    store::require_current(&pool).await?;
    key_file::may_rekey(&id, &processes::live(&pool).await?)?;
    let mut tx = pool.begin().await?;
    let (changed, total) =
        store::reseal_connections(&mut tx, &ring, store::Reseal::NotCurrent).await?;
    let history = store::rewrite_run_diffs(&mut tx, crate::render::redact_history).await?;
    tx.commit().await?;
    println!("re-encrypted {changed} of {total} connection URLs with key {id}");
    if history > 0 {
        println!("removed the connection URLs from {history} reconcile runs' diffs");
    }
    Ok(ExitCode::SUCCESS)
}

/// `cpi keys …`: one step of a rotation.
pub async fn keys(g: &Global, command: &KeysCommand) -> Result<ExitCode> {
    let file = |f: &Option<std::path::PathBuf>| {
        f.clone()
            .or_else(|| g.encryption_key_file.clone())
            .with_context(|| format!("which key file? give --file or {}", crypto::FLAG))
    };
    match command {
        KeysCommand::Add { file: f } => {
            let path = file(f)?;
            let text = read(&path)?;
            let line = crypto::generate_line();
            let id = line.split(':').next().unwrap_or_default().to_string();
            write(&path, &key_file::add(&text, &line))?;
            println!("added key {id} (last: it decrypts, it does not encrypt yet)");
            println!(
                "next: deploy {} to every cpi process, then cpi keys promote {id}",
                path.display()
            );
        }
        KeysCommand::Promote { id, file: f } => {
            let path = file(f)?;
            let text = read(&path)?;
            let edited = key_file::promote(&text, id)?;
            let pool = management_pool(g).await?;
            store::require_current(&pool).await?;
            key_file::may_promote(id, &processes::live(&pool).await?)?;
            write(&path, &edited)?;
            println!("key {id} now encrypts (first in {})", path.display());
            println!("next: deploy the file to every cpi process, then cpi rekey");
        }
        KeysCommand::Retire { id, file: f } => {
            let path = file(f)?;
            let text = read(&path)?;
            let edited = key_file::retire(&text, id)?;
            let pool = management_pool(g).await?;
            store::require_current(&pool).await?;
            let sealed = store::urls_by_key(&pool)
                .await?
                .into_iter()
                .find(|(k, _)| k.as_deref() == Some(id.as_str()))
                .map_or(0, |(_, n)| n as u64);
            key_file::may_retire(id, sealed, &processes::live(&pool).await?)?;
            write(&path, &edited)?;
            println!("retired key {id} from {}", path.display());
            println!("next: deploy the file to every cpi process; keep a backup of the old key until no backup of the database needs it");
        }
        KeysCommand::List { file: f } => {
            let path = file(f)?;
            let ids = key_file::ids(&read(&path)?, &path.display().to_string())?;
            let pool = management_pool(g).await?;
            store::require_current(&pool).await?;
            let counts = store::urls_by_key(&pool).await?;
            let count = |id: Option<&str>| {
                counts
                    .iter()
                    .find(|(k, _)| k.as_deref() == id)
                    .map_or(0, |(_, n)| *n)
            };
            for (n, id) in ids.iter().enumerate() {
                let role = if n == 0 { "encrypts" } else { "decrypts" };
                println!("key {id}: {role}; {} stored URL(s)", count(Some(id)));
            }
            for (k, n) in counts
                .iter()
                .filter(|(k, _)| k.as_ref().is_none_or(|k| !ids.contains(k)))
            {
                match k {
                    None => println!("plain text: {n} stored URL(s)"),
                    Some(k) => println!("key {k}: NOT IN THIS FILE; {n} stored URL(s)"),
                }
            }
            for p in processes::live(&pool).await? {
                println!("{}: holds {}", p.label(), p.key_ids.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> Result<String> {
    let text = crate::secret::read_secret_file(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    // Parsed first: an edit never starts from a file cpi could not read.
    Keyring::parse(&text, &path.display().to_string())?;
    Ok(text)
}

/// Replaces the key file atomically (a new file of mode 0600 renamed over
/// it): a crash leaves the old file or the new one, never half of one.
fn write(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("cpi-new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
