//! The shapes every table family shares: a lookup by name or id, and the
//! delete of a row no reconciler owns.

use sqlx::postgres::PgRow;
use sqlx::PgExecutor;

use super::error::Result;

/// Deletes row `id` of `table` unless a reconciler owns it; `false` when
/// there is none.
pub(super) async fn delete_unmanaged(
    db: impl PgExecutor<'_>,
    table: &str,
    id: uuid::Uuid,
) -> Result<bool> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE id = $1 AND managed_by IS NULL"
    )))
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The row `sql` selects with `$1` bound to `key`, if any: the shape of
/// every lookup by name or id.
pub(super) async fn fetch_by<'q, T, K>(
    db: impl PgExecutor<'_>,
    sql: String,
    key: K,
) -> Result<Option<T>>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    K: 'q + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(db)
        .await?)
}

/// Runs a retention `DELETE` whose `$1` is an age in seconds; how many rows
/// it deleted.
pub(super) async fn delete_older_than(
    db: impl PgExecutor<'_>,
    sql: &'static str,
    age: std::time::Duration,
) -> Result<u64> {
    Ok(sqlx::query(sql)
        .bind(age.as_secs_f64())
        .execute(db)
        .await?
        .rows_affected())
}
