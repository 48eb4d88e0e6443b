//! Loading one planned file into its target, in one transaction: take the
//! table's lock, stream the rows (binary COPY, parsed and hashed on a
//! thread of its own), merge them per mode, write the ledger row
//! (`cpi.imported_files`, keyed by the file's sha256) and commit. A content
//! already in the ledger rolls everything back.
//!
//! The steps have modules of their own: [`open`](super::open),
//! [`prepare`](super::prepare), [`copy`](super::copy),
//! [`merge`](super::merge), [`ledger`](super::ledger); their failures are
//! [`failure`](super::failure)'s.

use std::collections::BTreeMap;
use std::time::Instant;

use sqlx::{Connection, PgConnection};

use crate::config::checks::Outcome;
use crate::config::{DateOrder, Mode, OnError};
use crate::import::checks::{self, CheckResult};
use crate::import::context::{Ctx, Loaded, ProgressFn};
use crate::import::copy::{copy, prepare_copy, Pass, STAGE};
use crate::import::encode::CopyFormat;
use crate::import::failure::db_failure;
use crate::import::gate::{run_checks, CheckBroken};
use crate::import::ledger::{duplicate, record};
use crate::import::merge::{is_constraint_error, locate_merge_failure, merge, merge_failure};
use crate::import::open::{auto_options, changed, file_sha256, new_stream, open};
use crate::import::prepare::{prepare_target, Catalog};
use crate::import::target;
use crate::store::jobs::{Counts, JobStatus};

/// The load's verdict when it did not commit, where the job reads it.
pub(super) use crate::import::failure::Failure;

/// Where a load's transaction lives.
pub(super) enum Within<'a> {
    /// Its own: begun, the table locked, committed here.
    Own,
    /// A savepoint inside a batch's transaction, which has ensured the
    /// ledger, set the session's settings for the file's `date_order`
    /// and locked the file's table: "commit" releases the savepoint, a
    /// failure rolls back to it alone, and the batch commits.
    Batch,
    /// The batch's transaction itself, no savepoint at all (the batch's
    /// first, optimistic pass): "commit" does nothing, and nothing can be
    /// rolled back alone, so every verdict but a clean success (and every
    /// step that needs a savepoint of its own: a binary COPY going again
    /// as text, a row the server refused, a merge failure to locate) ends
    /// the pass. The batch then rolls back and loads its files again, each
    /// `Batch`. The table's columns are read once for the pass: its lock
    /// keeps other sessions from changing them, and a change of the pass's
    /// own (a `CREATE`, an added column) updates what it keeps.
    Shared(&'a mut Catalog),
}

/// The load's transaction, as [`Within`] says.
enum Scope<'c> {
    /// A transaction or a savepoint of sqlx's.
    Own(sqlx::Transaction<'c, sqlx::Postgres>),
    /// The batch's transaction: [`Within::Shared`].
    Shared(&'c mut PgConnection),
}

impl Scope<'_> {
    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Scope::Own(tx) => tx.commit().await,
            Scope::Shared(_) => Ok(()),
        }
    }

    /// Rolls back a transaction or savepoint; leaves a shared one to the
    /// batch, which rolls it back whole on this file's verdict.
    async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Scope::Own(tx) => tx.rollback().await,
            Scope::Shared(_) => Ok(()),
        }
    }
}

impl std::ops::Deref for Scope<'_> {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        match self {
            Scope::Own(tx) => tx,
            Scope::Shared(c) => c,
        }
    }
}

impl std::ops::DerefMut for Scope<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Scope::Own(tx) => &mut *tx,
            Scope::Shared(c) => c,
        }
    }
}

/// What a [`Within::Shared`] load returns where it would need a savepoint
/// of its own: the batch goes again with savepoints.
fn needs_savepoint(file: &str, why: &str) -> Failure {
    Failure::NeedsSavepoint(format!(
        "{file}: {why}: the batch loads again with a savepoint per file"
    ))
}

/// Loads the file: see the module documentation.
pub(super) async fn load(
    conn: &mut PgConnection,
    ctx: &Ctx,
    progress: ProgressFn<'_>,
    within: Within<'_>,
) -> Result<Loaded, Failure> {
    let r = load_once(conn, ctx, progress, within).await;
    if let Err(Failure::Bad { .. }) = &r {
        if let Some(why) = changed(ctx, 0, None) {
            return Err(Failure::Changed(why));
        }
    }
    r
}

