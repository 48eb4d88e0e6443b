//! `cpi_processes`: the running `cpi run` and `cpi serve` processes and the
//! ids of the keys each one holds. A key rotation is safe only when every
//! running process can decrypt with the key that is about to encrypt, so
//! `cpi keys promote` and `cpi rekey` read this table before they act
//! (docs/operations.md, "Rotating the encryption key").
//!
//! Each process writes its row at start, refreshes it every [`HEARTBEAT`]
//! and deletes it when it stops. A row older than [`LIVE_WITHIN`] is a
//! process that died without deleting it: it is ignored, and a process that
//! comes back writes a new one.

use std::time::Duration;

use sqlx::PgExecutor;
use uuid::Uuid;

use super::error::Result;

/// How often a process refreshes its row.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// A row seen within this long is a running process.
pub const LIVE_WITHIN: Duration = Duration::from_secs(30);

/// What a process says of itself.
#[derive(Debug, Clone)]
pub struct Me {
    /// The row's id, new per process start.
    pub id: Uuid,
    /// `run` or `serve`.
    pub kind: &'static str,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// `cpi --version`'s text.
    pub version: &'static str,
    /// The key ids of its key file, the encrypting one first.
    pub key_ids: Vec<String>,
}

impl Me {
    /// This process, as `kind`, with the ids of the installed key ring.
    pub fn this(kind: &'static str) -> Me {
        Me {
            id: Uuid::new_v4(),
            kind,
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into()),
            pid: std::process::id(),
            version: concat!(env!("CARGO_PKG_VERSION"), " (", env!("CPI_GIT_COMMIT"), ")"),
            key_ids: crate::crypto::keyring().ids(),
        }
    }
}

/// A running process, as another one sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Process {
    /// `run` or `serve`.
    pub kind: String,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: i32,
    /// Its version text.
    pub version: String,
    /// Its key ids, the encrypting one first.
    pub key_ids: Vec<String>,
}

impl Process {
    /// How the process is named in messages: `cpi run on host (pid 7)`.
    pub fn label(&self) -> String {
        format!("cpi {} on {} (pid {})", self.kind, self.host, self.pid)
    }
}

/// Writes or refreshes the process's row.
pub async fn beat(db: impl PgExecutor<'_>, me: &Me) -> Result<()> {
    sqlx::query(
        "INSERT INTO cpi_processes (id, kind, host, pid, version, key_ids)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET key_ids = EXCLUDED.key_ids, seen_at = clock_timestamp()",
    )
    .bind(me.id)
    .bind(me.kind)
    .bind(&me.host)
    .bind(me.pid as i32)
    .bind(me.version)
    .bind(&me.key_ids)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the process's row (at a clean stop) and the rows of processes
/// long dead, so the table stays small.
pub async fn leave(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    sqlx::query(
        "DELETE FROM cpi_processes
          WHERE id = $1 OR seen_at < clock_timestamp() - interval '1 day'",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// The running processes, oldest first.
pub async fn live(db: impl PgExecutor<'_>) -> Result<Vec<Process>> {
    Ok(sqlx::query_as(
        "SELECT kind, host, pid, version, key_ids FROM cpi_processes
          WHERE seen_at >= clock_timestamp() - make_interval(secs => $1)
          ORDER BY started_at, host, pid",
    )
    .bind(LIVE_WITHIN.as_secs_f64())
    .fetch_all(db)
    .await?)
}

/// The processes among `live` that could not decrypt a value sealed with
/// `key_id` (their key file does not hold it).
pub fn lacking<'a>(live: &'a [Process], key_id: &str) -> Vec<&'a Process> {
    live.iter()
        .filter(|p| !p.key_ids.iter().any(|k| k == key_id))
        .collect()
}

/// The processes among `live` that encrypt with `key_id` (it is first in
/// their key file).
pub fn encrypting_with<'a>(live: &'a [Process], key_id: &str) -> Vec<&'a Process> {
    live.iter()
        .filter(|p| p.key_ids.first().is_some_and(|k| k == key_id))
        .collect()
}

/// How often a process looks at its key file (one `stat`).
pub const KEY_FILE_POLL: Duration = Duration::from_secs(1);

/// Keeps the process's row fresh until `stop` is set, then deletes it. A
/// failed refresh is logged and tried again at the next beat: the row
/// matters to key rotations, not to imports.
///
/// It also keeps the process's key ring in step with its key file
/// ([`crate::crypto::Reloader`], every [`KEY_FILE_POLL`]): new keys are
/// installed and the row says so at once, so a deployed key file needs no
/// restart before `cpi keys promote`; a file that cannot be used is logged
/// as an error and the process keeps the keys it holds.
pub async fn keep(pool: sqlx::PgPool, mut me: Me, mut stop: tokio::sync::watch::Receiver<bool>) {
    use crate::crypto::{Reload, Reloader};
    let mut keys = Reloader::for_installed();
    let mut next_beat = tokio::time::Instant::now();
    loop {
        match keys.as_mut().map(Reloader::check) {
            Some(Reload::Reloaded(ids)) => {
                tracing::info!(key_ids = ?ids, "re-read the encryption key file: these keys are in use now");
                me.key_ids = ids;
                next_beat = tokio::time::Instant::now();
            }
            Some(Reload::Refused(e)) => {
                tracing::error!(error = %e, key_ids = ?me.key_ids, "the encryption key file changed but cannot be used: keeping the keys this process holds");
            }
            Some(Reload::Unchanged) | None => {}
        }
        if tokio::time::Instant::now() >= next_beat {
            if let Err(e) = beat(&pool, &me).await {
                tracing::warn!(error = %e, "cannot refresh this process's row in cpi_processes");
            }
            next_beat = tokio::time::Instant::now() + HEARTBEAT;
        }
        let wait = if keys.is_some() {
            KEY_FILE_POLL
        } else {
            next_beat.saturating_duration_since(tokio::time::Instant::now())
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if let Err(e) = leave(&pool, me.id).await {
        tracing::warn!(error = %e, "cannot delete this process's row in cpi_processes");
    }
}

/// A `cpi run` on host `h` holding `keys`, for unit tests.
#[cfg(test)]
pub(crate) fn test_process(pid: i32, keys: &[&str]) -> Process {
    Process {
        kind: "run".into(),
        host: "h".into(),
        pid,
        version: "v".into(),
        key_ids: keys.iter().map(|k| k.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::test_process as p;
    use super::*;

    #[test]
    fn lacking_names_the_processes_without_the_key() {
        let live = [p(1, &["old", "new"]), p(2, &["old"]), p(3, &["new"])];
        let l: Vec<i32> = lacking(&live, "new").iter().map(|p| p.pid).collect();
        assert_eq!(l, vec![2]);
        assert!(lacking(&live, "nothing").len() == 3);
    }

    #[test]
    fn encrypting_with_is_the_first_key_only() {
        let live = [p(1, &["old", "new"]), p(2, &["new", "old"])];
        let e: Vec<i32> = encrypting_with(&live, "old")
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(e, vec![1]);
    }
}
