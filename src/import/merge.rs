//! The merge of the staged rows per mode (insert, upsert as `MERGE` or
//! `ON CONFLICT`, sync's delete), and when it fails, the file line of the
//! row to blame.

use sqlx::postgres::PgDatabaseError;
use sqlx::PgConnection;

use crate::config::{Mode, ResolvedOptions};
use crate::import::columns::ColumnPlan;
use crate::import::copy::STAGE;
use crate::import::failure::{db_failure, Failure};
use crate::import::pipeline::{self, RowError};
use crate::import::{sql, target};
use crate::store::jobs::Counts;

/// The merge of the staging rows `stage` into `table`.
fn staged<'a>(
    table: &'a str,
    stage: &'a str,
    plan: &'a ColumnPlan,
    key: &'a [&'a str],
    summary: &pipeline::Summary,
) -> sql::Merge<'a> {
    sql::Merge {
        target: table,
        stage,
        cols: &plan.merge_columns,
        key,
        keys_unique: summary.keys_unique,
    }
}

/// Moves the rows into the table per mode and fills in the counts.
pub(super) async fn merge(
    tx: &mut PgConnection,
    o: &ResolvedOptions,
    plan: &ColumnPlan,
    summary: &pipeline::Summary,
    copied: u64,
    counts: &mut Counts,
) -> Result<(), sqlx::Error> {
    let table = o.table.quoted();
    let key: Vec<&str> = plan.key.iter().map(String::as_str).collect();
    let m = staged(&table, STAGE, plan, &key, summary);
    match o.mode {
        Mode::Append | Mode::Replace if !plan.staged => counts.rows_inserted = copied,
        Mode::Append => {
            // Staged for the checks only: every row, duplicates of a key too.
            let all = staged(&table, STAGE, plan, &[], summary);
            let r = sqlx::query(sqlx::AssertSqlSafe(all.insert_all()))
                .persistent(false)
                .execute(&mut *tx)
                .await?;
            counts.rows_inserted = r.rows_affected();
        }
        Mode::Replace => {
            let r = sqlx::query(sqlx::AssertSqlSafe(m.insert_all()))
                .persistent(false)
                .execute(&mut *tx)
                .await?;
            counts.rows_inserted = r.rows_affected();
        }
        Mode::Upsert | Mode::Sync => {
            // No ANALYZE of the staging table: the planner estimates its
            // row count from its size, which is what picks the hash
            // join; sampling would cost more than it tells.
            let merged = match merge_upsert(tx, &m, &plan.key, copied).await? {
                Some(counts) => counts,
                None => {
                    let (ins, upd): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(m.upsert()))
                        .persistent(false)
                        .fetch_one(&mut *tx)
                        .await?;
                    (ins as u64, upd as u64)
                }
            };
            (counts.rows_inserted, counts.rows_updated) = merged;
            if o.mode == Mode::Sync {
                let r = sqlx::query(sqlx::AssertSqlSafe(m.delete_missing()))
                    .persistent(false)
                    .execute(&mut *tx)
                    .await?;
                counts.rows_deleted = r.rows_affected();
            }
        }
    }
    Ok(())
}

/// A constraint the server checks in the merge (not null, foreign key,
/// unique, check, exclusion): some staging row is to blame.
pub(super) fn is_constraint_error(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("23"))
}

/// Which staging row made the merge fail: the shortest prefix of the
/// staging rows (in file order) whose merge fails ends with it. Bisects,
/// each try rolled back to the savepoint before the merge: about
/// log2(rows) statements costing twice the merge in all, on the failure
/// path only. `None` when the whole file's first statement passes (sync's
/// DELETE failed: a row of the table, not of the file, is to blame).
pub(super) async fn locate_merge_failure(
    tx: &mut PgConnection,
    o: &ResolvedOptions,
    plan: &ColumnPlan,
    summary: &pipeline::Summary,
    copied: u64,
) -> Result<Option<u64>, sqlx::Error> {
    sqlx::query("ROLLBACK TO SAVEPOINT cpi_merge")
        .execute(&mut *tx)
        .await?;
    if copied == 0 || !prefix_fails(tx, o, plan, summary, copied).await? {
        return Ok(None);
    }
    let (mut lo, mut hi) = (1, copied);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if prefix_fails(tx, o, plan, summary, mid).await? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Some(lo))
}

