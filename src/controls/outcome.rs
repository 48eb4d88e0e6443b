//! What the controls answer: the job they queued or stopped, or why they
//! did not; and the two things every control writes the same way, a
//! failed job's report and the id prefix of a taken name.

use std::path::PathBuf;

use uuid::Uuid;

use crate::inbox;
use crate::store::jobs::{Job, JobError};
use crate::store::queue;

/// Why a retry (or setting a retried file aside) did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The job cannot be retried (or read).
    #[error(transparent)]
    Job(#[from] JobError),
    /// Another file of the same name waits in the inbox.
    #[error("job {id}: {path} already exists (another file of the same name in the inbox): move one of them away, then retry")]
    InboxTaken {
        /// The job.
        id: Uuid,
        /// The name in the inbox.
        path: String,
    },
    /// An object cannot be copied or moved in its store.
    #[error("job {id}: {source}")]
    Store {
        /// The job.
        id: Uuid,
        /// Why.
        #[source]
        source: crate::object_storage::StorageError,
    },
    /// The file cannot be moved back into the inbox (or aside after it).
    #[error("job {id}: cannot move {from} to {to}: {source}")]
    Move {
        /// The job.
        id: Uuid,
        /// Where the file is.
        from: String,
        /// Where it was to go.
        to: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A job put back in the queue by a retry, or queued by a replay.
#[derive(Debug, Clone)]
pub struct Retried {
    /// The job, queued, pointing at its file.
    pub job: Job,
    /// Whether the file came back from `failed/` into the inbox.
    pub returned: bool,
}

/// A job a cancel stopped, or asked to stop.
#[derive(Debug, Clone)]
pub struct Cancel {
    /// The job as it was read (failed with the cancel's text, when it was
    /// queued).
    pub job: Job,
    /// Failed now (queued), or requested (running: its worker stops it at
    /// its next lease renewal, within a third of the lease).
    pub cancelled: queue::Cancelled,
    /// Where the queued job's file went (`failed/`, with its report).
    pub moved: Option<PathBuf>,
}

/// `<name>.error.json` for a failed job, from its row (as a daemon worker
/// writes it from the outcome).
pub(crate) fn report_of(job: &Job) -> Vec<u8> {
    let details = job.error_details.as_ref();
    let report = inbox::ErrorReport {
        job_id: job.id.to_string(),
        project: &job.project_name,
        file: &job.file_name,
        error: job.error.as_deref(),
        errors: details
            .and_then(|d| d.get("errors").cloned())
            .unwrap_or_else(|| serde_json::json!([])),
        errors_total: details
            .and_then(|d| d.get("errors_total"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        checks: details
            .and_then(|d| d.get("checks").cloned())
            .unwrap_or_else(|| serde_json::json!([])),
    };
    serde_json::to_vec_pretty(&report).unwrap_or_default()
}

/// The job id's prefix that names taken names get (as the daemon's moves).
pub(crate) fn short(id: Uuid) -> String {
    id.to_string()[..8].to_string()
}
