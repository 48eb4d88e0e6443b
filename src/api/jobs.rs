//! `/jobs`: the import jobs, read-only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Authorization, Authorized};
use super::docs::{Addressed, IdErrors, IdParam, TokenErrors, WindowErrors};
use super::error::{ApiError, ErrorBody};
use super::extract::{newest_first_window, IdPath, QueryParams};
use super::guard::ActionAudit;
use super::state::AppState;
use crate::controls::{self, ControlError};
use crate::secret;
use crate::store::jobs::{self, Job, JobError, JobStatus, ListFilter};
use crate::store::queue;

pub(super) const KIND: &str = "job";

impl Addressed for Job {
    const ID: &'static str = "Job id";
    const NOUN: &'static str = KIND;
}

/// The importer scrubs its errors; this is the second line of defence,
/// for messages written by anything else.
fn scrubbed(mut job: Job) -> Job {
    job.error = job.error.map(|e| secret::scrub_credentials(&e));
    job
}

/// What an anonymous client may see of a job: no row values (the file's
/// error and the row errors may quote them), no file path, no worker
/// (host names). Counts, statuses and times stay.
fn anonymous(mut job: Job) -> Job {
    if job.error.is_some() {
        job.error = Some(HIDDEN.into());
    }
    if let Some(serde_json::Value::Object(d)) = &mut job.error_details {
        d.remove("errors");
        // A check's sample rows are row values; its name and counts stay.
        if let Some(serde_json::Value::Array(checks)) = d.get_mut("checks") {
            for c in checks
                .iter_mut()
                .filter_map(serde_json::Value::as_object_mut)
            {
                c.remove("samples");
            }
        }
    }
    job.file_path = String::new();
    job.worker = None;
    job
}

/// What replaces a job's error for anonymous clients.
const HIDDEN: &str = "hidden: send the API token to see the error";

/// The job as `auth` may see it.
fn shown(job: Job, auth: &Authorization) -> Job {
    let job = scrubbed(job);
    if auth.sees_secrets_of(&job.project_name) {
        job
    } else {
        anonymous(job)
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// Only the jobs of this project (by name).
    pub project: Option<String>,
    #[param(inline)]
    pub status: Option<JobStatus>,
    /// At most this many jobs (default 50, at most 500).
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<u32>,
    #[param(minimum = 0, maximum = 2147483647)]
    pub offset: Option<u32>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Jobs matching the filter, across all pages.
    pub total: i64,
    pub limit: u32,
    pub offset: u32,
}

#[utoipa::path(
    get, path = "/jobs", operation_id = "list_jobs", tag = "jobs",
    params(JobsQuery),
    responses(
        (status = 200, description = "A page of import jobs, newest first. Without the API token: no row values (`error` hidden, `error_details.errors` left out), `file_path` empty, no `worker`", body = JobPage, links(
            ("GetFirstJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/jobs/0/id")))),
        )),
        WindowErrors,
    )
)]
pub async fn list(
    auth: Authorization,
    State(state): State<AppState>,
    QueryParams(q): QueryParams<JobsQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let (limit, offset) = newest_first_window(q.limit, q.offset)?;
    if q.project.as_deref().is_some_and(|p| p.contains('\0')) {
        return Err(ApiError::invalid(
            "project: must not contain NUL characters",
        ));
    }
    // A caller bound to some projects lists their jobs only.
    let among = auth.readable_projects(&state.pool).await?;
    let filter = ListFilter {
        project: q.project,
        status: q.status,
        among,
        limit: i64::from(limit),
        offset: i64::from(offset),
    };
    let total = jobs::count(&state.pool, &filter).await.map_err(db_error)?;
    let jobs = jobs::list(&state.pool, &filter).await.map_err(db_error)?;
    Ok(Json(JobPage {
        jobs: jobs.into_iter().map(|j| shown(j, &auth)).collect(),
        total,
        limit,
        offset,
    }))
}

