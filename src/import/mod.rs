//! The import engine (DESIGN §5): one CSV file into its project's target
//! table through COPY, exactly once, all or nothing.
//!
//! [`run_job`] is the whole of it, for the daemon and `cpi import` alike:
//! the connection checks of DESIGN §1, the file's options, then one target
//! transaction that takes the table's advisory lock, streams the rows
//! (binary COPY, parsed and hashed on a thread of its own), merges them per
//! mode and writes the ledger row (`cpi.imported_files`, keyed by the
//! file's sha256): a content already there rolls everything back. A file
//! the size of one imported before is hashed first, so that a likely
//! duplicate is refused before anything is loaded. The job row in the
//! management database records the result.
//!
//! - [`reader`]: file → UTF-8 CSV records (gzip, encoding, BOM, dialect).
//! - [`mapping`]: header → target columns (pure).
//! - [`encode`]: values → COPY binary/text, checked per type (pure).
//! - [`pipeline`]: records → COPY buffers, row errors, `on_error`.
//! - [`sql`]: the statements of each mode (pure).
//! - [`target`]: catalog, table lock, ledger.

pub mod encode;
pub mod mapping;
pub mod pipeline;
pub mod reader;
pub mod sql;
pub mod target;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::PgDatabaseError;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::config::{Mode, ProjectConfig, ResolvedOptions};
use crate::jobs::{self, Counts, JobError, JobStatus};
use crate::secret::{self, Secret};
use crate::store;
use encode::{ColType, CopyFormat};
pub use pipeline::RowError;

/// How long connecting to a target database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Progress of one file, reported after every buffer sent.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub rows: u64,
    /// Bytes of the file read so far (compressed bytes for `.gz`).
    pub bytes: u64,
    pub total_bytes: u64,
}

/// The verdict on one file.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutcome {
    pub job_id: Uuid,
    pub file_name: String,
    pub status: JobStatus,
    pub target_table: Option<String>,
    pub mode: Option<String>,
    pub sha256: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Why the file failed (or, for a duplicate, which import it repeats).
    pub error: Option<String>,
    /// Row errors: the rejected rows with `skip_rows`, the failing row with `abort`.
    pub errors: Vec<RowError>,
    pub errors_total: u64,
}

/// A job that could not reach a verdict on its file. A file refused for
/// its content is not an error: it is a [`JobOutcome`] with status failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("job {0} does not exist")]
    JobNotFound(Uuid),
    #[error("project {0:?} does not exist in the management database")]
    ProjectNotFound(String),
    #[error("project {0:?} has no connection: set `spec.connection` in its manifest (target URLs are never read from environment variables)")]
    NoConnection(String),
    #[error("project {project:?}: its connection {id} does not exist in the management database")]
    ConnectionNotFound { project: String, id: Uuid },
    #[error("project {project:?}: {message}")]
    Config { project: String, message: String },
    #[error("cannot read {path}: {message}")]
    FileUnreadable { path: String, message: String },
    #[error("cannot reach the target database of project {project:?}: {message}")]
    TargetUnreachable { project: String, message: String },
    #[error("target database of project {project:?}: {message}")]
    TargetTransient { project: String, message: String },
    #[error(transparent)]
    Management(#[from] JobError),
}

impl ImportError {
    /// Whether trying the same file again later may succeed without anyone
    /// changing it or the configuration (the daemon leaves the file in place).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ImportError::TargetUnreachable { .. }
                | ImportError::TargetTransient { .. }
                | ImportError::Management(JobError::Db(_))
        )
    }
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Management(JobError::Db(e))
    }
}

