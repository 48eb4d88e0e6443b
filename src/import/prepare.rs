//! The target table made ready for the file, in the import's transaction:
//! created (typed from the file with `create_table: infer`) or extended
//! (`extra_columns: add`), then its columns planned, the decisions noted
//! for the job.

use sqlx::PgConnection;

use crate::config::{ExtraColumns, Mode, RaggedRows, ResolvedOptions};
use crate::import::columns::{self, ColumnPlan, TablePlan};
use crate::import::context::Ctx;
use crate::import::encode::ColumnSpec;
use crate::import::failure::{db_failure, Failure};
use crate::import::{infer, ragged, target};

/// The target table's columns as a batch's shared pass (`load::Within::Shared`) last
/// read or made them.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    columns: Option<(String, Vec<ColumnSpec>)>,
}

impl Catalog {
    /// The columns of `table` (quoted), when this pass has read them.
    pub(super) fn get(&self, table: &str) -> Option<Vec<ColumnSpec>> {
        let (t, c) = self.columns.as_ref()?;
        (t == table).then(|| c.clone())
    }

    /// Keeps `table`'s columns as the load left them.
    pub(super) fn keep(&mut self, table: &str, columns: &[ColumnSpec]) {
        self.columns = Some((table.to_string(), columns.to_vec()));
    }
}

/// Creates the table when planned, then plans the columns against the
/// table as the catalog now describes it; returns the `CREATE TABLE` it
/// ran, if any. Takes the header, not the opened
/// file: the records reader is `Send` but not `Sync`, and the import future
/// must stay `Send`.
pub(super) async fn prepare_target(
    tx: &mut PgConnection,
    ctx: &Ctx,
    header: Option<&[String]>,
    width: usize,
    catalog: Option<&mut Catalog>,
    notes: &mut Vec<String>,
) -> Result<(ColumnPlan, Option<String>), Failure> {
    let (file, o) = (ctx.file.as_str(), &ctx.opts);
    let table = o.table.quoted();
    let db = |e: sqlx::Error| db_failure(file, e, None);
    let bad = |e: columns::PlanError| Failure::bad(e.to_string());
    let existing = match catalog.as_deref().and_then(|c| c.get(&table)) {
        Some(known) => Some(known),
        None => target::columns(tx, &table).await.map_err(db)?,
    };
    let mut planned =
        columns::plan_table(file, o, header, width, existing.is_some()).map_err(bad)?;
    if matches!(planned, TablePlan::Create(_)) && o.infer_types {
        let inf = infer_columns(ctx).await?;
        for n in &inf.notes {
            tracing::info!(file, decision = %n, "create_table: infer");
            notes.push(format!("{file}: {n}"));
        }
        let create = infer::create_table(&table, &inf, &o.primary_key);
        notes.push(format!("{file}: created {}", one_line(&create)));
        planned = TablePlan::Create(create);
    }
    let mut created = None;
    let columns = match planned {
        TablePlan::Existing => {
            add_extra_columns(tx, ctx, header, existing.unwrap_or_default(), notes).await?
        }
        TablePlan::Create(create) => {
            sqlx::query(sqlx::AssertSqlSafe(create.clone()))
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            created = Some(create);
            target::columns(tx, &table)
                .await
                .map_err(db)?
                .unwrap_or_default()
        }
    };
    let columns = rescue_column(tx, ctx, columns, notes).await?;
    if let Some(c) = catalog {
        c.keep(&table, &columns);
    }
    // `_rescued` is cpi's, not the file's: it is planned apart, last.
    let (rescued, columns): (Vec<ColumnSpec>, Vec<ColumnSpec>) = columns
        .into_iter()
        .partition(|c| o.ragged_rows == RaggedRows::Rescue && c.name == ragged::RESCUED_COLUMN);
    let mut plan = columns::plan_columns(file, o, header, width, &columns).map_err(bad)?;
    for c in rescued {
        plan.merge_columns.push(crate::import::sql::MergeColumn {
            name: c.name.clone(),
            compare_as_text: true,
        });
        plan.columns.push(c.name.clone());
        plan.fields.push((ragged::RESCUED_FIELD, c));
    }
    if let Some(h) = header {
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let (extra, missing) = crate::import::mapping::unmatched(h, &o.columns, &names);
        for n in column_notes(o, &extra, &missing) {
            tracing::info!(file, decision = %n, "columns");
            notes.push(format!("{file}: {n}"));
        }
    }
    Ok((plan, created))
}

