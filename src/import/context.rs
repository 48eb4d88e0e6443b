//! What the steps of a load share: the file and its options (`Ctx`),
//! the verdict of a load that committed (`Loaded`), and progress.

use uuid::Uuid;

use crate::config::ResolvedOptions;
use crate::import::pipeline::RowError;
use crate::import::reader;
use crate::store::jobs::{Counts, JobStatus};

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
pub(crate) struct Ctx {
    pub job_id: Uuid,
    pub project: String,
    pub source: reader::Source,
    pub file: String,
    /// Known before loading only for a likely duplicate; otherwise
    /// computed while the file streams.
    pub sha256: Option<String>,
    pub size: u64,
    /// The file's mtime when the job started (`None` for an object).
    pub modified: Option<std::time::SystemTime>,
    pub opts: ResolvedOptions,
    /// A replay (`cpi jobs replay`): the ledger's entry of the same content
    /// is superseded instead of making the file a duplicate.
    pub replay: bool,
    /// `cpi check`: everything an import does, in a transaction that is
    /// always rolled back; nothing written outside it (no ledger row, no
    /// rejects, no table of cpi's own created first).
    pub dry_run: bool,
}

/// A successful load (or a duplicate).
pub(crate) struct Loaded {
    pub sha256: String,
    pub status: JobStatus,
    pub counts: Counts,
    pub note: Option<String>,
    pub errors: Vec<RowError>,
    pub errors_total: u64,
    /// Every check's verdict (none failed with `error`).
    pub checks: Vec<crate::import::checks::CheckResult>,
    /// The `CREATE TABLE` the load ran, when the table was missing.
    pub created: Option<String>,
    /// A batch's shared pass leaves the ledger row to the batch, which
    /// writes the pass's rows in one statement: the rows it records.
    pub ledger_rows: Option<u64>,
}