/// Whether the merge's first statement fails on the staging rows `1..=last`
/// (rolled back either way).
async fn prefix_fails(
    tx: &mut PgConnection,
    o: &ResolvedOptions,
    plan: &ColumnPlan,
    summary: &pipeline::Summary,
    last: u64,
) -> Result<bool, sqlx::Error> {
    let stage = format!(
        "(SELECT * FROM {STAGE} WHERE {} <= {last}) cpi_prefix",
        crate::config::quote_ident(sql::ROW_COLUMN)
    );
    let table = o.table.quoted();
    let key: Vec<&str> = plan.key.iter().map(String::as_str).collect();
    let m = staged(&table, &stage, plan, &key, summary);
    let append = staged(&table, &stage, plan, &[], summary);
    let q = match o.mode {
        Mode::Append => append.insert_all(),
        Mode::Replace => m.insert_all(),
        _ => m.upsert(),
    };
    // Built from quoted identifiers and an integer.
    let failed = sqlx::query(sqlx::AssertSqlSafe(q))
        .persistent(false)
        .execute(&mut *tx)
        .await
        .is_err();
    sqlx::query("ROLLBACK TO SAVEPOINT cpi_merge")
        .execute(&mut *tx)
        .await?;
    Ok(failed)
}

/// A merge error, with the file line of the row to blame when it is known
/// (also as a row error in `error_details`).
pub(super) fn merge_failure(
    file: &str,
    e: sqlx::Error,
    line: Option<u64>,
    summary: &pipeline::Summary,
) -> Failure {
    let column = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
        .and_then(|pg| pg.column().map(str::to_string));
    let failure = db_failure(file, e, None).with_report(summary);
    let (line, message, errors, errors_total, counts) = match (line, failure) {
        (
            Some(line),
            Failure::Bad {
                message,
                errors,
                errors_total,
                counts,
            },
        ) => (line, message, errors, errors_total, counts),
        (_, f) => return f,
    };
    let what = message
        .strip_prefix(&format!("{file}: "))
        .unwrap_or(&message);
    let shown = column
        .as_deref()
        .map(|c| format!("column {}: ", crate::config::quote_ident(c)))
        .unwrap_or_default();
    let message = format!("{file}:{line}: {shown}{what}");
    let mut errors = errors;
    errors.insert(
        0,
        RowError {
            line,
            column,
            value: None,
            message: message.clone(),
        },
    );
    Failure::Bad {
        message,
        errors,
        errors_total: errors_total + 1,
        counts,
    }
}

/// Files with fewer staged rows upsert with `ON CONFLICT` directly.
const MERGE_MIN_ROWS: u64 = 10_000;

/// The upsert as one `MERGE` ([`sql::Merge::merge_upsert`]: about a fifth less
/// server work than `ON CONFLICT` on a large file, see
/// docs/benchmarks.md), when the server has it (PostgreSQL ≥ 15) and the
/// key has the unique index `ON CONFLICT` would use. `None`: run
/// [`sql::Merge::upsert`] instead; also after a unique violation (another
/// session inserted one of the keys meanwhile, which `ON CONFLICT`
/// handles) or a feature `MERGE` lacks, the `MERGE` rolled back to its
/// savepoint.
async fn merge_upsert(
    tx: &mut PgConnection,
    m: &sql::Merge<'_>,
    key: &[String],
    rows: u64,
) -> Result<Option<(u64, u64)>, sqlx::Error> {
    let table = m.target;
    // MERGE wins on the join of a big file; on a small one its five extra
    // round trips (catalog check, sequence, savepoint) cost more than it saves.
    if rows < MERGE_MIN_ROWS
        || tx.server_version_num().is_none_or(|v| v < 150_000)
        || !target::has_key_index(tx, table, key).await?
    {
        return Ok(None);
    }
    let counter = sql::INSERTED_COUNTER;
    for step in [
        format!("CREATE TEMP SEQUENCE {counter}"),
        "SAVEPOINT cpi_merge_upsert".to_string(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(step))
            .persistent(false)
            .execute(&mut *tx)
            .await?;
    }
    let merge = m.merge_upsert();
    let written = match sqlx::query(sqlx::AssertSqlSafe(merge))
        .persistent(false)
        .execute(&mut *tx)
        .await
    {
        Ok(r) => Some(r.rows_affected()),
        // 23505: a concurrent insert of a key; 0A000: what MERGE does not
        // support and ON CONFLICT does (a table with a DELETE rule).
        Err(sqlx::Error::Database(d)) if matches!(d.code().as_deref(), Some("23505" | "0A000")) => {
            None
        }
        Err(e) => return Err(e),
    };
    let inserted: Option<i64> = match written {
        Some(_) => Some(
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {counter}"
            )))
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?,
        ),
        None => {
            tracing::info!(
                table,
                "MERGE met a concurrent insert: INSERT … ON CONFLICT instead"
            );
            sqlx::query("ROLLBACK TO SAVEPOINT cpi_merge_upsert")
                .execute(&mut *tx)
                .await?;
            None
        }
    };
    for step in [
        "RELEASE SAVEPOINT cpi_merge_upsert".to_string(),
        format!("DROP SEQUENCE {counter}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(step))
            .persistent(false)
            .execute(&mut *tx)
            .await?;
    }
    Ok(written.zip(inserted).map(|(w, i)| (i as u64, w - i as u64)))
}