/// `ragged_rows: rescue`: the table gets its `_rescued jsonb` column (in
/// the import's transaction) when it has none. Returns the table's
/// columns as they now are.
async fn rescue_column(
    tx: &mut PgConnection,
    ctx: &Ctx,
    columns: Vec<ColumnSpec>,
    notes: &mut Vec<String>,
) -> Result<Vec<ColumnSpec>, Failure> {
    let (file, o) = (ctx.file.as_str(), &ctx.opts);
    if o.ragged_rows != RaggedRows::Rescue
        || columns.iter().any(|c| c.name == ragged::RESCUED_COLUMN)
    {
        return Ok(columns);
    }
    let table = o.table.quoted();
    let db = |e: sqlx::Error| db_failure(file, e, None);
    let column = crate::config::quote_ident(ragged::RESCUED_COLUMN);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} jsonb"
    )))
    .persistent(false)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let note = format!("ragged_rows: rescue → added {column} jsonb to {}", o.table);
    tracing::info!(file, decision = %note, "ragged_rows");
    notes.push(format!("{file}: {note}"));
    Ok(target::columns(tx, &table)
        .await
        .map_err(db)?
        .unwrap_or_default())
}

/// The decisions about the columns the file and the table do not share,
/// for the job (the refusals are the import's error instead).
fn column_notes(o: &ResolvedOptions, extra: &[String], missing: &[String]) -> Vec<String> {
    let list = |v: &[String]| {
        v.iter()
            .map(|c| crate::config::quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    if !extra.is_empty() && o.extra_columns == ExtraColumns::Ignore {
        out.push(format!(
            "extra_columns: ignore → not loaded: {}",
            list(extra)
        ));
    }
    if !missing.is_empty() && o.missing_columns == crate::config::ColumnPolicy::Ignore {
        let what = match o.mode {
            Mode::Upsert | Mode::Sync => {
                "new rows get NULL or the column's default, updated rows keep their value"
            }
            Mode::Append | Mode::Replace => "NULL or the column's default",
        };
        out.push(format!(
            "missing_columns: ignore → not in the file: {} ({what})",
            list(missing)
        ));
    }
    out
}

/// `extra_columns: add`: the header's columns the table lacks are added
/// (`ALTER TABLE … ADD COLUMN IF NOT EXISTS`, typed as `create_table:
/// infer` would type them, from the whole file) in the import's
/// transaction, so a failed import leaves the table as it was. Returns the
/// table's columns as they now are.
async fn add_extra_columns(
    tx: &mut PgConnection,
    ctx: &Ctx,
    header: Option<&[String]>,
    columns: Vec<ColumnSpec>,
    notes: &mut Vec<String>,
) -> Result<Vec<ColumnSpec>, Failure> {
    let (file, o) = (ctx.file.as_str(), &ctx.opts);
    let Some(header) = header.filter(|_| o.extra_columns == ExtraColumns::Add) else {
        return Ok(columns);
    };
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let (extra, _) = crate::import::mapping::unmatched(header, &o.columns, &names);
    // An added column would not be a key: a key column the table lacks
    // stays the mapping's error.
    let extra: Vec<String> = extra
        .into_iter()
        .filter(|e| !o.primary_key.iter().any(|k| k.eq_ignore_ascii_case(e)))
        .collect();
    if extra.is_empty() {
        return Ok(columns);
    }
    let inf = infer_columns(ctx).await?;
    let added: Vec<(String, infer::Inferred)> = inf
        .columns
        .into_iter()
        .filter(|(n, _)| extra.contains(n))
        .collect();
    for (n, _) in &added {
        let prefix = format!("column {}:", crate::config::quote_ident(n));
        for why in inf.notes.iter().filter(|w| w.starts_with(&prefix)) {
            tracing::info!(file, decision = %why, "extra_columns: add");
            notes.push(format!("{file}: {why}"));
        }
    }
    let table = o.table.quoted();
    let db = |e: sqlx::Error| db_failure(file, e, None);
    // Identifiers quoted by add_columns, types from a fixed list.
    sqlx::query(sqlx::AssertSqlSafe(infer::add_columns(&table, &added)))
        .persistent(false)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let note = format!(
        "extra_columns: add → added to {}: {}",
        o.table,
        added
            .iter()
            .map(|(n, t)| format!("{} {}", crate::config::quote_ident(n), t.sql()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    tracing::info!(file, decision = %note, "extra_columns: add");
    notes.push(format!("{file}: {note}"));
    Ok(target::columns(tx, &table)
        .await
        .map_err(db)?
        .unwrap_or_default())
}

/// [`infer::infer_file`] off the runtime: it reads the whole file.
async fn infer_columns(ctx: &Ctx) -> Result<infer::Inference, Failure> {
    let (p, f, o) = (ctx.source.clone(), ctx.file.clone(), ctx.opts.clone());
    tokio::task::spawn_blocking(move || infer::infer_file(&p, &f, &o))
        .await
        .map_err(|e| Failure::bad(e.to_string()))?
        .map_err(|e| Failure::bad(e.to_string()))
}

/// `CREATE TABLE (\n  a int,\n …)` on one line, for a note.
fn one_line(sql: &str) -> String {
    sql.replace("\n  ", " ").replace('\n', " ")
}
