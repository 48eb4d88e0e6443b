//! `/jobs`: the import jobs, read-only.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::{AppState, IdPath, QueryParams};
use crate::secret;

const KIND: &str = "job";
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Duplicate,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Duplicate => "duplicate",
        }
    }
}

/// One row of `cpi_import_jobs` (DESIGN §2).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Job {
    pub id: Uuid,
    pub project_id: Option<Uuid>,
    pub project_name: String,
    pub connection_id: Option<Uuid>,
    pub file_name: String,
    pub file_path: String,
    pub file_size: Option<i64>,
    pub file_sha256: Option<String>,
    pub target_table: Option<String>,
    pub mode: Option<String>,
    /// queued, running, succeeded, failed or duplicate.
    pub status: String,
    pub rows_read: i64,
    pub rows_inserted: i64,
    pub rows_updated: i64,
    pub rows_deleted: i64,
    pub rows_rejected: i64,
    pub error: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub error_details: Option<Value>,
    pub worker: Option<String>,
    pub attempts: i32,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    /// The importer scrubs its errors; this is the second line of defence,
    /// for messages written by anything else.
    fn scrubbed(mut self) -> Self {
        self.error = self.error.map(|e| secret::scrub_credentials(&e));
        self
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

const JOB_COLUMNS: &str = "id, project_id, project_name, connection_id, file_name, file_path, file_size, file_sha256,
    target_table, mode, status, rows_read, rows_inserted, rows_updated, rows_deleted, rows_rejected, error,
    error_details, worker, attempts, lease_expires_at, created_at, started_at, finished_at";

#[utoipa::path(
    get, path = "/jobs", operation_id = "list_jobs", tag = "jobs",
    params(JobsQuery),
    responses(
        (status = 200, description = "A page of import jobs, newest first", body = JobPage, links(
            ("GetFirstJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/jobs/0/id")))),
        )),
        (status = 400, description = "Malformed query (unknown status, limit over 500, …)", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<JobsQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(ApiError::invalid(format!(
            "limit: at most {MAX_LIMIT}, got {limit}"
        )));
    }
    let offset = q.offset.unwrap_or(0);
    if offset > i32::MAX as u32 {
        return Err(ApiError::invalid(format!(
            "offset: at most {}, got {offset}",
            i32::MAX
        )));
    }
    if q.project.as_deref().is_some_and(|p| p.contains('\0')) {
        return Err(ApiError::invalid(
            "project: must not contain NUL characters",
        ));
    }
    let status = q.status.map(JobStatus::as_str);
    let filter = "($1::text IS NULL OR project_name = $1) AND ($2::text IS NULL OR status = $2)";
    let (total,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM cpi_import_jobs WHERE {filter}"
    ))
    .bind(&q.project)
    .bind(status)
    .fetch_one(&state.pool)
    .await?;
    let jobs: Vec<Job> = sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM cpi_import_jobs WHERE {filter}
          ORDER BY created_at DESC, id LIMIT $3 OFFSET $4"
    ))
    .bind(&q.project)
    .bind(status)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(JobPage {
        jobs: jobs.into_iter().map(Job::scrubbed).collect(),
        total,
        limit,
        offset,
    }))
}

#[utoipa::path(
    get, path = "/jobs/{id}", operation_id = "get_job", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub async fn get(State(state): State<AppState>, IdPath(id): IdPath) -> Result<Json<Job>, ApiError> {
    let job: Option<Job> = sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM cpi_import_jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let job = job.ok_or(ApiError::NotFound { kind: KIND, id })?;
    Ok(Json(job.scrubbed()))
}
