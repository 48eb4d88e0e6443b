//! Why the embedded PostgreSQL could not start, and the one constructor
//! every step uses for its failures.

use std::path::Path;

use super::names::{BINARIES, FALLBACK_ROOT, SYSTEM_USER};

/// Why the embedded PostgreSQL could not start; each says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No `initdb`/`pg_ctl`/`postgres` on PATH or under the fallback root.
    #[error("no management database given, and no PostgreSQL server binaries ({}) were found on PATH or under {FALLBACK_ROOT}/*/bin to run the embedded one. Either install PostgreSQL (e.g. `apt-get install postgresql`), or give --database-url (or --database-url-file, CPI_DATABASE_URL) for an existing server", BINARIES.join(", "))]
    NoBinaries,
    /// Running as root without the system user PostgreSQL must run as.
    #[error("cpi runs as root and PostgreSQL refuses to: the embedded server runs as the `{SYSTEM_USER}` system user, which does not exist. Create it (`useradd --system {SYSTEM_USER}`), run cpi as an unprivileged user, or give --database-url")]
    NoSystemUser,
    /// The system user cannot reach the state dir (path, reason).
    #[error("the `{SYSTEM_USER}` user that runs the embedded server (cpi runs as root) cannot reach {0} ({1}); choose a --state-dir it can reach (e.g. under /var/lib or /tmp), or give --database-url")]
    Unreachable(String, String),
    /// A step (initdb, start, create database) failed.
    #[error("embedded PostgreSQL in {dir}: {message}")]
    Failed {
        /// The instance's data folder.
        dir: String,
        /// What failed, with the tool's own message.
        message: String,
    },
}

pub(super) fn failed(dir: &Path, message: impl Into<String>) -> EmbeddedError {
    EmbeddedError::Failed {
        dir: dir.display().to_string(),
        message: message.into(),
    }
}
