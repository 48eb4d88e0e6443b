//! The COPY of one pass: the staging table, the statement, the rows
//! streamed from the parser's thread, and what the server's COPY context
//! says about a refused row.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use sqlx::postgres::PgDatabaseError;
use sqlx::PgConnection;

use crate::config::OnError;
use crate::import::columns::ColumnPlan;
use crate::import::context::{Ctx, Progress, ProgressFn};
use crate::import::failure::{copy_column_of, copy_row_of, db_failure, Failure};
use crate::import::open::{Opened, Stream};
use crate::import::pipeline::{self, RowError};
use crate::import::{reader, sql};

pub(super) const STAGE: &str = "pg_temp.cpi_stage";

/// Creates the staging table when the plan needs one.
pub(super) async fn prepare_copy(
    tx: &mut PgConnection,
    table: &str,
    plan: &ColumnPlan,
) -> Result<(), sqlx::Error> {
    if !plan.staged {
        return Ok(());
    }
    let cols: Vec<&str> = plan.columns.iter().map(String::as_str).collect();
    // For the merge: the staging table in memory where it fits, hash
    // joins of a million rows without spilling, and no JIT compile for a
    // statement whose cost is writing rows. One statement each, through
    // `query`: the future of `raw_sql` is not provably Send, which would
    // keep the import off tokio::spawn.
    for set in [
        "SET LOCAL temp_buffers = '128MB'",
        "SET LOCAL work_mem = '128MB'",
        "SET LOCAL jit = off",
    ] {
        sqlx::query(set).execute(&mut *tx).await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(sql::create_stage(STAGE, table, &cols)))
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The COPY of the plan: into the table, or into the staging table with
/// the row sequence.
fn copy_statement(table: &str, plan: &ColumnPlan) -> String {
    let mut cols: Vec<&str> = plan.columns.iter().map(String::as_str).collect();
    if !plan.staged {
        return sql::copy_statement(table, &cols, plan.format);
    }
    cols.push(sql::ROW_COLUMN);
    sql::copy_statement(STAGE, &cols, plan.format)
}

/// How one COPY pass ended (see [`load`]).
pub(super) enum Pass {
    /// Every row went (or was skipped as bad): the COPY's row count.
    Done(pipeline::Summary, u64),
    /// A binary COPY met a value only the server reads: why.
    NeedsText(String),
    /// With `skip_rows`, the server refused this row.
    Refused(RowError),
}

/// A server error on one COPY row's value or constraint, as a row error
/// (file line, column, value), when the server named the row.
fn refused_row(file: &str, e: &sqlx::Error, lines: &pipeline::LineMap) -> Option<RowError> {
    let pg = e
        .as_database_error()?
        .try_downcast_ref::<PgDatabaseError>()?;
    let code = pg.code();
    if !(code.starts_with("22") || code == "23502" || code == "23514") {
        return None;
    }
    let context = pg.r#where()?;
    let line = lines.line_of(copy_row_of(context)?)?;
    let column = copy_column_of(context);
    let value = context
        .lines()
        .next()
        .and_then(|l| l.split_once(": \""))
        .map(|(_, v)| v.trim_end_matches('"').to_string());
    let shown = column
        .as_deref()
        .map(|c| format!("column {}: ", crate::config::quote_ident(c)))
        .unwrap_or_default();
    Some(RowError {
        line,
        column,
        value,
        message: format!("{file}:{line}: {shown}{}", pg.message()),
    })
}

/// Streams the rows: parsed on a thread of its own, sent from here, so
/// both cores are busy with at most a few buffers in flight whatever the
/// file size. Returns the parser's summary and the rows COPY wrote; on
/// failure the caller rolls the transaction back.
pub(super) async fn copy(
    tx: &mut PgConnection,
    ctx: &Ctx,
    plan: &ColumnPlan,
    opened: Opened,
    stream: &Stream,
    progress: ProgressFn<'_>,
    refused: &BTreeMap<u64, RowError>,
) -> Result<Pass, Failure> {
    let (file, o) = (ctx.file.as_str(), &ctx.opts);
    let copy_sql = &copy_statement(&o.table.quoted(), plan);
    let spec = pipeline::Spec {
        file: file.to_string(),
        format: plan.format,
        fields: plan.fields.clone(),
        width: plan.width,
        nulls: o.null.clone(),
        trim: o.trim,
        on_error: o.on_error,
        max_errors: o.max_errors,
        ragged: o.ragged_rows,
        keep_rejects: (o.rejects == crate::config::Rejects::Table).then(|| {
            let d = o
                .wide_delimiter
                .clone()
                .unwrap_or_else(|| vec![o.delimiter]);
            (d, o.quote)
        }),
        row_number: plan.staged,
        first: opened.first,
        key_fields: plan.key_fields.clone(),
        dialects: {
            let cols: Vec<_> = plan.fields.iter().map(|(_, c)| c).collect();
            crate::import::dialect::for_columns(o, &cols)
        },
        refused: refused.clone(),
    };
    let (tx_buf, mut rx_buf) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let producer = {
        let rows = stream.rows.clone();
        let records = opened.records;
        tokio::task::spawn_blocking(move || {
            pipeline::produce(records, spec, |b| tx_buf.blocking_send(b).is_ok(), rows)
        })
    };
    let mut copy = match tx.copy_in_raw(copy_sql).await {
        Ok(c) => c,
        Err(e) => {
            drop(rx_buf);
            let _ = producer.await;
            return Err(db_failure(file, e, None));
        }
    };
    let mut send_error = None;
    while let Some(buf) = rx_buf.recv().await {
        if let Err(e) = copy.send(buf).await {
            send_error = Some(e);
            break;
        }
        if let Some(p) = progress {
            p(Progress {
                rows: stream.rows.load(Ordering::Relaxed),
                bytes: stream.bytes.load(Ordering::Relaxed),
                total_bytes: ctx.size,
            });
        }
    }
    drop(rx_buf);
    let summary = producer
        .await
        .map_err(|e| Failure::bad(format!("{file}: the parser failed: {e}")))?;
    let skip = o.on_error == OnError::SkipRows;
    if let Some(e) = send_error {
        drop(copy);
        if let Some(row) = refused_row(file, &e, &summary.lines).filter(|_| skip) {
            return Ok(Pass::Refused(row));
        }
        // The server rolls the transaction back.
        return Err(db_failure(file, e, Some(&summary.lines)));
    }
    if let Some(why) = summary.needs_server {
        // The server answers the abort with an error, which is expected.
        let _ = copy.abort("cpi: starting over as text COPY").await;
        return Ok(Pass::NeedsText(why));
    }
    if let Some(fatal) = &summary.fatal {
        let _ = copy.abort("cpi: the file is rejected").await;
        // A corrupt .gz can decode to garbage rows before its checksum
        // fails, and a truncated one ends in half a line: the gzip (or
        // zstd) verdict, when there is one, is the real reason and the
        // only error reported (the rows of a broken stream are not the
        // file's rows). Off the runtime: it reads the file (an object: a
        // GET) again.
        let (source, limits) = (ctx.source.clone(), ctx.opts.limits);
        let problem = match summary.over_budget {
            true => None,
            false => {
                tokio::task::spawn_blocking(move || reader::compression_problem(&source, &limits))
                    .await
                    .ok()
                    .flatten()
            }
        };
        return Err(match problem {
            Some(m) => Failure::broken_stream(format!("{file}: {m}"), &summary),
            None => Failure::rejected(fatal.clone(), &summary),
        });
    }
    match copy.finish().await {
        Ok(n) => Ok(Pass::Done(summary, n)),
        Err(e) => match refused_row(file, &e, &summary.lines).filter(|_| skip) {
            Some(row) => Ok(Pass::Refused(row)),
            None => Err(db_failure(file, e, Some(&summary.lines)).with_report(&summary)),
        },
    }
}
