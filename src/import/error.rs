//! Why an import could not reach a verdict on its file, and the one policy
//! that says what to do about it ([`error_policy`]).
//!
//! A file refused for its content is not an [`ImportError`]: it is a
//! [`JobOutcome`](super::ready::JobOutcome) with status failed, and the file goes
//! to `failed/` with its report. An `ImportError` means the job could not
//! judge the file; [`error_policy`] sorts every variant into one of three
//! [`Action`]s:
//!
//! - [`Action::Retry`]: something outside the file and its configuration
//!   failed for now (target unreachable, connection lost, lock or
//!   serialization conflict, management database down). The file stays in
//!   the inbox and is tried again after [`retry::backoff`].
//! - [`Action::Fail`]: the file itself cannot be used (unreadable) or its
//!   job cannot run any more; the file is set aside like a rejected one.
//! - [`Action::WaitForFix`]: the configuration is wrong (project or
//!   connection missing, invalid config, no `file_pattern` matching,
//!   legacy `connection.env_var`, invalid target URL).
//!
//! **What a configuration error does to a waiting file:** nothing. The file
//! stays in the inbox untouched (not moved, not renamed, no ledger row);
//! its job row records the error as `failed`, so `cpi jobs` and the API
//! show why it waits. The file is tried again as soon as a reconcile writes
//! projects or connections (the usual fix: a manifest change), and
//! otherwise on the slow [`config_recheck`] backoff: a fix applied through
//! the API or SQL is still picked up. A configuration error never
//! moves a file to `failed/`: the file is not at fault, and moving it would
//! make the operator move it back after the fix.
//!
//! Errors keep their cause as `#[source]`; their `Display` goes through
//! [`secret::scrub_known`] wherever the cause can contain a target URL
//! (every URL cpi connects to is registered first), so printing an error
//! never prints a password.

use std::time::Duration;

use uuid::Uuid;

use crate::retry;
use crate::secret;
use crate::store::jobs::JobError;
use crate::store::StoreError;

/// A job that could not reach a verdict on its file (see the module doc).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The job row is gone.
    #[error("job {0} does not exist")]
    JobNotFound(Uuid),
    /// The job's project is not in the management database.
    #[error("project {0:?} does not exist in the management database")]
    ProjectNotFound(String),
    /// The project has no connection (DESIGN §1: no environment fallback).
    #[error("project {0:?} has no connection: set `spec.connection` in its manifest (target URLs are never read from environment variables)")]
    NoConnection(String),
    /// The project names a connection row that does not exist.
    #[error("project {project:?}: its connection {id} does not exist in the management database")]
    ConnectionNotFound {
        /// The project.
        project: String,
        /// The missing connection's id.
        id: Uuid,
    },
    /// The project's config still has the legacy `connection.env_var`.
    #[error("project {project:?}: its config still has `connection.env_var`, which is no longer read: run `cpi convert-legacy` to turn it into a Connection manifest")]
    LegacyEnvVar {
        /// The project.
        project: String,
    },
    /// The stored config does not parse as a project config.
    #[error("project {project:?}: invalid config: {source}")]
    InvalidConfig {
        /// The project.
        project: String,
        /// Why it does not parse (shared with the row it was read from).
        #[source]
        source: std::sync::Arc<serde_json::Error>,
    },
    /// No `file_pattern` of the project matches the file.
    #[error("project {project:?}: no file_pattern of the project matches {relative:?}")]
    NoPattern {
        /// The project.
        project: String,
        /// The file's path relative to the inbox.
        relative: String,
    },
    /// The management database answered something other than a query
    /// error (not migrated, say).
    #[error("project {project:?}: {source}")]
    Store {
        /// The project.
        project: String,
        /// What the store said.
        #[source]
        source: StoreError,
    },
    /// The file or object is not there (any more): moved by another
    /// job, or removed.
    #[error("cannot read {path}: {source}")]
    FileGone {
        /// The file's path.
        path: String,
        /// The I/O error (not found).
        #[source]
        source: std::io::Error,
    },
    /// The file is there but cannot be read (permissions, a folder).
    #[error("cannot read {path}: {source}")]
    FileUnreadable {
        /// The file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file changed while it was imported (a producer still writing
    /// it): the import rolled back and is tried again later.
    #[error("{message}")]
    FileChanged {
        /// The file's path.
        path: String,
        /// How it changed, naming the file.
        message: String,
    },
    /// An object could not be read from its store (store down, network,
    /// credentials refused), before or during the load: the file was not
    /// judged, the import rolled back, and it is tried again.
    #[error("{source}")]
    ObjectUnavailable {
        /// What the store (or the stream from it) said.
        #[source]
        source: crate::object_storage::StorageError,
    },
    /// The connection's URL does not parse (the message is already scrubbed).
    #[error("cannot reach the target database of project {project:?}: {message}")]
    InvalidTargetUrl {
        /// The project.
        project: String,
        /// Why, without the URL.
        message: String,
    },
    /// Connecting to the target failed (refused, authentication, DNS).
    #[error("cannot reach the target database of project {project:?}: {}", secret::scrub_known(&crate::tls::explain(source)))]
    TargetUnreachable {
        /// The project.
        project: String,
        /// The driver's error (may name the URL: printed scrubbed).
        #[source]
        source: sqlx::Error,
    },
    /// Connecting to the target took longer than allowed.
    #[error("cannot reach the target database of project {project:?}: timed out after {} s", after.as_secs())]
    ConnectTimeout {
        /// The project.
        project: String,
        /// The time allowed.
        after: Duration,
    },
    /// The target failed mid-import for a reason worth a retry (connection
    /// lost, serialization failure, deadlock, lock timeout).
    #[error("target database of project {project:?}: {}", secret::scrub_known(&source.to_string()))]
    TargetTransient {
        /// The project.
        project: String,
        /// The driver's error (printed scrubbed).
        #[source]
        source: sqlx::Error,
    },
    /// The management database failed (reading or writing the job row).
    #[error(transparent)]
    Management(#[from] JobError),
}

impl ImportError {
    /// Whether trying the same file again later may succeed without anyone
    /// changing it or the configuration: [`error_policy`] says
    /// [`Action::Retry`].
    pub fn retryable(&self) -> bool {
        matches!(error_policy(self, 0), Action::Retry(_))
    }
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Management(JobError::Db(e))
    }
}

