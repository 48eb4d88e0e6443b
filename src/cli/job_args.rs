//! The grammar of `cpi jobs` (list, show, retry, cancel, replay), beside
//! the rest of the command line in [`super::args`].

use clap::Subcommand;

use super::format::Output;
use crate::id_prefix::IdPrefix;
use crate::store::jobs::JobStatus;

/// `cpi jobs ...`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List import jobs, newest first.
    List {
        /// Only this project's jobs.
        #[arg(long)]
        project: Option<String>,
        /// queued, running, succeeded, failed or duplicate.
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Table, JSON or YAML.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show one job with every error.
    Show {
        /// The job's id, or its first 6 or more hex digits.
        id: IdPrefix,
        /// YAML (text and yaml) or JSON.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
        /// Also list the rows the job kept in the target's
        /// `cpi.rejected_rows` (`rejects: table`): the first N by line.
        /// They hold the rows' values.
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20")]
        rejected: Option<i64>,
    },
    /// Run a failed job's file again (when it still exists).
    Retry {
        /// The job's id, or its first 6 or more hex digits.
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        id: Option<IdPrefix>,
        /// Also take over a job stuck in `running` (its worker died). Safe
        /// even if it did not: the target's ledger keeps the import single.
        #[arg(long, conflicts_with = "failed")]
        force: bool,
        /// Retry every failed job the filters below name (oldest first, at
        /// most 1,000), for the daemon's workers to run.
        #[arg(long)]
        failed: bool,
        /// With --failed: only this project's jobs.
        #[arg(long, requires = "failed")]
        project: Option<String>,
        /// With --failed: only this target table's jobs (`t` or `schema.t`).
        #[arg(long, requires = "failed")]
        table: Option<String>,
        /// With --failed: only jobs that failed since then (`2h` ago, or
        /// an RFC 3339 time).
        #[arg(long, requires = "failed", value_parser = parse_when)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// With --failed: only jobs that failed before then (`30m` ago, or
        /// an RFC 3339 time).
        #[arg(long, requires = "failed", value_parser = parse_when)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Why (recorded with who in the job's `job.retried` event).
        #[arg(long)]
        reason: Option<String>,
        /// One line, or JSON or YAML.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Cancel a queued or running job: it fails (a running import rolls
    /// back) and its file goes to `failed/` with a report saying so.
    Cancel {
        /// The job's id, or its first 6 or more hex digits.
        id: IdPrefix,
        /// Why (recorded with who in the job's error and `job.cancelled` event).
        #[arg(long)]
        reason: Option<String>,
        /// One line, or JSON or YAML.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Import a succeeded (or duplicate) job's file again, on purpose: a
    /// new job whose import supersedes the target ledger's entry of the
    /// file (after the table was dropped, say). Runs here, now.
    Replay {
        /// The job's id, or its first 6 or more hex digits.
        id: IdPrefix,
        /// Why (required; recorded with who in the `job.replayed` event).
        #[arg(long)]
        reason: String,
        /// One line, or JSON or YAML.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
}

/// `2h` (that long ago) or an RFC 3339 time.
fn parse_when(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(ago) = humantime::parse_duration(s) {
        let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
        return Ok(chrono::Utc::now() - ago);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("{s:?} is neither a duration (2h) nor an RFC 3339 time"))
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    JobStatus::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of queued, running, succeeded, failed, duplicate"))
}
