//! The management database: connecting, migrating, and every statement on
//! the `cpi_*` tables, one module per table family. Functions take a
//! connection (`&mut PgConnection`) or an executor, so they run on a pool or
//! inside the apply transaction alike.
//!
//! The families: [`connections`](ConnectionRow) and [`projects`](ProjectRow)
//! (the managed objects, and what apply writes of them), [`jobs`] (one row
//! per file seen), [`queue`] (enqueue, claim, lease, retry) and [`batch`] (a batch of
//! one table's jobs claimed, renewed and finished in one statement each), reconcile
//! runs ([`ReconcileRun`]), [`events`], [`freshness`], statistics ([`DatabaseStats`]) and retention.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgExecutor, PgPool};

use crate::secret::{self, Secret};

pub mod audit;
pub mod batch;
mod connections;
pub mod deliveries;
mod error;
pub mod events;
pub mod freshness;
mod history;
pub mod jobs;
mod lookup;
mod objects;
pub mod pauses;
pub mod processes;
mod projects;
pub mod queue;
mod runs;
pub mod schema_version;
pub mod scopes;
pub mod sessions;
pub mod simple;
mod stats;

pub use connections::{
    connection_by_id, connection_by_name, delete_unmanaged_connection, has_sealed_urls,
    insert_connection, list_connections, lock_connection, reseal_connections,
    update_unmanaged_connection, urls_by_key, ConnectionRow, Reseal, SecretText,
};
pub use error::{Result, StoreError};
pub use history::delete_finished_jobs;
pub use objects::{
    delete_objects, load_observed, upsert_connections, upsert_projects, ConnectionWrite, Managed,
    ProjectWrite,
};
pub use projects::{
    delete_unmanaged_project, insert_project, list_projects, lock_project, parse_config,
    project_by_id, project_by_name, project_names, update_unmanaged_project, ParsedConfig,
    ProjectRow,
};
pub use runs::{
    delete_old_runs, extend_noop_run, extend_repeated_run, insert_run, lock_reconcile,
    rewrite_run_diffs, run_by_id, run_page, NewRun, ReconcileRun, ReconcileStatus,
    ReconcileTrigger, RunFilter, RunPage,
};
pub use stats::{
    database_stats, hourly_imports, queue_now, DatabaseStats, DurationTotals, HourBucket, JobCount,
    ObjectCount, QueueNow, RunCount,
};

/// Parses a URL into connect options with libpq's TLS meanings; the error
/// never repeats the URL.
pub use crate::tls::connect_options;

pub use schema_version::MIGRATOR;

/// A lazy pool on the management database, after one direct connection
/// that reports why connecting fails (refused, auth, DNS).
pub async fn connect(url: &Secret) -> Result<PgPool> {
    let opts = connect_options(url).map_err(StoreError::Connect)?;
    // One direct attempt first: a pool retries until its timeout and then
    // reports only "timed out", hiding the reason (refused, auth, DNS).
    let (first, opts) = tokio::time::timeout(Duration::from_secs(10), crate::tls::connect(&opts))
        .await
        .map_err(|_| StoreError::ConnectTimeout(Duration::from_secs(10)))?
        .map_err(|source| StoreError::Refused {
            message: secret::scrub(&crate::tls::explain(&source), &[url]),
            source,
        })?;
    let _ = first.close().await;
    // `opts` is the TLS mode that worked (`allow`/`prefer` settle on one).
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(15))
        .connect_lazy_with(opts))
}

/// Fails with a clear message when the management tables do not exist yet
/// (for commands that only read, and so do not migrate).
pub async fn require_migrated(pool: &PgPool) -> Result<()> {
    schema_version::check(pool).await?;
    if is_migrated(pool).await? {
        Ok(())
    } else {
        Err(StoreError::NotMigrated)
    }
}

/// For commands that need this binary's whole schema but never create it
/// (`cpi projects`, whose pauses came with migration 0086): an empty
/// database is [`StoreError::NotMigrated`], an older one
/// [`StoreError::SchemaOlder`] (naming `cpi migrate`), a newer one
/// [`StoreError::SchemaNewer`].
pub async fn require_current(pool: &PgPool) -> Result<()> {
    if is_empty(schema_version::check(pool).await?)? {
        return Err(StoreError::NotMigrated);
    }
    Ok(())
}