#[utoipa::path(
    get, path = "/jobs/{id}", operation_id = "get_job", tag = "jobs",
    params(IdParam<Job>),
    responses(
        (status = 200, description = "The job (without the API token, redacted as in GET /jobs)", body = Job),
        IdErrors<Job>,
    )
)]
pub async fn get(
    auth: Authorization,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Job>, ApiError> {
    let job = jobs::get(&state.pool, id).await.map_err(db_error)?;
    let job = job.ok_or(ApiError::NotFound { kind: KIND, id })?;
    Ok(Json(shown(job, &auth)))
}

/// Why an operator acts on a job: recorded with the action's event.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReasonQuery {
    /// Why (written to the action's event row, with who: the API token).
    pub reason: Option<String>,
}

/// Who acts through the API: its one token.
pub(super) const API_ACTOR: &str = "api";

#[utoipa::path(
    post, path = "/jobs/{id}/retry", operation_id = "retry_job", tag = "jobs",
    params(IdParam<Job>, ReasonQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job, queued again: a worker of `cpi run` picks it up. A file set aside in `failed/` is back in the inbox (its old `.error.json` removed) and ends in the top-level `processed/` or `failed/`", body = Job),
        IdErrors<Job>,
        TokenErrors,
        (status = 409, description = "Not failed, its file is gone, or another file of its name waits in the inbox; nothing changed", body = ErrorBody),
    )
)]
pub async fn retry(
    _: Authorized,
    audit: ActionAudit,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    QueryParams(q): QueryParams<ReasonQuery>,
) -> Result<Json<Job>, ApiError> {
    control(&state, audit, id, q.reason.as_deref(), Control::Retry).await
}

#[utoipa::path(
    post, path = "/jobs/{id}/replay", operation_id = "replay_job", tag = "jobs",
    params(IdParam<Job>, ReasonQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A new job, queued, that imports the succeeded (or duplicate) job's file again: the file is back in the inbox from `processed/`, and its import supersedes the target ledger's entry (moved to `cpi.superseded_files`) instead of calling it a duplicate. `reason` is required", body = Job),
        (status = 400, description = "No `reason` given", body = ErrorBody),
        IdErrors<Job>,
        TokenErrors,
        (status = 409, description = "Not succeeded or duplicate, its file is gone from `processed/`, another job of the file is active, or another file of its name waits in the inbox; nothing changed", body = ErrorBody),
    )
)]
pub async fn replay(
    _: Authorized,
    audit: ActionAudit,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    QueryParams(q): QueryParams<ReasonQuery>,
) -> Result<Json<Job>, ApiError> {
    let Some(reason) = q.reason.as_deref().filter(|r| !r.trim().is_empty()) else {
        return Err(ApiError::invalid(
            "a replay needs a reason: POST /jobs/{id}/replay?reason=…".to_string(),
        ));
    };
    control(&state, audit, id, Some(reason), Control::Replay).await
}

#[utoipa::path(
    post, path = "/jobs/{id}/cancel", operation_id = "cancel_job", tag = "jobs",
    params(IdParam<Job>, ReasonQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A queued job: failed now (`cancelled by api[: reason]`), its file in `failed/` with its report. A running job: `status` is still `running` and its worker stops it at its next lease renewal (within a third of `--lease`): the import rolls back and the file goes to `failed/` the same way. A `job.cancelled` event (who: `api`, why: `reason`)", body = Job),
        IdErrors<Job>,
        TokenErrors,
        (status = 409, description = "Not queued or running (or it started or finished meanwhile); nothing changed", body = ErrorBody),
    )
)]
pub async fn cancel(
    _: Authorized,
    audit: ActionAudit,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    QueryParams(q): QueryParams<ReasonQuery>,
) -> Result<Json<Job>, ApiError> {
    control(&state, audit, id, q.reason.as_deref(), Control::Cancel).await
}

/// The control of one job `POST /jobs/{id}/retry`, `/replay` or `/cancel`
/// runs.
enum Control {
    Retry,
    Replay,
    Cancel,
}

