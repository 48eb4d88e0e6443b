//! The management database: connecting, migrating, and reading the `cpi_*`
//! tables. Functions take a connection (`&mut PgConnection`) or an
//! executor, so they run on a pool or inside the apply transaction alike.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgExecutor, PgPool, Row as _};
use uuid::Uuid;

use crate::config::ProjectConfig;
use crate::manifest::UrlState;
use crate::plan::{ConnState, Observed, ProjState, Row};
use crate::secret::{self, Secret};

/// The outcome of one reconcile, as `cpi_reconcile_runs.status` (TEXT)
/// spells it; bound and read as this enum.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ReconcileStatus {
    /// Applied (or nothing to do).
    Succeeded,
    /// Could not load, plan or write: nothing changed.
    Failed,
    /// Refused by a guard (conflicts, delete limit): nothing changed.
    Refused,
}

impl ReconcileStatus {
    /// Every status, in the order the metrics list them.
    pub const ALL: [ReconcileStatus; 3] = [
        ReconcileStatus::Succeeded,
        ReconcileStatus::Failed,
        ReconcileStatus::Refused,
    ];

    /// The status as the column spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileStatus::Succeeded => "succeeded",
            ReconcileStatus::Failed => "failed",
            ReconcileStatus::Refused => "refused",
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

/// The migrations under `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A management database operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not parse, or connecting timed out (never the URL).
    #[error("cannot connect to the management database: {0}")]
    Connect(String),
    /// Connecting failed: `message` is the driver's error with the URL's
    /// secrets masked, what is printed; `source` is kept for inspection.
    #[error("cannot connect to the management database: {message}")]
    Refused {
        /// The error as printed, scrubbed.
        message: String,
        /// The driver's error (may contain the URL: never print it).
        #[source]
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("management database: {0}")]
    Db(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migrating the management database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Commands that only read need `cpi migrate` first.
    #[error(
        "the management database has no cpi tables yet: run `cpi migrate` (or `cpi apply`) first"
    )]
    NotMigrated,
    /// A stored URL does not decrypt with the key file given (or none was).
    #[error("connection {name:?}: {source}")]
    Sealed {
        /// The connection.
        name: String,
        /// Why.
        #[source]
        source: crate::crypto::CryptoError,
    },
}

/// Parses a URL into connect options with libpq's TLS meanings
/// ([`crate::tls`]); the error never repeats the URL.
pub fn connect_options(url: &Secret) -> Result<PgConnectOptions, String> {
    crate::tls::connect_options(url).map_err(|e| e.to_string())
}

