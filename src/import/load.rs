//! Loading one planned file into its target, in one transaction: take the
//! table's lock, stream the rows (binary COPY, parsed and hashed on a
//! thread of its own), merge them per mode, write the ledger row
//! (`cpi.imported_files`, keyed by the file's sha256) and commit. A content
//! already in the ledger rolls everything back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sqlx::postgres::PgDatabaseError;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use std::collections::BTreeMap;

use crate::config::{DateOrder, ExtraColumns, Mode, OnError, ResolvedOptions, TableName};
use crate::import::columns::{self, ColumnPlan, TablePlan};
use crate::import::encode::ColumnSpec;
use crate::import::encode::CopyFormat;
use crate::import::{infer, pipeline, reader, sql, target};
use crate::jobs::{Counts, JobStatus};
use pipeline::RowError;

/// Progress of one file, reported after every buffer sent.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Rows parsed so far.
    pub rows: u64,
    /// Bytes of the file read so far (compressed bytes for `.gz`).
    pub bytes: u64,
    /// The file's size.
    pub total_bytes: u64,
}

/// Where progress goes, if anywhere (`cpi import` draws a bar).
pub type ProgressFn<'a> = Option<&'a (dyn Fn(Progress) + Send + Sync)>;

/// Everything one file's load needs to know.
#[derive(Clone)]
pub(super) struct Ctx {
    pub job_id: Uuid,
    pub project: String,
    pub source: reader::Source,
    pub file: String,
    /// Known before loading only for a likely duplicate; otherwise
    /// computed while the file streams.
    pub sha256: Option<String>,
    pub size: u64,
    pub opts: ResolvedOptions,
}

/// A successful load (or a duplicate).
pub(super) struct Loaded {
    pub sha256: String,
    pub status: JobStatus,
    pub counts: Counts,
    pub note: Option<String>,
    pub errors: Vec<RowError>,
    pub errors_total: u64,
}

/// Why a load did not commit.
pub(super) enum Failure {
    /// The file (or its fit with the table) is wrong: it goes to failed/.
    Bad {
        message: String,
        errors: Vec<RowError>,
        errors_total: u64,
        counts: Counts,
    },
    /// The target misbehaved (connection lost, serialization failure…).
    Transient(sqlx::Error),
}

impl Failure {
    fn bad(message: impl Into<String>) -> Failure {
        Failure::Bad {
            message: message.into(),
            errors: Vec::new(),
            errors_total: 0,
            counts: Counts::default(),
        }
    }

    /// The file was rejected after parsing: the parser's report goes with
    /// it, and nothing counts as written.
    fn rejected(message: String, s: &pipeline::Summary) -> Failure {
        Failure::Bad {
            message,
            errors: s.errors.clone(),
            errors_total: s.errors_total,
            counts: Counts {
                rows_read: s.rows_read,
                rows_rejected: s.rows_rejected,
                ..Counts::default()
            },
        }
    }

    /// Attaches the parser's report to a bad failure.
    fn with_report(self, s: &pipeline::Summary) -> Failure {
        match self {
            Failure::Bad { message, .. } => Failure::rejected(message, s),
            t => t,
        }
    }
}

/// SQLSTATE classes worth a retry: connection exception, transaction
/// rollback (serialization, deadlock), insufficient resources, operator
/// intervention, system error; and a lock timeout (55P03).
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c == "55P03"
                || ["08", "40", "53", "57", "58"]
                    .iter()
                    .any(|p| c.starts_with(p))
        }),
        _ => false,
    }
}

/// A server error as the operator should read it: with the file line when
/// the server names a COPY row, and the detail (e.g. the duplicate key).
fn db_failure(file: &str, e: sqlx::Error, lines: Option<&pipeline::LineMap>) -> Failure {
    if is_transient(&e) {
        return Failure::Transient(e);
    }
    let Some(pg) = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
    else {
        return Failure::bad(format!("{file}: {e}"));
    };
    let mut msg = pg.message().to_string();
    if let Some(d) = pg.detail() {
        msg.push_str(&format!(" ({d})"));
    }
    let line = pg
        .r#where()
        .and_then(copy_row_of)
        .and_then(|row| lines.and_then(|l| l.line_of(row)));
    let column = pg
        .r#where()
        .and_then(copy_column_of)
        .map(|c| format!("column {}: ", crate::config::quote_ident(&c)))
        .unwrap_or_default();
    Failure::bad(match line {
        Some(l) => format!("{file}:{l}: {column}{msg}"),
        None => format!("{file}: {msg}"),
    })
}

