//! The target database: the connection to it, its catalog, the table
//! lock, the ledger. Every function but `connect` runs on the import's
//! own connection or transaction.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use crate::import::error::ImportError;
use crate::secret::Secret;
use crate::store;

use crate::import::encode::{ColType, ColumnSpec};
use crate::import::sql;

/// A column from the catalog (all `None`: the table exists but has no columns).
type CatalogRow = (Option<String>, Option<i64>, Option<i32>, Option<bool>);

/// The target table's columns in table order, or `None` when the table
/// does not exist. Generated columns cannot be written and are left out.
pub async fn columns(
    conn: &mut PgConnection,
    quoted_table: &str,
) -> Result<Option<Vec<ColumnSpec>>, sqlx::Error> {
    // One round trip: the table's row (NULL columns when it has none)
    // and its columns; no row at all when the table does not exist.
    let rows: Vec<CatalogRow> = sqlx::query_as(
        "SELECT a.attname::text, a.atttypid::int8, a.atttypmod, a.attnotnull
           FROM (SELECT to_regclass($1) AS rel) t
           LEFT JOIN pg_attribute a
             ON a.attrelid = t.rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
          WHERE t.rel IS NOT NULL
          ORDER BY a.attnum",
    )
    .bind(quoted_table)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let rows = rows
        .into_iter()
        .filter_map(|(name, oid, typmod, not_null)| Some((name?, oid?, typmod?, not_null?)));
    Ok(Some(
        rows.map(|(name, oid, typmod, not_null)| ColumnSpec {
            name,
            ty: ColType::from_oid(oid as u32),
            typmod,
            not_null,
        })
        .collect(),
    ))
}

/// Whether `INSERT … ON CONFLICT (key)` has an arbiter: a unique,
/// immediate, non-partial index on exactly the key's columns (in any
/// order). Only then may an upsert run as `MERGE`, which needs none and
/// would otherwise accept what `ON CONFLICT` refuses.
pub async fn has_key_index(
    conn: &mut PgConnection,
    quoted_table: &str,
    key: &[String],
) -> Result<bool, sqlx::Error> {
    let (found,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (
           SELECT 1 FROM pg_index i
            WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indimmediate
              AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
              AND i.indnkeyatts = cardinality($2::text[])
              AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                     FROM pg_attribute a
                    WHERE a.attrelid = i.indrelid
                      AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]))
                  = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) k))",
    )
    .bind(quoted_table)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    Ok(found)
}

/// Serialises imports into one table (inside the import transaction, so it
/// is released by commit, rollback or a dead connection): two imports into
/// the same table queue instead of deadlocking on each other's rows.
pub async fn lock_table(conn: &mut PgConnection, quoted_table: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("cpi import {quoted_table}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Creates `cpi.imported_files` if needed (see [`ensure_table`]).
pub async fn ensure_ledger(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    ensure_table(conn, "cpi.imported_files", "cpi ledger", sql::CREATE_LEDGER).await
}

/// Creates one of cpi's own tables in the target (`table`, by
/// `statements`) if it is not there, in its own short transaction under
/// the advisory lock `lock`, so concurrent first imports do not race on
/// CREATE. One catalog lookup when it exists.
pub async fn ensure_table(
    conn: &mut PgConnection,
    table: &str,
    lock: &str,
    statements: &[&str],
) -> Result<(), sqlx::Error> {
    let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
    if exists {
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(lock)
        .execute(&mut *tx)
        .await?;
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(*statement))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// A previous import of the same content into the same table.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    /// The job that imported it.
    pub job_id: Uuid,
    /// Its file's name.
    pub file_name: String,
    /// When it committed.
    pub imported_at: chrono::DateTime<chrono::Utc>,
}

/// The ledger row of this content in this table, if any.
pub async fn ledger_lookup(
    conn: &mut PgConnection,
    project: &str,
    table: &str,
    sha256: &str,
) -> Result<Option<LedgerEntry>, sqlx::Error> {
    let row: Option<(Uuid, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT job_id, file_name, imported_at FROM cpi.imported_files
          WHERE project = $1 AND target_table = $2 AND sha256 = $3",
    )
    .bind(project)
    .bind(table)
    .bind(sha256)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(job_id, file_name, imported_at)| LedgerEntry {
        job_id,
        file_name,
        imported_at,
    }))
}