/// A lazy pool on the management database, after one direct connection
/// that reports why connecting fails (refused, auth, DNS).
pub async fn connect(url: &Secret) -> Result<PgPool, StoreError> {
    let opts = connect_options(url).map_err(StoreError::Connect)?;
    // One direct attempt first: a pool retries until its timeout and then
    // reports only "timed out", hiding the reason (refused, auth, DNS).
    let (first, opts) = tokio::time::timeout(Duration::from_secs(10), crate::tls::connect(&opts))
        .await
        .map_err(|_| StoreError::Connect("timed out after 10 s".into()))?
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
pub async fn require_migrated(pool: &PgPool) -> Result<(), StoreError> {
    if is_migrated(pool).await? {
        Ok(())
    } else {
        Err(StoreError::NotMigrated)
    }
}

/// Applies the pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    // Several replicas may start at once; sqlx's migrator takes its own
    // advisory lock, so they apply the migrations one after the other.
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Whether the management tables exist (commands that only read, like
/// `diff`, work on a database cpi never migrated: everything is a create).
pub async fn is_migrated(db: impl PgExecutor<'_>) -> Result<bool, StoreError> {
    let (exists,): (bool,) = sqlx::query_as(
        "SELECT to_regclass('cpi_projects') IS NOT NULL AND to_regclass('cpi_connections') IS NOT NULL
           AND EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'cpi_projects' AND column_name = 'managed_by')",
    )
    .fetch_one(db)
    .await?;
    Ok(exists)
}

type ConnRow = (
    Uuid,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);
type ProjRow = (
    Uuid,
    String,
    Option<String>,
    Option<String>,
    serde_json::Value,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Both tables, as the plan sees them.
pub async fn load_observed(conn: &mut PgConnection) -> Result<Observed, StoreError> {
    let conns: Vec<ConnRow> = sqlx::query_as(
        "SELECT id, name, description, database_url, managed_by, source, applied_digest FROM cpi_connections",
    )
    .fetch_all(&mut *conn)
    .await?;
    let projs: Vec<ProjRow> = sqlx::query_as(
        "SELECT p.id, p.name, p.description, c.name, p.config, p.managed_by, p.source, p.applied_digest
           FROM cpi_projects p LEFT JOIN cpi_connections c ON c.id = p.connection_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Observed {
        connections: conns
            .into_iter()
            .map(
                |(id, name, description, url, managed_by, source, digest)| Row {
                    id: Some(id),
                    stored_digest: Some(crate::plan::connection_digest(
                        &name,
                        description.as_deref(),
                        &url,
                    )),
                    state: ConnState {
                        name,
                        description,
                        // Without the key an encrypted URL is unknown: the
                        // other fields still plan (apply refuses to write).
                        url: crate::crypto::open(&url)
                            .map(UrlState::Known)
                            .unwrap_or(UrlState::Unknown),
                        managed_by,
                        source,
                    },
                    applied_digest: digest,
                },
            )
            .collect(),
        projects: projs
            .into_iter()
            .map(
                |(id, name, description, connection, config, managed_by, source, digest)| {
                    let state = ProjState {
                        name,
                        description,
                        connection,
                        config,
                        managed_by,
                        source,
                    };
                    Row {
                        id: Some(id),
                        stored_digest: Some(crate::plan::project_digest(&state)),
                        state,
                        applied_digest: digest,
                    }
                },
            )
            .collect(),
    })
}

/// A connection row; `database_url` is a [`Secret`].
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ConnectionRow {
    /// The row's id.
    pub id: Uuid,
    /// The connection's unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The target URL; never serialized.
    #[serde(skip)]
    #[sqlx(try_from = "String")]
    pub database_url: SecretText,
    /// The reconciler that owns the row, if any.
    pub managed_by: Option<String>,
    /// The manifest file the row came from, if any.
    pub source: Option<String>,
    /// When the row was created.
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the row last changed.
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `Secret` decoded from a text column (public field: the secret itself,
/// as stored: possibly a [`crate::crypto`] envelope).
#[derive(Debug, Clone)]
pub struct SecretText(pub Secret);

impl ConnectionRow {
    /// The URL in plain text, decrypted with the process's key ring: call
    /// it only where the URL is used (an import, a test, a detail view).
    pub fn url(&self) -> Result<Secret, crate::crypto::CryptoError> {
        crate::crypto::open(self.database_url.0.expose())
    }
}

impl From<String> for SecretText {
    fn from(s: String) -> Self {
        SecretText(Secret::new(s))
    }
}

/// A project's config as read from its row: parsed once, here, or why it
/// does not parse (the row is still read: an invalid config must not hide
/// the project from listings, and each caller decides what it means).
pub type ParsedConfig = Result<ProjectConfig, Arc<serde_json::Error>>;

/// Parses a stored `cpi_projects.config`.
pub fn parse_config(raw: &serde_json::Value) -> ParsedConfig {
    serde_json::from_value(raw.clone()).map_err(Arc::new)
}

/// A `cpi_projects` row, with its connection's name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectRow {
    /// The row's id.
    pub id: Uuid,
    /// The project's unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Its connection, if any.
    pub connection_id: Option<Uuid>,
    /// Its connection's name, if any.
    pub connection_name: Option<String>,
    /// The config as stored (JSON), shown as is by the API.
    pub config: serde_json::Value,
    /// [`Self::config`] parsed.
    #[serde(skip)]
    pub parsed: ParsedConfig,
    /// The reconciler that owns the row, if any.
    pub managed_by: Option<String>,
    /// The manifest file the row came from, if any.
    pub source: Option<String>,
    /// When the row was created.
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the row last changed.
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for ProjectRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let config: serde_json::Value = row.try_get("config")?;
        Ok(ProjectRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            connection_id: row.try_get("connection_id")?,
            connection_name: row.try_get("connection_name")?,
            parsed: parse_config(&config),
            config,
            managed_by: row.try_get("managed_by")?,
            source: row.try_get("source")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const CONNECTION_COLUMNS: &str =
    "id, name, description, database_url, managed_by, source, created_at, updated_at";
const PROJECT_COLUMNS: &str = "p.id, p.name, p.description, p.connection_id, c.name AS connection_name, p.config, p.managed_by, p.source, p.created_at, p.updated_at";

/// Every connection, by name.
pub async fn list_connections(db: impl PgExecutor<'_>) -> Result<Vec<ConnectionRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CONNECTION_COLUMNS} FROM cpi_connections ORDER BY name"
    )))
    .fetch_all(db)
    .await?)
}

/// The connection named `name`, if any.
pub async fn connection_by_name(
    db: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<ConnectionRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CONNECTION_COLUMNS} FROM cpi_connections WHERE name = $1"
    )))
    .bind(name)
    .fetch_optional(db)
    .await?)
}