/// What to do with a file whose import ended in an [`ImportError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transient (target unreachable, connection lost, lock timeout): leave
    /// the file in the inbox and try again after this delay.
    Retry(Duration),
    /// The file is bad (or its job cannot run): reject it, move it to
    /// `failed/` with its report.
    Fail,
    /// Configuration error: the file stays in the inbox untouched and is
    /// tried again when the configuration changes, or after
    /// [`config_recheck`].
    WaitForFix,
    /// The file is gone: nothing to move. The daemon ends the job as a
    /// duplicate of the job that moved it, or as vanished; `cpi import`
    /// fails it.
    Vanished,
}

/// First retry delay of a transient failure.
pub const RETRY_BASE: Duration = Duration::from_secs(5);
/// Longest delay between retries of a transient failure.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// First re-check of a file waiting for a configuration fix.
pub const RECHECK_BASE: Duration = Duration::from_secs(60);
/// Longest delay between re-checks of a file waiting for a fix.
pub const RECHECK_MAX: Duration = Duration::from_secs(3600);

/// The slow backoff of a file waiting for a configuration fix that nobody
/// announced (attempt 0 for the first re-check).
pub fn config_recheck(attempt: u32) -> Duration {
    retry::backoff(attempt, RECHECK_BASE, RECHECK_MAX)
}