/// `COPY t, line 1532, column amount: "x"` → 1532.
pub fn copy_row_of(context: &str) -> Option<u64> {
    let i = context.find("line ")?;
    let digits: String = context[i + 5..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// `COPY t, line 3, column date: "x"` → `date` (the server's context
/// names the column of a refused value).
pub fn copy_column_of(context: &str) -> Option<String> {
    let first = context.lines().next()?;
    let i = first.find(", column ")?;
    let rest = &first[i + 9..];
    let end = rest.find(": ").unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// The opened file and its first record(s).
struct Opened {
    records: reader::Records,
    header: Option<Vec<String>>,
    first: Option<csv::ByteRecord>,
    width: usize,
}

fn open_file(
    source: &reader::Source,
    file: &str,
    o: &ResolvedOptions,
    bytes: Arc<AtomicU64>,
    hash: Option<reader::StreamHash>,
) -> Result<Opened, String> {
    let mut records =
        reader::open(source, o, bytes, hash).map_err(|e| format!("{file}: cannot open: {e}"))?;
    let mut first = csv::ByteRecord::new();
    let got = records.read_byte_record(&mut first).map_err(|e| {
        reader::compression_problem(source)
            .map(|m| format!("{file}: {m}"))
            .unwrap_or_else(|| pipeline::csv_error(file, &e))
    })?;
    if !o.header {
        let width = if got { first.len() } else { 0 };
        return Ok(Opened {
            records,
            header: None,
            first: got.then_some(first),
            width,
        });
    }
    if !got {
        return Err(format!("{file}: the file is empty (a header was expected)"));
    }
    let mut header = Vec::with_capacity(first.len());
    for f in first.iter() {
        let name = std::str::from_utf8(f)
            .map_err(|_| format!("{file}:1: the header is not valid UTF-8"))?;
        // Blanks around a header name are never meant.
        header.push(name.trim().to_string());
    }
    let width = header.len();
    Ok(Opened {
        records,
        header: Some(header),
        first: None,
        width,
    })
}

const STAGE: &str = "pg_temp.cpi_stage";

/// Byte and row counters shared with the parser thread, and the hash it
/// computes while reading (when the sha256 is not known yet).
struct Stream {
    bytes: Arc<AtomicU64>,
    rows: Arc<AtomicU64>,
    hash: Option<reader::StreamHash>,
}

/// `encoding: auto` and `delimiter: auto` decided from the file (one extra
/// pass for the encoding), each decision logged and noted for the job.
async fn auto_options(ctx: &Ctx, notes: &mut Vec<String>) -> Result<Option<Ctx>, Failure> {
    let o = &ctx.opts;
    let auto_encoding = o.encoding == crate::config::Encoding::Auto;
    if !auto_encoding && !o.delimiter_auto {
        return Ok(None);
    }
    let p = ctx.source.clone();
    let s = tokio::task::spawn_blocking(move || crate::import::sniff::sniff(&p, auto_encoding))
        .await
        .map_err(|e| Failure::bad(e.to_string()))?
        .map_err(|e| Failure::bad(format!("{}: cannot read: {e}", ctx.file)))?;
    let mut c = ctx.clone();
    if auto_encoding {
        let (enc, why) = crate::import::sniff::encoding(s.bom, s.valid_utf8);
        c.opts.encoding = enc;
        let note = format!("{}: encoding: auto → {why}", ctx.file);
        tracing::info!(file = %ctx.file, decision = %note, "encoding");
        notes.push(note);
    }
    if o.delimiter_auto {
        let d = crate::import::sniff::delimiter(&s.first_line, o.quote);
        c.opts.delimiter = d;
        let note = format!(
            "{}: delimiter: auto → {:?}",
            ctx.file,
            char::from(d).escape_default().to_string()
        );
        tracing::info!(file = %ctx.file, decision = %note, "delimiter");
        notes.push(note);
    }
    Ok(Some(c))
}

fn new_stream(ctx: &Ctx) -> Stream {
    Stream {
        bytes: Arc::new(AtomicU64::new(0)),
        rows: Arc::new(AtomicU64::new(0)),
        hash: ctx.sha256.is_none().then(reader::new_stream_hash),
    }
}

/// Loads the file: see the module documentation.
pub(super) async fn load(
    conn: &mut PgConnection,
    ctx: &Ctx,
    progress: ProgressFn<'_>,
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
    let file = ctx.file.as_str();
    let o = &ctx.opts;
    let table = o.table.quoted();
    let db = |e: sqlx::Error| db_failure(file, e, None);

    let started = Instant::now();
    target::ensure_ledger(conn).await.map_err(db)?;
    let mut tx = begin(conn, &table, o.date_order).await.map_err(db)?;
    if let Some(sha) = &ctx.sha256 {
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
    let mut plan = prepare_target(
        &mut tx,
        ctx,
        opened.header.as_deref(),
        opened.width,
        &mut notes,
    )
    .await?;
    let mut counts = Counts::default();
    if o.mode == Mode::Replace {
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
    let savepoint = plan.format == CopyFormat::Binary || o.on_error == OnError::SkipRows;
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

    let copy_done = started.elapsed();
    if plan.staged {
        // Keeps the staging rows if the merge fails, to find the row that
        // made it fail (one round trip on the success path).
        sqlx::query("SAVEPOINT cpi_merge")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    if let Err(e) = merge(&mut tx, o, &plan, &summary, copied, &mut counts).await {
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

    let sha256 = file_sha256(ctx, &stream).await?;
    if let Some(dup) = record(&mut tx, ctx, &sha256, summary.rows_loaded)
        .await
        .map_err(db)?
    {
        // Everything loaded here is rolled back.
        let _ = tx.rollback().await;
        return Ok(dup);
    }
    let merge_done = started.elapsed();
    tx.commit().await.map_err(db)?;
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
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(Loaded {
        sha256,
        status: JobStatus::Succeeded,
        counts,
        note,
        errors: summary.errors,
        errors_total: summary.errors_total,
    })
}

/// The import transaction: timestamps without an offset mean UTC whatever
/// the server's setting, and the table's lock is held until it ends.
async fn begin<'c>(
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

/// Writes the ledger row; `Some(duplicate)` when the same content is in
/// the ledger already (imported before, its size unknown to the management
/// database; or committed meanwhile): the caller then rolls back.
async fn record(
    tx: &mut PgConnection,
    ctx: &Ctx,
    sha256: &str,
    rows_loaded: u64,
) -> Result<Option<Loaded>, sqlx::Error> {
    let (file, table) = (ctx.file.as_str(), ctx.opts.table.quoted());
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
        },
    }))
}

/// Opens the file and reads its header (or first record), off the runtime.
async fn open(ctx: &Ctx, stream: &Stream) -> Result<Opened, Failure> {
    let (p, f, o, b, h) = (
        ctx.source.clone(),
        ctx.file.clone(),
        ctx.opts.clone(),
        stream.bytes.clone(),
        stream.hash.clone(),
    );
    tokio::task::spawn_blocking(move || open_file(&p, &f, &o, b, h))
        .await
        .map_err(|e| Failure::bad(e.to_string()))?
        .map_err(Failure::bad)
}

/// Creates the table when planned, then plans the columns against the
/// table as the catalog now describes it. Takes the header, not the opened
/// file: the records reader is `Send` but not `Sync`, and the import future
/// must stay `Send`.
async fn prepare_target(
    tx: &mut PgConnection,
    ctx: &Ctx,
    header: Option<&[String]>,
    width: usize,
    notes: &mut Vec<String>,
) -> Result<ColumnPlan, Failure> {
    let (file, o) = (ctx.file.as_str(), &ctx.opts);
    let table = o.table.quoted();
    let db = |e: sqlx::Error| db_failure(file, e, None);
    let bad = |e: columns::PlanError| Failure::bad(e.to_string());
    let existing = target::columns(tx, &table).await.map_err(db)?;
    let mut planned = columns::plan_table(file, o, header, existing.is_some()).map_err(bad)?;
    if matches!(planned, TablePlan::Create(_)) && o.infer_types {
        let (p, f, opts) = (ctx.source.clone(), ctx.file.clone(), o.clone());
        let inf = tokio::task::spawn_blocking(move || infer_file(&p, &f, &opts))
            .await
            .map_err(|e| Failure::bad(e.to_string()))?
            .map_err(Failure::bad)?;
        for n in &inf.notes {
            tracing::info!(file, decision = %n, "create_table: infer");
            notes.push(format!("{file}: {n}"));
        }
        let create = infer::create_table(&table, &inf, &o.primary_key);
        notes.push(format!("{file}: created {}", one_line(&create)));
        planned = TablePlan::Create(create);
    }
    let columns = match planned {
        TablePlan::Existing => {
            add_extra_columns(tx, ctx, header, existing.unwrap_or_default(), notes).await?
        }
        TablePlan::Create(create) => {
            sqlx::query(sqlx::AssertSqlSafe(create))
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            target::columns(tx, &table)
                .await
                .map_err(db)?
                .unwrap_or_default()
        }
    };
    let plan = columns::plan_columns(file, o, header, width, &columns).map_err(bad)?;
    if let Some(h) = header {
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let (extra, missing) = crate::import::mapping::unmatched(h, &o.columns, &names);
        for n in column_notes(o, &extra, &missing) {
            tracing::info!(file, decision = %n, "columns");
            notes.push(format!("{file}: {n}"));
        }
    }
    Ok(plan)
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
    let (p, f, opts) = (ctx.source.clone(), ctx.file.clone(), o.clone());
    let inf = tokio::task::spawn_blocking(move || infer_file(&p, &f, &opts))
        .await
        .map_err(|e| Failure::bad(e.to_string()))?
        .map_err(Failure::bad)?;
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

/// `CREATE TABLE (\n  a int,\n …)` on one line, for a note.
fn one_line(sql: &str) -> String {
    sql.replace("\n  ", " ").replace('\n', " ")
}

/// `create_table: infer`: reads the whole file (so that no row of it can
/// fail the types chosen) and infers its columns' types. The header's
/// names go through the `columns` renames.
pub fn infer_file(
    source: &reader::Source,
    file: &str,
    o: &ResolvedOptions,
) -> Result<infer::Inference, String> {
    let opened = open_file(source, file, o, Arc::new(AtomicU64::new(0)), None)?;
    let header = opened
        .header
        .ok_or_else(|| format!("{file}: create_table: infer needs a header"))?;
    let names = crate::import::mapping::columns_from_header(&header, &o.columns)
        .map_err(|m| format!("{file}: {m}"))?;
    let mut inf = infer::Infer::new(&names, &o.null);
    let mut records = opened.records;
    let mut record = csv::StringRecord::new();
    loop {
        match records.read_record(&mut record) {
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                if o.trim {
                    inf.add(line, record.iter().map(str::trim));
                } else {
                    inf.add(line, record.iter());
                }
            }
            Ok(false) => break,
            Err(e) => return Err(pipeline::csv_error(file, &e)),
        }
    }
    Ok(inf.finish())
}

/// Creates the staging table when the plan needs one.
async fn prepare_copy(
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
enum Pass {
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
async fn copy(
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
        // fails: the gzip (or zstd) verdict, when there is one, is the
        // real reason. Off the runtime: it reads the file (an object: a
        // GET) again.
        let source = ctx.source.clone();
        let message = tokio::task::spawn_blocking(move || reader::compression_problem(&source))
            .await
            .ok()
            .flatten()
            .map(|m| format!("{file}: {m}"))
            .unwrap_or_else(|| fatal.clone());
        return Err(Failure::rejected(message, &summary));
    }
    match copy.finish().await {
        Ok(n) => Ok(Pass::Done(summary, n)),
        Err(e) => match refused_row(file, &e, &summary.lines).filter(|_| skip) {
            Some(row) => Ok(Pass::Refused(row)),
            None => Err(db_failure(file, e, Some(&summary.lines)).with_report(&summary)),
        },
    }
}

/// Moves the rows into the table per mode and fills in the counts.
async fn merge(
    tx: &mut PgConnection,
    o: &ResolvedOptions,
    plan: &ColumnPlan,
    summary: &pipeline::Summary,
    copied: u64,
    counts: &mut Counts,
) -> Result<(), sqlx::Error> {
    let table = o.table.quoted();
    let cols: Vec<&str> = plan.columns.iter().map(String::as_str).collect();
    let key: Vec<&str> = plan.key.iter().map(String::as_str).collect();
    match o.mode {
        Mode::Append => counts.rows_inserted = copied,
        Mode::Replace if !plan.staged => counts.rows_inserted = copied,
        Mode::Replace => {
            let r = sqlx::query(sqlx::AssertSqlSafe(sql::insert_all(
                &table,
                STAGE,
                &cols,
                &key,
                summary.keys_unique,
            )))
            .persistent(false)
            .execute(&mut *tx)
            .await?;
            counts.rows_inserted = r.rows_affected();
        }
        Mode::Upsert | Mode::Sync => {
            // No ANALYZE of the staging table: the planner estimates its
            // row count from its size, which is what picks the hash
            // join; sampling would cost more than it tells.
            let merged = match merge_upsert(tx, &table, plan, &key, summary.keys_unique, copied)
                .await?
            {
                Some(counts) => counts,
                None => {
                    let (ins, upd): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql::upsert(
                        &table,
                        STAGE,
                        &plan.merge_columns,
                        &key,
                        summary.keys_unique,
                    )))
                    .persistent(false)
                    .fetch_one(&mut *tx)
                    .await?;
                    (ins as u64, upd as u64)
                }
            };
            (counts.rows_inserted, counts.rows_updated) = merged;
            if o.mode == Mode::Sync {
                let r = sqlx::query(sqlx::AssertSqlSafe(sql::delete_missing(
                    &table, STAGE, &key,
                )))
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
fn is_constraint_error(e: &sqlx::Error) -> bool {
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
async fn locate_merge_failure(
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
    let cols: Vec<&str> = plan.columns.iter().map(String::as_str).collect();
    let key: Vec<&str> = plan.key.iter().map(String::as_str).collect();
    let q = match o.mode {
        Mode::Replace => sql::insert_all(&table, &stage, &cols, &key, summary.keys_unique),
        _ => sql::upsert(
            &table,
            &stage,
            &plan.merge_columns,
            &key,
            summary.keys_unique,
        ),
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
fn merge_failure(
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

/// The upsert as one `MERGE` ([`sql::merge_upsert`]: about a fifth less
/// server work than `ON CONFLICT` on a large file, see
/// docs/benchmarks.md), when the server has it (PostgreSQL ≥ 15) and the
/// key has the unique index `ON CONFLICT` would use. `None`: run
/// [`sql::upsert`] instead; also after a unique violation (another
/// session inserted one of the keys meanwhile, which `ON CONFLICT`
/// handles) or a feature `MERGE` lacks, the `MERGE` rolled back to its
/// savepoint.
async fn merge_upsert(
    tx: &mut PgConnection,
    table: &str,
    plan: &ColumnPlan,
    key: &[&str],
    keys_unique: bool,
    rows: u64,
) -> Result<Option<(u64, u64)>, sqlx::Error> {
    // MERGE wins on the join of a big file; on a small one its five extra
    // round trips (catalog check, sequence, savepoint) cost more than it saves.
    if rows < MERGE_MIN_ROWS
        || tx.server_version_num().is_none_or(|v| v < 150_000)
        || !target::has_key_index(tx, table, &plan.key).await?
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
    let merge = sql::merge_upsert(table, STAGE, &plan.merge_columns, key, keys_unique);
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

/// The file's sha256: known before, computed while streaming, or (when the
/// parser stopped short of the end, a gzip trailer say) computed anew.
async fn file_sha256(ctx: &Ctx, stream: &Stream) -> Result<String, Failure> {
    let file = ctx.file.as_str();
    match (&ctx.sha256, &stream.hash) {
        (Some(sha), _) => Ok(sha.clone()),
        (None, Some(h)) if stream.bytes.load(Ordering::Relaxed) == ctx.size => {
            Ok(reader::finish_stream_hash(h).unwrap_or_default())
        }
        _ => {
            let p = ctx.source.clone();
            Ok(tokio::task::spawn_blocking(move || reader::hash(&p))
                .await
                .map_err(|e| Failure::bad(format!("{file}: {e}")))?
                .map_err(|e| Failure::bad(format!("{file}: cannot read: {e}")))?
                .0)
        }
    }
}

fn duplicate(file: &str, table: &TableName, sha256: &str, prev: &target::LedgerEntry) -> Loaded {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_context_row() {
        assert_eq!(
            copy_row_of("COPY t, line 1532, column amount: \"x\""),
            Some(1532)
        );
        assert_eq!(copy_row_of("COPY t, line 7"), Some(7));
        assert_eq!(copy_row_of("SQL statement"), None);
        assert_eq!(
            copy_column_of("COPY t, line 3, column date: \"x\"").as_deref(),
            Some("date")
        );
        assert_eq!(copy_column_of("COPY t, line 7"), None);
    }
}