/// The connection with this id, if any.
pub async fn connection_by_id(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<ConnectionRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CONNECTION_COLUMNS} FROM cpi_connections WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Every project, by name.
pub async fn list_projects(db: impl PgExecutor<'_>) -> Result<Vec<ProjectRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PROJECT_COLUMNS} FROM cpi_projects p LEFT JOIN cpi_connections c ON c.id = p.connection_id ORDER BY p.name"
    )))
    .fetch_all(db)
    .await?)
}

/// The project named `name`, if any.
pub async fn project_by_name(
    db: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<ProjectRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PROJECT_COLUMNS} FROM cpi_projects p LEFT JOIN cpi_connections c ON c.id = p.connection_id WHERE p.name = $1"
    )))
    .bind(name)
    .fetch_optional(db)
    .await?)
}

// Writes of the HTTP API. They only ever touch rows no reconciler owns
// (`managed_by IS NULL`): the caller locks the row first (`FOR UPDATE`) so
// that an apply adopting it concurrently is serialized with the write.

/// Inserts an unmanaged connection.
pub async fn insert_connection(
    db: impl PgExecutor<'_>,
    name: &str,
    description: Option<&str>,
    database_url: &Secret,
) -> Result<ConnectionRow, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO cpi_connections (name, description, database_url) VALUES ($1, $2, $3)
         RETURNING {CONNECTION_COLUMNS}"
    )))
    .bind(name)
    .bind(description)
    .bind(crate::crypto::seal(database_url))
    .fetch_one(db)
    .await?)
}

/// The row, locked until the end of the transaction.
pub async fn lock_connection(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<ConnectionRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CONNECTION_COLUMNS} FROM cpi_connections WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Updates a connection no reconciler owns; `None` when there is none.
pub async fn update_unmanaged_connection(
    db: impl PgExecutor<'_>,
    id: Uuid,
    name: &str,
    description: Option<&str>,
    database_url: &Secret,
) -> Result<Option<ConnectionRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE cpi_connections SET name = $2, description = $3, database_url = $4, updated_at = NOW()
          WHERE id = $1 AND managed_by IS NULL
         RETURNING {CONNECTION_COLUMNS}"
    )))
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(crate::crypto::seal(database_url))
    .fetch_optional(db)
    .await?)
}