async fn load_once(
    conn: &mut PgConnection,
    ctx: &Ctx,
    progress: ProgressFn<'_>,
    within: Within<'_>,
) -> Result<Loaded, Failure> {
    let mut notes = Vec::new();
    let sniffed;
    let ctx = match auto_options(ctx, &mut notes).await? {
        Some(c) => {
            sniffed = c;
            &sniffed
        }
        None => ctx,
    };
    let shaped;
    let ctx = match shape(ctx, &mut notes).await? {
        Some(c) => {
            shaped = c;
            &shaped
        }
        None => ctx,
    };
    let file = ctx.file.as_str();
    let o = &ctx.opts;
    let table = o.table.quoted();
    let db = |e: sqlx::Error| db_failure(file, e, None);

    let started = Instant::now();
    let dry_run = ctx.dry_run;
    let in_batch = !matches!(within, Within::Own);
    let keep_rejects = o.rejects == crate::config::Rejects::Table;
    if !dry_run {
        if matches!(within, Within::Own) {
            target::ensure_ledger(conn).await.map_err(db)?;
        }
        if keep_rejects {
            crate::import::rejects::ensure(conn).await.map_err(db)?;
        }
    }
    let (tx, catalog) = match within {
        Within::Own => (
            begin(conn, &table, o.date_order).await.map(Scope::Own),
            None,
        ),
        Within::Batch => (conn.begin().await.map(Scope::Own), None),
        Within::Shared(c) => (Ok(Scope::Shared(conn)), Some(c)),
    };
    let shared = catalog.is_some();
    let mut tx = tx.map_err(db)?;
    if dry_run {
        // Inside the transaction, so that a check leaves no ledger behind.
        target::ensure_ledger(&mut tx).await.map_err(db)?;
    }
    // A shared pass asks the ledger only when it writes the file's row: a
    // duplicate found then (or rows of one breaking a key first) ends the
    // pass, and the pass with savepoints asks before loading.
    if let Some(sha) = ctx.sha256.as_ref().filter(|_| !ctx.replay && !shared) {
        if let Some(prev) = target::ledger_lookup(&mut tx, &ctx.project, &table, sha)
            .await
            .map_err(db)?
        {
            let _ = tx.rollback().await;
            return Ok(duplicate(file, &o.table, sha, &prev));
        }
    }

    let mut stream = new_stream(ctx);
    let opened = open(ctx, &stream).await?;
    for n in &opened.notes {
        tracing::info!(file, decision = %n, "open");
        notes.push(format!("{file}: {n}"));
    }
    let (mut plan, created) = prepare_target(
        &mut tx,
        ctx,
        opened.header.as_deref(),
        opened.width,
        catalog,
        &mut notes,
    )
    .await?;
    let mut counts = Counts::default();
    if o.mode == Mode::Replace && dry_run {
        // A check counts what the import would delete, locking no row.
        let (n,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .persistent(false)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        counts.rows_deleted = u64::try_from(n).unwrap_or(0);
    } else if o.mode == Mode::Replace {
        // DELETE, not TRUNCATE: readers keep seeing the old rows until
        // commit, and no ACCESS EXCLUSIVE lock is taken.
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        counts.rows_deleted = r.rows_affected();
    }
    prepare_copy(&mut tx, &table, &plan).await.map_err(db)?;
    // A pass may end early: a binary COPY met a value only the server
    // reads (go again as text), or, with skip_rows, the server refused a
    // row (go again without it). Each pass starts from this savepoint.
    let savepoint =
        !shared && (plan.format == CopyFormat::Binary || o.on_error == OnError::SkipRows);
    if savepoint {
        sqlx::query("SAVEPOINT cpi_copy")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    let mut refused = BTreeMap::new();
    let mut opened = Some(opened);
    let (summary, copied) = loop {
        let this = match opened.take() {
            Some(op) => Ok(op),
            None => {
                stream = new_stream(ctx);
                open(ctx, &stream).await
            }
        };
        let pass = match this {
            Ok(op) => copy(&mut tx, ctx, &plan, op, &stream, progress, &refused).await,
            Err(f) => Err(f),
        };
        match pass {
            Ok(Pass::Done(s, n)) => break (s, n),
            Ok(Pass::NeedsText(_) | Pass::Refused(_)) if shared => {
                return Err(needs_savepoint(file, "the COPY must go again"));
            }
            Ok(Pass::NeedsText(why)) => {
                tracing::info!(file, decision = %why, "binary COPY → text COPY");
                notes.push(why);
                plan.format = CopyFormat::Text;
            }
            Ok(Pass::Refused(row)) if !refused.contains_key(&row.line) => {
                tracing::info!(file, row = %row.message, "the server refused a row: skipped");
                refused.insert(row.line, row);
            }
            Ok(Pass::Refused(row)) => {
                let _ = tx.rollback().await;
                return Err(Failure::bad(row.message));
            }
            Err(f) => {
                // After a lost connection this fails too: the server has
                // rolled back already.
                let _ = tx.rollback().await;
                return Err(f);
            }
        }
        if let Err(e) = sqlx::query("ROLLBACK TO SAVEPOINT cpi_copy")
            .execute(&mut *tx)
            .await
        {
            let _ = tx.rollback().await;
            return Err(db(e));
        }
    };
    counts.rows_read = summary.rows_read;
    counts.rows_rejected = summary.rows_rejected;

    let results = if o.checks.is_empty() {
        Vec::new()
    } else {
        match run_checks(&mut tx, file, &table, &o.checks, copied, &summary.lines).await {
            Ok(r) => r,
            Err(b) => {
                let _ = tx.rollback().await;
                return Err(broken_check(file, b));
            }
        }
    };
    if let Some(message) = checks_failed(file, &results) {
        let _ = tx.rollback().await;
        return Err(Failure::Checks {
            message,
            results,
            counts: Counts {
                rows_read: summary.rows_read,
                rows_rejected: summary.rows_rejected,
                ..Counts::default()
            },
        });
    }

    let copy_done = started.elapsed();
    if plan.staged && !shared {
        // Keeps the staging rows if the merge fails, to find the row that
        // made it fail (one round trip on the success path).
        sqlx::query("SAVEPOINT cpi_merge")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    if let Err(e) = merge(&mut tx, o, &plan, &summary, copied, &mut counts).await {
        if shared {
            return Err(needs_savepoint(file, "the merge failed"));
        }
        let row = if plan.staged && is_constraint_error(&e) {
            locate_merge_failure(&mut tx, o, &plan, &summary, copied)
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        let _ = tx.rollback().await;
        let line = row.and_then(|r| summary.lines.line_of(r));
        return Err(merge_failure(file, e, line, &summary));
    }
    if plan.staged && in_batch {
        // The staging table goes at commit (`ON COMMIT DROP`): in a batch
        // the next file's must not meet this one's.
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {STAGE}")))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }

    if keep_rejects && !summary.rejects.is_empty() && dry_run {
        notes.push(format!(
            "{file}: rejects: table → {} skipped row(s) would be kept in cpi.rejected_rows",
            summary.rejects.len()
        ));
    } else if keep_rejects && !summary.rejects.is_empty() {
        let at = crate::import::rejects::Origin {
            project: &ctx.project,
            table: &table,
            file,
            job_id: ctx.job_id,
        };
        if let Err(e) = crate::import::rejects::insert(&mut tx, &at, &summary.rejects).await {
            let _ = tx.rollback().await;
            return Err(db(e));
        }
        notes.push(format!(
            "{file}: rejects: table → {} skipped row(s) in cpi.rejected_rows",
            summary.rejects.len()
        ));
    }
    let (sha256, hashed) = file_sha256(ctx, &stream).await?;
    // The last moment to refuse what was loaded: the rows, the job's size
    // and the ledger's hash must all be one file's.
    let read = stream.bytes.load(std::sync::atomic::Ordering::Relaxed);
    if let Some(why) = changed(ctx, read, hashed) {
        let _ = tx.rollback().await;
        return Err(Failure::Changed(why));
    }
    let merge_done = started.elapsed();
    // A shared pass leaves the ledger row to its batch (one statement for
    // the pass); a replay supersedes the old row first, so writes its own.
    let ledger_rows = (shared && !ctx.replay).then_some(summary.rows_loaded);
    if dry_run {
        tx.rollback().await.map_err(db)?;
    } else if ledger_rows.is_none() {
        if let Some(dup) = record(&mut tx, ctx, &sha256, summary.rows_loaded)
            .await
            .map_err(db)?
        {
            // Everything loaded here is rolled back.
            let _ = tx.rollback().await;
            return Ok(dup);
        }
        tx.commit().await.map_err(db)?;
    }
    tracing::debug!(
        file,
        copy_s = copy_done.as_secs_f64(),
        merge_s = (merge_done - copy_done).as_secs_f64(),
        commit_s = (started.elapsed() - merge_done).as_secs_f64(),
        "import timings"
    );
    if summary.rows_rejected > 0 {
        notes.push(format!(
            "{file}: {} bad row(s) skipped (on_error: skip_rows)",
            summary.rows_rejected
        ));
    }
    if summary.rows_padded > 0 {
        notes.push(format!(
            "{file}: ragged_rows: {} → {} row(s) with fewer fields than the header loaded, the missing fields NULL",
            o.ragged_rows.as_str(),
            summary.rows_padded
        ));
    }
    if summary.rows_truncated > 0 {
        notes.push(format!(
            "{file}: ragged_rows: {} → {} row(s) with more fields than the header loaded, the extra fields {}",
            o.ragged_rows.as_str(),
            summary.rows_truncated,
            if o.ragged_rows == crate::config::RaggedRows::Rescue {
                "in \"_rescued\""
            } else {
                "dropped"
            }
        ));
    }
    notes.extend(
        results
            .iter()
            .filter(|r| r.outcome == Outcome::Warn)
            .map(|r| format!("warning: {}", r.message)),
    );
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(Loaded {
        sha256,
        status: JobStatus::Succeeded,
        counts,
        note,
        errors: summary.errors,
        errors_total: summary.errors_total,
        checks: results,
        created,
        ledger_rows,
    })
}

/// `skip_lines: auto` and `header: auto` decided from the file's first
/// records (off the runtime), each decision logged and noted for the job.
async fn shape(ctx: &Ctx, notes: &mut Vec<String>) -> Result<Option<Ctx>, Failure> {
    let o = &ctx.opts;
    if o.skip_lines != crate::config::SkipLines::Auto && !o.header_auto {
        return Ok(None);
    }
    let (p, opts) = (ctx.source.clone(), o.clone());
    let (decided, why) =
        tokio::task::spawn_blocking(move || crate::import::shape::decide(&p, &opts))
            .await
            .map_err(|e| Failure::bad(e.to_string()))?
            .map_err(|e| Failure::bad(crate::import::pipeline::csv_error(&ctx.file, &e)))?;
    for n in why {
        tracing::info!(file = %ctx.file, decision = %n, "shape");
        notes.push(format!("{}: {n}", ctx.file));
    }
    let mut c = ctx.clone();
    c.opts = decided;
    Ok(Some(c))
}

/// The job's error when a check of severity `error` stopped the file:
/// which checks, then each one's count and lines.
fn checks_failed(file: &str, results: &[CheckResult]) -> Option<String> {
    let failed = checks::failed_names(results, Outcome::Error);
    if failed.is_empty() {
        return None;
    }
    let each: Vec<&str> = results
        .iter()
        .filter(|r| r.outcome == Outcome::Error)
        .map(|r| {
            r.message
                .strip_prefix(&format!("{file}: "))
                .unwrap_or(&r.message)
        })
        .collect::<Vec<_>>();
    Some(format!(
        "{file}: failed check(s) {}: {}",
        failed.join(", "),
        each.join("; ")
    ))
}

/// A check the server could not run, named; a lost connection stays worth a retry.
fn broken_check(file: &str, b: CheckBroken) -> Failure {
    match db_failure(file, b.error, None) {
        Failure::Bad { message, .. } => {
            let why = message
                .strip_prefix(&format!("{file}: "))
                .unwrap_or(&message);
            Failure::bad(format!("{file}: check {} cannot run: {why}", b.check))
        }
        other => other,
    }
}

/// The import transaction (a batch's too, see [`Within`]): timestamps without an offset mean UTC whatever
/// the server's setting, and the table's lock is held until it ends.
pub(super) async fn begin<'c>(
    conn: &'c mut PgConnection,
    table: &str,
    date_order: DateOrder,
) -> Result<sqlx::Transaction<'c, sqlx::Postgres>, sqlx::Error> {
    // One round trip (a simple-query batch) for the three statements. The
    // DateStyle says how the server reads `01/02/2024` when cpi hands it a
    // date; cpi's own date forms are year-first, the same in every order.
    // `date_order` is one of cpi's own constants, never input.
    let mut tx = conn
        .begin_with(sqlx::AssertSqlSafe(format!(
            "BEGIN; SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, {}'",
            date_order.as_str()
        )))
        .await?;
    target::lock_table(&mut tx, table).await?;
    Ok(tx)
}
