//! What every command shares: the global options turned into a management
//! database URL and pool, the manifests as loaded for a command, and text
//! tables.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::args::{Global, Output};
use crate::manifest::{self, Loaded, Secrets};
use crate::secret::{self, Secret};
use crate::store;

/// The management database URL: `--database-url`, `CPI_DATABASE_URL` or
/// `--database-url-file`. `DATABASE_URL` is never read.
pub fn management_url(g: &Global) -> Result<Secret> {
    let url = match (&g.database_url, &g.database_url_file) {
        (Some(u), _) => Secret::new(u.trim()),
        (None, Some(f)) => {
            let text = secret::read_secret_file(f)
                .with_context(|| format!("cannot read --database-url-file {}", f.display()))?;
            Secret::new(text.trim())
        }
        (None, None) => bail!(
            "no management database: give --database-url, --database-url-file or CPI_DATABASE_URL"
        ),
    };
    secret::register(&url);
    Ok(url)
}

/// A pool on the management database (one attempt; the daemon waits instead).
pub async fn management_pool(g: &Global) -> Result<sqlx::PgPool> {
    let url = management_url(g)?;
    Ok(store::connect(&url).await?)
}

/// Loads the manifests, registering every secret for scrubbing.
pub fn load_manifests(g: &Global, mode: Secrets) -> Result<Loaded> {
    load_manifests_confined(g, &[], mode)
}

/// [`load_manifests`] with every inbox confined to `roots` (none: anywhere).
pub fn load_manifests_confined(
    g: &Global,
    roots: &[std::path::PathBuf],
    mode: Secrets,
) -> Result<Loaded> {
    let loaded = manifest::load_confined(&g.manifests, g.secrets_dir.as_deref(), mode, roots)?;
    Ok(registered(loaded))
}

/// Loads the manifests of `dir`, registering every secret for scrubbing
/// and printing the loader's warnings.
pub fn load_manifests_from(
    dir: &Path,
    secrets_dir: Option<&Path>,
    mode: Secrets,
) -> Result<Loaded> {
    Ok(registered(manifest::load(dir, secrets_dir, mode)?))
}

/// Registers every secret of `loaded` for scrubbing and prints its warnings.
fn registered(loaded: Loaded) -> Loaded {
    for s in loaded.secrets() {
        secret::register(s);
    }
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    loaded
}

/// Rows as aligned text columns (the first row is the header).
pub fn table(rows: Vec<Vec<String>>) -> String {
    let mut widths = vec![0; rows.first().map_or(0, Vec::len)];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Prints `rows` as JSON, or as a table of `columns` with one `line` per row.
pub fn print_list<T: serde::Serialize>(
    rows: &[T],
    output: Output,
    columns: &[&str],
    line: impl Fn(&T) -> Vec<String>,
) -> Result<()> {
    match output {
        Output::Json | Output::Yaml => print_value(&rows, output)?,
        Output::Text => {
            let mut t = vec![columns.iter().map(|c| c.to_string()).collect()];
            t.extend(rows.iter().map(line));
            print!("{}", table(t));
        }
    }
    Ok(())
}

/// Prints one value as JSON, or as YAML (for people too).
pub fn print_one<T: serde::Serialize>(value: &T, output: Output) -> Result<()> {
    print_value(value, output)
}

/// Prints a command's structured result: pretty JSON for `-o json`, YAML
/// otherwise.
pub fn print_value<T: serde::Serialize + ?Sized>(value: &T, output: Output) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Text | Output::Yaml => print!("{}", serde_yaml::to_string(value)?),
    }
    Ok(())
}

/// A table cell for an optional value: `-` when there is none.
pub fn dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// Ctrl-C or SIGTERM (what a container runtime sends), by name. One
/// handler for every command that stops on a signal: `run`, `serve`,
/// `import`. The handlers are installed when this is called (not when the
/// future is first polled), so a signal that comes early is not lost.
pub fn signal() -> impl std::future::Future<Output = &'static str> + Send + 'static {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn recv(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            _ = recv(interrupt) => "SIGINT",
            _ = recv(terminate) => "SIGTERM",
        }
    }
}

/// Who acts from the command line: `cli:<user>` (the login name, as the
/// environment says it).
pub(super) fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}