/// Projects that used the connection keep existing with `connection_id`
/// NULL (`ON DELETE SET NULL`).
pub async fn delete_unmanaged_connection(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM cpi_connections WHERE id = $1 AND managed_by IS NULL")
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The project with this id, if any.
pub async fn project_by_id(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<ProjectRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PROJECT_COLUMNS} FROM cpi_projects p LEFT JOIN cpi_connections c ON c.id = p.connection_id WHERE p.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// The row, locked until the end of the transaction.
pub async fn lock_project(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<ProjectRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PROJECT_COLUMNS} FROM cpi_projects p LEFT JOIN cpi_connections c ON c.id = p.connection_id
          WHERE p.id = $1 FOR UPDATE OF p"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Inserts an unmanaged project; its id.
pub async fn insert_project(
    db: impl PgExecutor<'_>,
    name: &str,
    description: Option<&str>,
    connection_id: Option<Uuid>,
    config: &serde_json::Value,
) -> Result<Uuid, StoreError> {
    let (id,): (Uuid,) = sqlx::query_as(
        "INSERT INTO cpi_projects (name, description, connection_id, config) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(name)
    .bind(description)
    .bind(connection_id)
    .bind(config)
    .fetch_one(db)
    .await?;
    Ok(id)
}

/// Updates a project no reconciler owns; `false` when there is none.
pub async fn update_unmanaged_project(
    db: impl PgExecutor<'_>,
    id: Uuid,
    name: &str,
    description: Option<&str>,
    connection_id: Option<Uuid>,
    config: &serde_json::Value,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE cpi_projects SET name = $2, description = $3, connection_id = $4, config = $5, updated_at = NOW()
          WHERE id = $1 AND managed_by IS NULL",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(connection_id)
    .bind(config)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a project no reconciler owns; `false` when there is none.
pub async fn delete_unmanaged_project(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM cpi_projects WHERE id = $1 AND managed_by IS NULL")
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Connects to a target database and runs `SELECT 1`, within `timeout`;
/// the session's TLS version (`None`: not encrypted). The error text never
/// contains the password.
pub async fn test_connection(url: &Secret, timeout: Duration) -> Result<Option<String>, String> {
    let opts = connect_options(url)?;
    let attempt = async {
        let (mut conn, _) = crate::tls::connect(&opts).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        let tls = crate::tls::session_tls(&mut conn).await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(tls)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(secret::scrub(&crate::tls::explain(&e), &[url])),
        Err(_) => Err(format!("timed out after {} s", timeout.as_secs())),
    }
}

/// Which stored URLs [`reseal_connections`] rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Those in plain text (written before a key existed): the next apply.
    Plain,
    /// Those not encrypted with the first key: `cpi rekey`.
    NotCurrent,
}

/// Re-encrypts stored URLs with the key ring's first key, in the caller's
/// transaction (rows locked); `(rewritten, total)`. A row that does not
/// decrypt fails the whole call, naming the connection.
pub async fn reseal_connections(
    conn: &mut PgConnection,
    ring: &crate::crypto::Keyring,
    which: Reseal,
) -> Result<(u64, u64), StoreError> {
    /// id, name, description, database_url, applied_digest.
    type Stored = (Uuid, String, Option<String>, String, Option<String>);
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT id, name, description, database_url, applied_digest
           FROM cpi_connections ORDER BY name FOR UPDATE",
    )
    .fetch_all(&mut *conn)
    .await?;
    let total = rows.len() as u64;
    let mut changed = 0;
    for (id, name, description, stored, applied) in rows {
        let due = match which {
            Reseal::Plain => !crate::crypto::is_sealed(&stored),
            Reseal::NotCurrent => !ring.is_current(&stored),
        };
        if !due || !ring.has_key() {
            continue;
        }
        let plain = ring.open(&stored).map_err(|source| StoreError::Sealed {
            name: name.clone(),
            source,
        })?;
        // Only the storage changes, so updated_at stays. The digest is over
        // the stored text: it follows the new text when the row was as cpi
        // wrote it, and stays (still drift) when it had been edited by hand.
        let resealed = ring.seal(&plain);
        let digest_of =
            |text: &str| crate::plan::connection_digest(&name, description.as_deref(), text);
        let applied = match applied {
            Some(d) if d == digest_of(&stored) => Some(digest_of(&resealed)),
            other => other,
        };
        sqlx::query(
            "UPDATE cpi_connections SET database_url = $2, applied_digest = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(resealed)
        .bind(applied)
        .execute(&mut *conn)
        .await?;
        changed += 1;
    }
    Ok((changed, total))
}

/// Whether some stored URL is encrypted (writing without a key would then
/// put plain text beside it: refused).
pub async fn has_sealed_urls(db: impl PgExecutor<'_>) -> Result<bool, StoreError> {
    let (yes,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM cpi_connections WHERE database_url LIKE 'cpi:v1:%')",
    )
    .fetch_one(db)
    .await?;
    Ok(yes)
}