/// Runs job `job_id`: see the module documentation. Does not move the
/// file. `Ok` whenever the file got a verdict (succeeded, duplicate, or
/// failed for its content); `Err` when it could not (see
/// [`ImportError::retryable`]); the job row records both.
pub async fn run_job(
    mgmt: &PgPool,
    job_id: Uuid,
    worker: &str,
    progress: Option<&(dyn Fn(Progress) + Send + Sync)>,
) -> Result<JobOutcome, ImportError> {
    let job = jobs::start(mgmt, job_id, worker)
        .await
        .map_err(|e| match e {
            JobError::NotFound(id) => ImportError::JobNotFound(id),
            e => ImportError::Management(e),
        })?;
    let result = run_started(mgmt, &job, progress).await;
    match result {
        Ok(outcome) => {
            let details = outcome_details(&outcome);
            jobs::finish(
                mgmt,
                job_id,
                outcome.status,
                &outcome.counts,
                outcome.error.as_deref(),
                details.as_ref(),
            )
            .await?;
            Ok(outcome)
        }
        Err(e) => {
            let text = secret::scrub_known(&e.to_string());
            // Best effort: the management database may be what failed.
            let _ = jobs::finish(
                mgmt,
                job_id,
                JobStatus::Failed,
                &Counts::default(),
                Some(&text),
                None,
            )
            .await;
            Err(e)
        }
    }
}

fn outcome_details(o: &JobOutcome) -> Option<serde_json::Value> {
    if o.errors.is_empty() {
        return None;
    }
    Some(serde_json::json!({
        "errors": o.errors,
        "errors_total": o.errors_total,
        "errors_truncated": o.errors_total > o.errors.len() as u64,
    }))
}

/// Everything one file's import needs to know.
struct Ctx {
    job_id: Uuid,
    project: String,
    path: PathBuf,
    file: String,
    /// Known before loading only for a likely duplicate; otherwise
    /// computed while the file streams.
    sha256: Option<String>,
    size: u64,
    opts: ResolvedOptions,
}

async fn run_started(
    mgmt: &PgPool,
    job: &jobs::Job,
    progress: Option<&(dyn Fn(Progress) + Send + Sync)>,
) -> Result<JobOutcome, ImportError> {
    let project_name = job.project_name.clone();
    // DESIGN §1: three checks, three errors; no environment fallback.
    let project = store::project_by_name(mgmt, &project_name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ImportError::ProjectNotFound(project_name.clone()))?;
    let connection_id = project
        .connection_id
        .ok_or_else(|| ImportError::NoConnection(project_name.clone()))?;
    let connection = store::connection_by_id(mgmt, connection_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ImportError::ConnectionNotFound {
            project: project_name.clone(),
            id: connection_id,
        })?;
    let url: Secret = connection.database_url.0;
    secret::register(&url);

    if project
        .config
        .get("connection")
        .and_then(|c| c.get("env_var"))
        .is_some()
    {
        return Err(ImportError::Config {
            project: project_name.clone(),
            message: "its config still has `connection.env_var`, which is no longer read: \
                      run `cpi convert-legacy` to turn it into a Connection manifest"
                .into(),
        });
    }
    let config: ProjectConfig =
        serde_json::from_value(project.config.clone()).map_err(|e| ImportError::Config {
            project: project_name.clone(),
            message: format!("invalid config: {e}"),
        })?;
    let path = PathBuf::from(&job.file_path);
    let relative = relative_path(config.inbox.as_deref(), &path, &job.file_name);
    let opts = config
        .options_for(&relative)
        .ok_or_else(|| ImportError::Config {
            project: project_name.clone(),
            message: format!("no file_pattern of the project matches {relative:?}"),
        })?;

    let unreadable = |e: String| ImportError::FileUnreadable {
        path: job.file_path.clone(),
        message: e,
    };
    let size = std::fs::metadata(&path)
        .map_err(|e| unreadable(e.to_string()))?
        .len();
    let table_label = opts.table.to_string();
    // Hashing first costs a pass over the file before the first row
    // moves. Only a file the size of one already imported is worth it (a
    // likely duplicate, then refused without loading anything); any other
    // file is hashed as it streams and checked against the ledger before
    // commit.
    let sha256 = if jobs::size_seen(mgmt, project.id, &table_label, size).await? {
        let hash_path = path.clone();
        let (sha, _) = tokio::task::spawn_blocking(move || reader::hash_file(&hash_path))
            .await
            .map_err(|e| unreadable(e.to_string()))?
            .map_err(|e| unreadable(e.to_string()))?;
        Some(sha)
    } else {
        None
    };
    jobs::describe(
        mgmt,
        job.id,
        sha256.as_deref(),
        size,
        &table_label,
        opts.mode.as_str(),
    )
    .await?;

    let ctx = Ctx {
        job_id: job.id,
        project: project_name.clone(),
        path,
        file: job.file_name.clone(),
        sha256: sha256.clone(),
        size,
        opts,
    };
    let mut outcome = JobOutcome {
        job_id: job.id,
        file_name: job.file_name.clone(),
        status: JobStatus::Failed,
        target_table: Some(table_label),
        mode: Some(ctx.opts.mode.as_str().to_string()),
        sha256,
        counts: Counts::default(),
        error: None,
        errors: Vec::new(),
        errors_total: 0,
    };

    let mut conn = connect_target(&url, &project_name).await?;
    let result = load(&mut conn, &ctx, progress).await;
    let _ = conn.close().await;
    match result {
        Ok(l) => {
            if outcome.sha256.is_none() {
                jobs::set_sha256(mgmt, job.id, &l.sha256).await?;
                outcome.sha256 = Some(l.sha256.clone());
            }
            outcome.status = l.status;
            outcome.counts = l.counts;
            outcome.error = l.note;
            outcome.errors = l.errors;
            outcome.errors_total = l.errors_total;
            Ok(outcome)
        }
        Err(Failure::Bad {
            message,
            errors,
            errors_total,
            counts,
        }) => {
            outcome.status = JobStatus::Failed;
            outcome.error = Some(secret::scrub(&message, &[&url]));
            outcome.errors = errors;
            outcome.errors_total = errors_total;
            outcome.counts = counts;
            Ok(outcome)
        }
        Err(Failure::Transient(message)) => Err(ImportError::TargetTransient {
            project: project_name,
            message: secret::scrub(&message, &[&url]),
        }),
    }
}