/// The one error policy of imports, for the daemon and `cpi import` alike:
/// `attempt` is how many times the file already failed this way (0 the
/// first time). Pure.
pub fn error_policy(err: &ImportError, attempt: u32) -> Action {
    use ImportError::*;
    match err {
        TargetUnreachable { .. }
        | ConnectTimeout { .. }
        | TargetTransient { .. }
        | ObjectUnavailable { .. }
        | FileChanged { .. }
        | Management(JobError::Db(_))
        | Store {
            source:
                StoreError::Db(_)
                | StoreError::Connect(_)
                | StoreError::ConnectTimeout(_)
                | StoreError::Refused { .. },
            ..
        } => Action::Retry(retry::backoff(attempt, RETRY_BASE, RETRY_MAX)),
        ProjectNotFound(_)
        | NoConnection(_)
        | ConnectionNotFound { .. }
        | LegacyEnvVar { .. }
        | InvalidConfig { .. }
        | NoPattern { .. }
        | InvalidTargetUrl { .. }
        | Store { .. } => Action::WaitForFix,
        FileGone { .. } => Action::Vanished,
        FileUnreadable { .. } | JobNotFound(_) | Management(_) => Action::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_json() -> std::sync::Arc<serde_json::Error> {
        std::sync::Arc::new(serde_json::from_str::<u8>("x").unwrap_err())
    }

    #[test]
    fn policy_decision_table() {
        let p = || "p".to_string();
        let id = Uuid::nil();
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let retry = |a| Action::Retry(retry::backoff(a, RETRY_BASE, RETRY_MAX));
        let rows: Vec<(ImportError, u32, Action)> = vec![
            // transient: retry with a growing delay
            (
                ImportError::TargetUnreachable {
                    project: p(),
                    source: sqlx::Error::PoolTimedOut,
                },
                0,
                retry(0),
            ),
            (
                ImportError::TargetUnreachable {
                    project: p(),
                    source: sqlx::Error::PoolTimedOut,
                },
                3,
                retry(3),
            ),
            (
                ImportError::ConnectTimeout {
                    project: p(),
                    after: Duration::from_secs(30),
                },
                1,
                retry(1),
            ),
            (
                ImportError::TargetTransient {
                    project: p(),
                    source: sqlx::Error::WorkerCrashed,
                },
                0,
                retry(0),
            ),
            (
                ImportError::TargetTransient {
                    project: p(),
                    source: sqlx::Error::WorkerCrashed,
                },
                50,
                Action::Retry(RETRY_MAX),
            ),
            (
                ImportError::Management(JobError::Db(sqlx::Error::PoolClosed)),
                2,
                retry(2),
            ),
            (
                ImportError::Store {
                    project: p(),
                    source: StoreError::Db(sqlx::Error::PoolClosed),
                },
                0,
                retry(0),
            ),
            (
                ImportError::Store {
                    project: p(),
                    source: StoreError::ConnectTimeout(Duration::from_secs(10)),
                },
                0,
                retry(0),
            ),
            // configuration: wait for a fix, whatever the attempt
            (ImportError::ProjectNotFound(p()), 0, Action::WaitForFix),
            (ImportError::ProjectNotFound(p()), 9, Action::WaitForFix),
            (ImportError::NoConnection(p()), 0, Action::WaitForFix),
            (
                ImportError::ConnectionNotFound { project: p(), id },
                0,
                Action::WaitForFix,
            ),
            (
                ImportError::LegacyEnvVar { project: p() },
                0,
                Action::WaitForFix,
            ),
            (
                ImportError::InvalidConfig {
                    project: p(),
                    source: bad_json(),
                },
                0,
                Action::WaitForFix,
            ),
            (
                ImportError::NoPattern {
                    project: p(),
                    relative: "a.csv".into(),
                },
                0,
                Action::WaitForFix,
            ),
            (
                ImportError::InvalidTargetUrl {
                    project: p(),
                    message: "bad".into(),
                },
                0,
                Action::WaitForFix,
            ),
            (
                ImportError::Store {
                    project: p(),
                    source: StoreError::NotMigrated,
                },
                0,
                Action::WaitForFix,
            ),
            // the file or its job: fail
            (
                ImportError::FileUnreadable {
                    path: "a.csv".into(),
                    source: io(),
                },
                0,
                Action::Fail,
            ),
            (
                ImportError::FileGone {
                    path: "a.csv".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                },
                0,
                Action::Vanished,
            ),
            (ImportError::JobNotFound(id), 0, Action::Fail),
            (
                ImportError::Management(JobError::NotFound(id)),
                0,
                Action::Fail,
            ),
            (
                ImportError::Management(JobError::Finished {
                    id,
                    status: crate::store::jobs::JobStatus::Succeeded,
                }),
                0,
                Action::Fail,
            ),
        ];
        for (err, attempt, want) in rows {
            assert_eq!(
                error_policy(&err, attempt),
                want,
                "{err:?} attempt {attempt}"
            );
            assert_eq!(err.retryable(), matches!(want, Action::Retry(_)), "{err:?}");
        }
    }

    #[test]
    fn recheck_is_slow_and_capped() {
        assert_eq!(config_recheck(0), RECHECK_BASE);
        assert_eq!(config_recheck(100), RECHECK_MAX);
    }

    #[test]
    fn display_scrubs_registered_secrets() {
        let url = secret::Secret::new("postgres://u:s3cr3t-pw@h/db");
        secret::register(&url);
        let e = ImportError::TargetTransient {
            project: "p".into(),
            source: sqlx::Error::Protocol("lost postgres://u:s3cr3t-pw@h/db".into()),
        };
        assert!(!e.to_string().contains("s3cr3t-pw"), "{e}");
    }
}