/// Whether a schema this binary may use is still empty: `false` when it is
/// at this binary's schema or a compatible newer one; older or newer ones
/// are their errors.
fn is_empty(state: schema_version::SchemaState) -> Result<bool> {
    use schema_version::SchemaState::*;
    match state {
        Empty => Ok(true),
        Known { pending: 0, .. } | Compatible { .. } => Ok(false),
        Known { at, pending } => Err(StoreError::SchemaOlder { at, pending }),
        Newer { at, known } => Err(StoreError::SchemaNewer { at, known }),
    }
}

/// Applies the pending migrations. A database at a schema newer than this
/// binary's stops it before anything runs ([`StoreError::SchemaNewer`]).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    if let schema_version::SchemaState::Compatible { at, known } =
        schema_version::check(pool).await?
    {
        // A rolling upgrade: a newer cpi migrated, additively; this one
        // runs beside it and migrates nothing.
        tracing::warn!(
            schema = at,
            this_cpi = known,
            "the management database is at a newer schema that this cpi can run against (additive migrations): upgrade cpi when you can"
        );
        return Ok(());
    }
    // Several replicas may start at once; sqlx's migrator takes its own
    // advisory lock, so they apply the migrations one after the other.
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// For the commands that write but are not the daemon (`apply`, `import`,
/// `jobs`, `prune`): an empty database gets the schema (a first `cpi apply`
/// on a fresh database, as in the quickstart, works); a database at an older
/// schema is refused with [`StoreError::SchemaOlder`], naming `cpi migrate`,
/// instead of being upgraded as a side effect; a newer one with
/// [`StoreError::SchemaNewer`].
pub async fn migrate_if_empty(pool: &PgPool) -> Result<()> {
    if is_empty(schema_version::check(pool).await?)? {
        return migrate(pool).await;
    }
    Ok(())
}

/// Whether the management tables exist (commands that only read, like
/// `diff`, work on a database cpi never migrated: everything is a create).
pub async fn is_migrated(db: impl PgExecutor<'_>) -> Result<bool> {
    let (exists,): (bool,) = sqlx::query_as(
        "SELECT to_regclass('cpi_projects') IS NOT NULL AND to_regclass('cpi_connections') IS NOT NULL
           AND EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'cpi_projects' AND column_name = 'managed_by')",
    )
    .fetch_one(db)
    .await?;
    Ok(exists)
}

/// Whether the management database answers a `SELECT 1` (`/readyz`).
pub async fn ping(db: impl PgExecutor<'_>) -> Result<()> {
    sqlx::query("SELECT 1").execute(db).await?;
    Ok(())
}

/// Why [`test_connection`] failed; the text never contains the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionTestError {
    /// The URL does not give connect options (the message says why).
    #[error("{0}")]
    InvalidUrl(#[source] crate::tls::TlsError),
    /// Connecting or `SELECT 1` failed.
    #[error("{message}")]
    Failed {
        /// The driver's error explained, the URL's secrets masked.
        message: String,
        /// The driver's error (may contain the URL: never print it).
        #[source]
        source: sqlx::Error,
    },
    /// No answer within the timeout.
    #[error("timed out after {} s", .0.as_secs())]
    TimedOut(Duration),
}

/// Connects to a target database and runs `SELECT 1`, within `timeout`;
/// the session's TLS version (`None`: not encrypted).
pub async fn test_connection(
    url: &Secret,
    timeout: Duration,
) -> Result<Option<String>, ConnectionTestError> {
    let opts = connect_options(url).map_err(ConnectionTestError::InvalidUrl)?;
    let attempt = async {
        let (mut conn, _) = crate::tls::connect(&opts).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        let tls = crate::tls::session_tls(&mut conn).await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(tls)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(source)) => Err(ConnectionTestError::Failed {
            message: secret::scrub(&crate::tls::explain(&source), &[url]),
            source,
        }),
        Err(_) => Err(ConnectionTestError::TimedOut(timeout)),
    }
}