fn store_error(e: store::StoreError) -> ImportError {
    match e {
        store::StoreError::Db(e) => ImportError::Management(JobError::Db(e)),
        other => ImportError::Config {
            project: String::new(),
            message: other.to_string(),
        },
    }
}

/// The file's path relative to the project's inbox (what `file_pattern`
/// matches), else its name.
pub fn relative_path(inbox: Option<&str>, path: &Path, file_name: &str) -> String {
    if let Some(inbox) = inbox {
        if let Ok(rel) = path.strip_prefix(inbox) {
            if let Some(s) = rel.to_str() {
                return s.to_string();
            }
        }
    }
    file_name.to_string()
}

async fn connect_target(url: &Secret, project: &str) -> Result<PgConnection, ImportError> {
    let unreachable = |message: String| ImportError::TargetUnreachable {
        project: project.to_string(),
        message: secret::scrub(&message, &[url]),
    };
    // No statement logging: the merge statements are long, and slow by
    // nature on big files; the job row says what happened.
    let opts = store::connect_options(url)
        .map_err(unreachable)?
        .disable_statement_logging();
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "timed out after {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// A successful load (or a duplicate).
struct Loaded {
    sha256: String,
    status: JobStatus,
    counts: Counts,
    note: Option<String>,
    errors: Vec<RowError>,
    errors_total: u64,
}

enum Failure {
    /// The file (or its fit with the table) is wrong: it goes to failed/.
    Bad {
        message: String,
        errors: Vec<RowError>,
        errors_total: u64,
        counts: Counts,
    },
    /// The target misbehaved (connection lost, serialization failure…).
    Transient(String),
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
}

/// SQLSTATE classes worth a retry: connection exception, transaction
/// rollback (serialization, deadlock), insufficient resources, operator
/// intervention, system error.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            ["08", "40", "53", "57", "58"]
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
        return Failure::Transient(e.to_string());
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
    Failure::bad(match line {
        Some(l) => format!("{file}:{l}: {msg}"),
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

/// The opened file and its first record(s).
struct Opened {
    records: reader::Records,
    header: Option<Vec<String>>,
    first: Option<csv::ByteRecord>,
    width: usize,
}

fn open_file(
    path: &Path,
    file: &str,
    o: &ResolvedOptions,
    bytes: Arc<AtomicU64>,
    hash: Option<reader::StreamHash>,
) -> Result<Opened, String> {
    let mut records =
        reader::open(path, o, bytes, hash).map_err(|e| format!("{file}: cannot open: {e}"))?;
    let mut first = csv::ByteRecord::new();
    let got = records
        .read_byte_record(&mut first)
        .map_err(|e| pipeline::csv_error(file, &e))?;
    if o.header {
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
    } else {
        let width = if got { first.len() } else { 0 };
        Ok(Opened {
            records,
            header: None,
            first: got.then_some(first),
            width,
        })
    }
}

const STAGE: &str = "pg_temp.cpi_stage";

async fn load(
    conn: &mut PgConnection,
    ctx: &Ctx,
    progress: Option<&(dyn Fn(Progress) + Send + Sync)>,
) -> Result<Loaded, Failure> {
    let file = ctx.file.as_str();
    let o = &ctx.opts;
    let table = o.table.quoted();
    let db = |e: sqlx::Error| db_failure(file, e, None);

    let started = std::time::Instant::now();
    target::ensure_ledger(conn).await.map_err(db)?;
    let mut tx = conn.begin().await.map_err(db)?;
    // Timestamps without an offset mean UTC, whatever the server's setting.
    sqlx::query("SET LOCAL TimeZone = 'UTC'")
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    target::lock_table(&mut tx, &table).await.map_err(db)?;
    if let Some(sha) = &ctx.sha256 {
        if let Some(prev) = target::ledger_lookup(&mut tx, &ctx.project, &table, sha)
            .await
            .map_err(db)?
        {
            let _ = tx.rollback().await;
            return Ok(duplicate(file, &o.table, sha, &prev));
        }
    }

    let bytes = Arc::new(AtomicU64::new(0));
    let rows = Arc::new(AtomicU64::new(0));
    let stream_hash = ctx.sha256.is_none().then(reader::new_stream_hash);
    let opened = {
        let (p, f, oo, b, h) = (
            ctx.path.clone(),
            file.to_string(),
            o.clone(),
            bytes.clone(),
            stream_hash.clone(),
        );
        tokio::task::spawn_blocking(move || open_file(&p, &f, &oo, b, h))
            .await
            .map_err(|e| Failure::bad(e.to_string()))?
            .map_err(Failure::bad)?
    };

    let columns = match target::columns(&mut tx, &table).await.map_err(db)? {
        Some(c) => c,
        None if o.create_table => {
            let Some(header) = &opened.header else {
                return Err(Failure::bad(format!(
                    "{file}: table {} does not exist, and create_table needs a header to name its columns",
                    o.table
                )));
            };
            let cols = mapping::columns_from_header(header, &o.columns)
                .map_err(|e| Failure::bad(format!("{file}: {e}")))?;
            sqlx::query(&sql::create_table(&table, &cols, &o.primary_key))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            target::columns(&mut tx, &table)
                .await
                .map_err(db)?
                .unwrap_or_default()
        }
        None => {
            return Err(Failure::bad(format!(
                "table {} does not exist in the target database (create_table is false)",
                o.table
            )))
        }
    };
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let key_ok = |k: &String| mapping::find_column(&names, k).ok().flatten();
    // The key as the table spells it.
    let key: Vec<String> = o
        .primary_key
        .iter()
        .filter_map(|k| key_ok(k).map(|i| names[i].clone()))
        .collect();
    let table_label = format!("table {}", o.table);
    let m = mapping::map_columns(&mapping::MappingInput {
        header: opened.header.as_deref(),
        first_width: opened.width,
        table_columns: &names,
        renames: &o.columns,
        primary_key: &o.primary_key,
        extra_columns: o.extra_columns,
        missing_columns: o.missing_columns,
        table: &table_label,
    })
    .map_err(|e| Failure::bad(format!("{file}: {}", e.join("; "))))?;
    if matches!(o.mode, Mode::Upsert | Mode::Sync) && key.is_empty() {
        return Err(Failure::bad(format!(
            "mode {} needs a primary_key",
            o.mode.as_str()
        )));
    }

    let fields: Vec<(usize, encode::ColumnSpec)> = m
        .fields
        .iter()
        .map(|&(fi, ci)| (fi, columns[ci].clone()))
        .collect();
    let col_owned: Vec<String> = fields.iter().map(|(_, c)| c.name.clone()).collect();
    let col_names: Vec<&str> = col_owned.iter().map(String::as_str).collect();
    let format = if fields.iter().any(|(_, c)| c.ty == ColType::Other) {
        CopyFormat::Text
    } else {
        CopyFormat::Binary
    };
    let key_refs: Vec<&str> = key.iter().map(String::as_str).collect();
    // Append, and replace without a key, COPY straight into the table;
    // the merging modes go through a staging table.
    let staged = match o.mode {
        Mode::Append => false,
        Mode::Replace => !key.is_empty(),
        Mode::Upsert | Mode::Sync => true,
    };
    let mut counts = Counts::default();
    if o.mode == Mode::Replace {
        // DELETE, not TRUNCATE: readers keep seeing the old rows until
        // commit, and no ACCESS EXCLUSIVE lock is taken.
        let r = sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        counts.rows_deleted = r.rows_affected();
    }
    let copy_sql = if staged {
        if names.iter().any(|n| n == sql::ROW_COLUMN) {
            return Err(Failure::bad(format!(
                "table {} has a column named {}, which cpi reserves",
                o.table,
                sql::ROW_COLUMN
            )));
        }
        // For the merge: the staging table in memory where it fits, hash
        // joins of a million rows without spilling, and no JIT compile
        // for a statement whose cost is writing rows.
        // One statement each, through `query`: the future of `raw_sql` is
        // not provably Send, which would keep the import off tokio::spawn.
        for set in [
            "SET LOCAL temp_buffers = '128MB'",
            "SET LOCAL work_mem = '128MB'",
            "SET LOCAL jit = off",
        ] {
            sqlx::query(set).execute(&mut *tx).await.map_err(db)?;
        }
        sqlx::query(&sql::create_stage(STAGE, &table, &col_names))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut c = col_names.clone();
        c.push(sql::ROW_COLUMN);
        sql::copy_statement(STAGE, &c, format)
    } else {
        sql::copy_statement(&table, &col_names, format)
    };

    // Parse on a thread of its own, send from here: both cores busy, and
    // at most a few buffers in flight whatever the file size.
    let spec = pipeline::Spec {
        file: file.to_string(),
        format,
        fields,
        width: m.width,
        nulls: o.null.clone(),
        trim: o.trim,
        on_error: o.on_error,
        max_errors: o.max_errors,
        row_number: staged,
        first: opened.first,
        key_fields: key
            .iter()
            .filter_map(|k| col_names.iter().position(|c| c == k))
            .collect(),
    };
    let (tx_buf, mut rx_buf) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let producer = {
        let rows = rows.clone();
        let records = opened.records;
        tokio::task::spawn_blocking(move || {
            pipeline::produce(records, spec, |b| tx_buf.blocking_send(b).is_ok(), rows)
        })
    };
    let mut copy = match (*tx).copy_in_raw(&copy_sql).await {
        Ok(c) => c,
        Err(e) => {
            drop(rx_buf);
            let _ = producer.await;
            return Err(db(e));
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
                rows: rows.load(Ordering::Relaxed),
                bytes: bytes.load(Ordering::Relaxed),
                total_bytes: ctx.size,
            });
        }
    }
    drop(rx_buf);
    let summary = producer
        .await
        .map_err(|e| Failure::bad(format!("{file}: the parser failed: {e}")))?;
    counts.rows_read = summary.rows_read;
    counts.rows_rejected = summary.rows_rejected;
    let bad = |message: String, s: &pipeline::Summary, counts: Counts| Failure::Bad {
        message,
        errors: s.errors.clone(),
        errors_total: s.errors_total,
        counts: Counts {
            rows_inserted: 0,
            rows_updated: 0,
            rows_deleted: 0,
            ..counts
        },
    };
    if let Some(e) = send_error {
        // The connection is unusable; the server rolls the transaction back.
        drop(copy);
        return Err(db_failure(file, e, Some(&summary.lines)));
    }
    if let Some(fatal) = &summary.fatal {
        let _ = copy.abort("cpi: the file is rejected").await;
        let _ = tx.rollback().await;
        return Err(bad(fatal.clone(), &summary, counts));
    }
    let copied = match copy.finish().await {
        Ok(n) => n,
        Err(e) => {
            let _ = tx.rollback().await;
            return Err(match db_failure(file, e, Some(&summary.lines)) {
                Failure::Bad { message, .. } => bad(message, &summary, counts),
                t => t,
            });
        }
    };

    let copy_done = started.elapsed();
    let merged: Result<(), sqlx::Error> = async {
        match o.mode {
            Mode::Append => counts.rows_inserted = copied,
            Mode::Replace if !staged => counts.rows_inserted = copied,
            Mode::Replace => {
                let r = sqlx::query(&sql::insert_all(
                    &table,
                    STAGE,
                    &col_names,
                    &key_refs,
                    summary.keys_unique,
                ))
                .execute(&mut *tx)
                .await?;
                counts.rows_inserted = r.rows_affected();
            }
            Mode::Upsert | Mode::Sync => {
                // No ANALYZE of the staging table: the planner estimates its
                // row count from its size, which is what picks the hash
                // anti-join; sampling would cost more than it tells.
                let merge_cols: Vec<sql::MergeColumn> = col_names
                    .iter()
                    .map(|n| sql::MergeColumn {
                        name: n.to_string(),
                        compare_as_text: columns
                            .iter()
                            .find(|c| c.name == *n)
                            .is_none_or(|c| !c.ty.has_equality()),
                    })
                    .collect();
                let (ins, upd): (i64, i64) = sqlx::query_as(&sql::upsert(
                    &table,
                    STAGE,
                    &merge_cols,
                    &key_refs,
                    summary.keys_unique,
                ))
                .fetch_one(&mut *tx)
                .await?;
                counts.rows_inserted = ins as u64;
                counts.rows_updated = upd as u64;
                if o.mode == Mode::Sync {
                    let r = sqlx::query(&sql::delete_missing(&table, STAGE, &key_refs))
                        .execute(&mut *tx)
                        .await?;
                    counts.rows_deleted = r.rows_affected();
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = merged {
        let _ = tx.rollback().await;
        return Err(match db_failure(file, e, None) {
            Failure::Bad { message, .. } => bad(message, &summary, counts),
            t => t,
        });
    }

    let sha256 = match (&ctx.sha256, &stream_hash) {
        (Some(sha), _) => sha.clone(),
        // The parser read the whole file: its hash is complete.
        (None, Some(h)) if bytes.load(Ordering::Relaxed) == ctx.size => {
            reader::finish_stream_hash(h).unwrap_or_default()
        }
        // It stopped short of the end (a gzip trailer, say): hash anew.
        _ => {
            let p = ctx.path.clone();
            tokio::task::spawn_blocking(move || reader::hash_file(&p))
                .await
                .map_err(|e| Failure::bad(format!("{file}: {e}")))?
                .map_err(|e| Failure::bad(format!("{file}: cannot read: {e}")))?
                .0
        }
    };
    let fresh = target::ledger_insert(
        &mut tx,
        &ctx.project,
        &table,
        &sha256,
        ctx.job_id,
        file,
        summary.rows_loaded,
    )
    .await
    .map_err(db)?;
    if !fresh {
        // The same content is in the ledger (imported before, its size
        // unknown to the management database; or committed meanwhile):
        // everything loaded here is rolled back.
        let prev = target::ledger_lookup(&mut tx, &ctx.project, &table, &sha256)
            .await
            .map_err(db)?;
        let _ = tx.rollback().await;
        return Ok(match prev {
            Some(prev) => duplicate(file, &o.table, &sha256, &prev),
            None => Loaded {
                sha256,
                status: JobStatus::Duplicate,
                counts: Counts::default(),
                note: Some(format!(
                    "{file}: the same content was already imported into {}",
                    o.table
                )),
                errors: Vec::new(),
                errors_total: 0,
            },
        });
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
    let note = (summary.rows_rejected > 0).then(|| {
        format!(
            "{file}: {} bad row(s) skipped (on_error: skip_rows)",
            summary.rows_rejected
        )
    });
    Ok(Loaded {
        sha256,
        status: JobStatus::Succeeded,
        counts,
        note,
        errors: summary.errors,
        errors_total: summary.errors_total,
    })
}

fn duplicate(
    file: &str,
    table: &crate::config::TableName,
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
    }

    #[test]
    fn relative_to_inbox() {
        let p = Path::new("/in/sub/a.csv");
        assert_eq!(relative_path(Some("/in"), p, "a.csv"), "sub/a.csv");
        assert_eq!(relative_path(Some("/other"), p, "a.csv"), "a.csv");
        assert_eq!(relative_path(None, p, "a.csv"), "a.csv");
    }
}
