//! The import engine (DESIGN §5): one CSV file into its project's target
//! table through COPY, exactly once, all or nothing.
//!
//! [`run_job`] is the whole of it, for the daemon and `cpi import` alike;
//! [`error_policy`] says what to do when it cannot reach a verdict.
//!
//! - [`job`]: the job lifecycle (start, checks, connect, load, finish).
//! - [`dry_run`]: `cpi check`: a file through the whole load in a transaction always rolled back; its verdict and report.
//! - [`ready`]: a file made ready to load (project, target, options, hash), and its verdict from the load.
//! - [`batch`]: a batch of one table's files in one target transaction, a savepoint per file.
//! - [`options`]: the file's options, from its project's config and its path (pure).
//! - [`load`]: one transaction: lock, COPY, merge per mode, ledger, commit. Its steps:
//!   - [`open`]: the file opened for a pass (`auto` options, reader, header, counters, sha256).
//!   - [`prepare`]: the target table created or extended, the file's columns planned.
//!   - [`copy`]: the staging table and the COPY of the rows; what a COPY error names.
//!   - [`gate`]: the checks run on the staged rows before the merge; an error rolls the file back.
//!   - [`merge`]: staged rows → table per mode; the row to blame when the merge fails.
//!   - [`ledger`]: the file's ledger row, or the duplicate it turns out to be.
//!   - [`failure`]: why a load did not commit (the file's fault, or worth a retry).
//! - [`columns`]: the file against its target table: create or use it, field → column, key, COPY format (pure).
//! - [`checks`]: a file's checks as SQL over the staged rows, and their verdicts (pure).
//! - [`expressions`]: `expression` checks planned by the target's server at apply (EXPLAIN, read-only): a bad one refuses the apply.
//! - [`infer`]: `create_table: infer`, column types from the file's values; [`infer_file`] reads them.
//! - [`error`]: [`ImportError`] and the one [`error_policy`].
//! - [`ragged`]: `ragged_rows`: pad, truncate or refuse a record of another width (pure).
//! - [`reader`]: file → UTF-8 CSV records (gzip, encoding, BOM, dialect).
//! - [`header`]: the header's names as column names: `column_N`, shortened long names (pure).
//! - [`mapping`]: header → target columns (pure).
//! - [`dialect`]: values in the file's spelling → PostgreSQL's (separators, booleans, formats).
//! - [`encode`]: values → COPY binary/text, checked per type (pure); `numeric` and dates in its submodules.
//! - [`pipeline`]: records → COPY buffers, row errors, `on_error`.
//! - [`preamble`]: `skip_lines: auto`, where the field counts become consistent.
//! - [`shape`]: `skip_lines: auto`, `header: auto` and the header's rows, from a sample of records.
//! - [`rejects`]: `rejects: table`, the skipped rows in `cpi.rejected_rows`.
//! - [`sniff`]: `encoding: auto` and the sample of the file's bytes the dialect is chosen on.
//! - [`score`]: `delimiter: auto`, `quote: auto`: CleverCSV's pattern × type score (pure).
//! - [`sql`]: the statements of each mode (pure).
//! - [`target`]: catalog, table lock, ledger.
//! - [`targets`]: target connections kept open between imports.

pub mod batch;
pub mod checks;
pub mod columns;
pub mod context;
pub mod copy;
pub mod dialect;
pub mod dry_run;
pub mod encode;
pub mod error;
pub mod expressions;
pub mod failure;
pub mod gate;
pub mod header;
pub mod infer;
pub mod job;
pub mod ledger;
pub mod load;
pub mod mapping;
pub mod merge;
pub mod open;
pub mod options;
pub mod pipeline;
pub mod preamble;
pub mod prepare;
pub mod ragged;
pub mod reader;
pub mod ready;
pub mod rejects;
pub mod score;
pub mod shape;
pub mod sniff;
pub mod sql;
pub mod target;
pub mod targets;

pub use batch::{run_batch, BatchJob};
pub use context::{Progress, ProgressFn};
pub use error::{config_recheck, error_policy, Action, ImportError};
pub use failure::copy_row_of;
pub use infer::infer_file;
pub use job::{run_created, run_job, run_queued, Unfinished};
pub use options::relative_path;
pub use pipeline::RowError;
pub use ready::{Claim, JobOutcome, Known};