/// A replay's step before [`ledger_insert`]: the ledger's entry of the
/// same content moves to `cpi.superseded_files` (created on first use, under
/// the ledger's lock), with when and by which job, in the replay's
/// transaction: superseded, never silently ignored.
pub async fn ledger_supersede(
    conn: &mut PgConnection,
    project: &str,
    table: &str,
    sha256: &str,
    by_job: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('cpi ledger', 0))")
        .execute(&mut *conn)
        .await?;
    sqlx::query(sql::CREATE_SUPERSEDED)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "WITH gone AS (
             DELETE FROM cpi.imported_files
              WHERE project = $1 AND target_table = $2 AND sha256 = $3
          RETURNING *)
         INSERT INTO cpi.superseded_files
                (project, target_table, sha256, job_id, file_name, rows, imported_at, superseded_by)
         SELECT project, target_table, sha256, job_id, file_name, rows, imported_at, $4 FROM gone",
    )
    .bind(project)
    .bind(table)
    .bind(sha256)
    .bind(by_job)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the file in the same transaction as its rows. `false` when the
/// same content got there first (the transaction must then roll back).
pub async fn ledger_insert(
    conn: &mut PgConnection,
    project: &str,
    table: &str,
    sha256: &str,
    job_id: Uuid,
    file_name: &str,
    rows: u64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO cpi.imported_files (project, target_table, sha256, job_id, file_name, rows)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(project)
    .bind(table)
    .bind(sha256)
    .bind(job_id)
    .bind(file_name)
    .bind(rows as i64)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// One ledger row of a batch's shared pass.
pub struct LedgerRow<'a> {
    /// The file's content hash.
    pub sha256: &'a str,
    /// The job that loaded it.
    pub job_id: Uuid,
    /// The file, as the job names it.
    pub file_name: &'a str,
    /// The rows it loaded.
    pub rows: u64,
}

/// Writes the ledger rows of a batch's shared pass in one statement;
/// whether every one was new (`false`: a content is in the ledger
/// already, or twice in the pass; nothing is decided here, the batch
/// loads again with a savepoint per file).
pub async fn ledger_insert_all(
    conn: &mut PgConnection,
    project: &str,
    table: &str,
    rows: &[LedgerRow<'_>],
) -> Result<bool, sqlx::Error> {
    let sha: Vec<&str> = rows.iter().map(|r| r.sha256).collect();
    let jobs: Vec<Uuid> = rows.iter().map(|r| r.job_id).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.file_name).collect();
    let counts: Vec<i64> = rows.iter().map(|r| r.rows as i64).collect();
    let r = sqlx::query(
        "INSERT INTO cpi.imported_files (project, target_table, sha256, job_id, file_name, rows)
         SELECT $1, $2, s, j, f, n FROM unnest($3::text[], $4::uuid[], $5::text[], $6::int8[]) AS u(s, j, f, n)
         ON CONFLICT DO NOTHING",
    )
    .bind(project)
    .bind(table)
    .bind(&sha)
    .bind(&jobs)
    .bind(&names)
    .bind(&counts)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == rows.len() as u64)
}

/// How long connecting to a target database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How a target URL becomes connect options: the one place for it (the
/// cached connections are keyed by the URL string and opened with these).
fn target_connect_options(url: &Secret, project: &str) -> Result<PgConnectOptions, ImportError> {
    // No statement logging: the merge statements are long, and slow by
    // nature on big files; the job row says what happened.
    Ok(store::connect_options(url)
        .map_err(|e| ImportError::InvalidTargetUrl {
            project: project.to_string(),
            message: e.to_string(),
        })?
        .disable_statement_logging()
        // cpi's own statements (the ledger, the lock, the catalog) are
        // prepared once per connection: one round trip each instead of
        // two. Statements built from a table's name or columns are not
        // kept (`persistent(false)` in `load`): their text differs per
        // table and file, and each kept one would hold a prepared
        // statement on the server for nothing. (A kept statement whose
        // table changes shape is planned again by the server.)
        .statement_cache_capacity(32))
}

/// Connects to the target, within [`CONNECT_TIMEOUT`].
pub(crate) async fn connect(url: &Secret, project: &str) -> Result<PgConnection, ImportError> {
    let opts = target_connect_options(url, project)?;
    match tokio::time::timeout(CONNECT_TIMEOUT, crate::tls::connect(&opts)).await {
        Ok(Ok((c, _))) => Ok(c),
        Ok(Err(source)) => Err(ImportError::TargetUnreachable {
            project: project.to_string(),
            source,
        }),
        Err(_) => Err(ImportError::ConnectTimeout {
            project: project.to_string(),
            after: CONNECT_TIMEOUT,
        }),
    }
}
