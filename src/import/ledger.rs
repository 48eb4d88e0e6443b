//! The ledger step of a load: the file's row in `cpi.imported_files`, and
//! the verdict when its content is there already.

use sqlx::PgConnection;

use crate::config::TableName;
use crate::import::context::{Ctx, Loaded};
use crate::import::target;
use crate::store::jobs::{Counts, JobStatus};

/// Writes the ledger row; `Some(duplicate)` when the same content is in
/// the ledger already (imported before, its size unknown to the management
/// database; or committed meanwhile): the caller then rolls back.
pub(super) async fn record(
    tx: &mut PgConnection,
    ctx: &Ctx,
    sha256: &str,
    rows_loaded: u64,
) -> Result<Option<Loaded>, sqlx::Error> {
    let (file, table) = (ctx.file.as_str(), ctx.opts.table.quoted());
    if ctx.replay {
        target::ledger_supersede(tx, &ctx.project, &table, sha256, ctx.job_id).await?;
    }
    let fresh = target::ledger_insert(
        tx,
        &ctx.project,
        &table,
        sha256,
        ctx.job_id,
        file,
        rows_loaded,
    )
    .await?;
    if fresh {
        return Ok(None);
    }
    let prev = target::ledger_lookup(tx, &ctx.project, &table, sha256).await?;
    Ok(Some(match prev {
        Some(prev) => duplicate(file, &ctx.opts.table, sha256, &prev),
        None => Loaded {
            sha256: sha256.to_string(),
            status: JobStatus::Duplicate,
            counts: Counts::default(),
            note: Some(format!(
                "{file}: the same content was already imported into {}",
                ctx.opts.table
            )),
            errors: Vec::new(),
            errors_total: 0,
            checks: Vec::new(),
            created: None,
            ledger_rows: None,
        },
    }))
}

pub(super) fn duplicate(
    file: &str,
    table: &TableName,
    sha256: &str,
    prev: &target::LedgerEntry,
) -> Loaded {
    Loaded {
        sha256: sha256.to_string(),
        status: JobStatus::Duplicate,
        counts: Counts::default(),
        note: Some(format!(
            "{file}: the same content was already imported into {table} by job {} ({} at {})",
            prev.job_id,
            prev.file_name,
            prev.imported_at.format("%Y-%m-%d %H:%M:%S UTC")
        )),
        errors: Vec::new(),
        errors_total: 0,
        checks: Vec::new(),
        created: None,
        ledger_rows: None,
    }
}