/// Runs a control on job `id`, its audit row written with the job's change
/// (by the control's own transaction), and answers with the job.
async fn control(
    state: &AppState,
    audit: ActionAudit,
    id: uuid::Uuid,
    reason: Option<&str>,
    which: Control,
) -> Result<Json<Job>, ApiError> {
    let row = audit.row(StatusCode::OK, None);
    let by = queue::Actor {
        who: API_ACTOR,
        reason,
        audit: Some(&row),
    };
    let job = match which {
        Control::Retry => controls::retry(&state.pool, id, false, &by)
            .await
            .map(|d| d.job),
        Control::Replay => controls::replay(&state.pool, id, &by).await.map(|d| d.job),
        Control::Cancel => controls::cancel(&state.pool, id, &by).await.map(|d| d.job),
    }
    .map_err(control_error)?;
    audit.committed();
    Ok(Json(scrubbed(job)))
}

/// Which failed jobs `POST /jobs/retry` takes, and why.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BulkRetryQuery {
    /// Only this project's jobs.
    pub project: Option<String>,
    /// Only this target table's jobs (`t` or `schema.t`).
    pub table: Option<String>,
    /// Only jobs that failed at or after this time (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only jobs that failed before this time (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Why (written to each job's `job.retried` event, with who).
    pub reason: Option<String>,
}

/// What a bulk retry did, job by job.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkRetry {
    /// The jobs queued again, oldest verdict first.
    pub retried: Vec<Job>,
    /// The jobs that could not be retried (nothing changed for them).
    pub refused: Vec<Refused>,
}

/// A job a bulk retry left as it was, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Refused {
    /// The job.
    pub id: uuid::Uuid,
    /// Why (its file is gone, its name is taken in the inbox, …).
    pub error: String,
}

#[utoipa::path(
    post, path = "/jobs/retry", operation_id = "retry_failed_jobs", tag = "jobs",
    params(BulkRetryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every failed job the filters name (oldest verdict first, at most 1,000 a call), each retried as `POST /jobs/{id}/retry` does; those that cannot be retried are listed with why and left as they were", body = BulkRetry),
        TokenErrors,
    )
)]
pub async fn retry_failed(
    _: Authorized,
    State(state): State<AppState>,
    QueryParams(q): QueryParams<BulkRetryQuery>,
) -> Result<Json<BulkRetry>, ApiError> {
    // One row for the request, written by the enforcing layer once
    // answered: each job's retry is its own transaction.
    let by = queue::Actor {
        who: API_ACTOR,
        reason: q.reason.as_deref(),
        audit: None,
    };
    let filter = queue::FailedFilter {
        project: q.project,
        table: q.table,
        since: q.since,
        until: q.until,
    };
    let results = controls::retry_failed(&state.pool, &filter, &by)
        .await
        .map_err(control_error)?;
    let mut out = BulkRetry {
        retried: Vec::new(),
        refused: Vec::new(),
    };
    for (id, r) in results {
        match r {
            Ok(r) => out.retried.push(scrubbed(r.job)),
            Err(e) => out.refused.push(Refused {
                id,
                error: secret::scrub_credentials(&e.to_string()),
            }),
        }
    }
    Ok(Json(out))
}

/// The answer for a control that did not happen: 404, 409 when the job or
/// its file is not in a state for it (nothing changed), 500 otherwise.
fn control_error(e: ControlError) -> ApiError {
    match e {
        ControlError::Job(JobError::NotFound(id)) => ApiError::NotFound { kind: KIND, id },
        e @ (ControlError::Job(
            JobError::NotRetryable { .. }
            | JobError::NotReplayable { .. }
            | JobError::NotCancellable { .. }
            | JobError::CancelRaced { .. }
            | JobError::ActiveMeanwhile { .. }
            | JobError::FileGone { .. }
            | JobError::ChangedMeanwhile { .. },
        )
        | ControlError::InboxTaken { .. }) => ApiError::Malformed {
            status: axum::http::StatusCode::CONFLICT,
            message: secret::scrub_credentials(&e.to_string()),
        },
        ControlError::Job(e) => db_error(e),
        e @ (ControlError::Move { .. } | ControlError::Store { .. }) => {
            tracing::warn!(error = %e, "a job control cannot move its file");
            ApiError::Internal(secret::scrub_credentials(&e.to_string()))
        }
    }
}

pub(super) fn db_error(e: JobError) -> ApiError {
    match e {
        JobError::Db(e) => e.into(),
        other => ApiError::invalid(other.to_string()),
    }
}
