//! `cpi_connections`: the row type, the HTTP API's reads and writes of
//! unmanaged rows, and the encryption at rest of the stored URLs.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::error::{Result, StoreError};
use super::lookup::{delete_unmanaged, fetch_by};
use crate::secret::Secret;

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

const COLUMNS: &str =
    "id, name, description, database_url, managed_by, source, created_at, updated_at";

/// Every connection, by name.
pub async fn list_connections(db: impl PgExecutor<'_>) -> Result<Vec<ConnectionRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM cpi_connections ORDER BY name"
    )))
    .fetch_all(db)
    .await?)
}

/// The connection named `name`, if any.
pub async fn connection_by_name(
    db: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<ConnectionRow>> {
    let sql = format!("SELECT {COLUMNS} FROM cpi_connections WHERE name = $1");
    fetch_by(db, sql, name).await
}

/// The connection with this id, if any.
pub async fn connection_by_id(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<ConnectionRow>> {
    let sql = format!("SELECT {COLUMNS} FROM cpi_connections WHERE id = $1");
    fetch_by(db, sql, id).await
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
) -> Result<ConnectionRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO cpi_connections (name, description, database_url) VALUES ($1, $2, $3)
         RETURNING {COLUMNS}"
    )))
    .bind(name)
    .bind(description)
    .bind(crate::crypto::seal(database_url))
    .fetch_one(db)
    .await?)
}

/// The row, locked until the end of the transaction.
pub async fn lock_connection(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<ConnectionRow>> {
    let sql = format!("SELECT {COLUMNS} FROM cpi_connections WHERE id = $1 FOR UPDATE");
    fetch_by(db, sql, id).await
}

/// Updates a connection no reconciler owns; `None` when there is none.
pub async fn update_unmanaged_connection(
    db: impl PgExecutor<'_>,
    id: Uuid,
    name: &str,
    description: Option<&str>,
    database_url: &Secret,
) -> Result<Option<ConnectionRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE cpi_connections SET name = $2, description = $3, database_url = $4, updated_at = NOW()
          WHERE id = $1 AND managed_by IS NULL
         RETURNING {COLUMNS}"
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
pub async fn delete_unmanaged_connection(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool> {
    delete_unmanaged(db, "cpi_connections", id).await
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
) -> Result<(u64, u64)> {
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

/// How many stored URLs each key encrypts: `(key id, count)`, with `None`
/// for URLs stored in plain text.
pub async fn urls_by_key(db: impl PgExecutor<'_>) -> Result<Vec<(Option<String>, i64)>> {
    Ok(sqlx::query_as(
        "SELECT CASE WHEN database_url LIKE 'cpi:v1:%' THEN split_part(database_url, ':', 3) END AS key_id,
                count(*)
           FROM cpi_connections GROUP BY 1 ORDER BY 1 NULLS FIRST",
    )
    .fetch_all(db)
    .await?)
}

/// Whether some stored URL is encrypted (writing without a key would then
/// put plain text beside it: refused).
pub async fn has_sealed_urls(db: impl PgExecutor<'_>) -> Result<bool> {
    let (yes,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM cpi_connections WHERE database_url LIKE 'cpi:v1:%')",
    )
    .fetch_one(db)
    .await?;
    Ok(yes)
}
