//! `GET /jobs/{id}/rejected`: the rows a job skipped and kept in its
//! target's `cpi.rejected_rows` (`rejects: table`), read with the
//! project's connection, as `cpi jobs show --rejected` lists them. They
//! hold row values, so the route needs `read_secrets` on the job's project.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::docs::{IdErrors, IdParam, TokenErrors};
use super::error::{ApiError, ErrorBody};
use super::extract::{IdPath, QueryParams};
use super::jobs::{db_error, KIND};
use super::state::AppState;
use crate::secret;
use crate::store::jobs::{self, Job};

/// The most rows one answer lists.
const MAX_ROWS: u32 = 1000;

/// `?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RejectedQuery {
    /// The first this many rows by line (default 20, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One row a job skipped.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedRow {
    /// The file line it starts on.
    pub line: i64,
    /// Its fields, written again as CSV in the file's dialect.
    pub raw: String,
    /// Why it was skipped.
    pub error: String,
}

/// The rows a job kept, and how many it kept in all.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedRows {
    /// How many rows the job kept in `cpi.rejected_rows`.
    pub total: i64,
    /// The first `limit` of them, by line.
    pub rows: Vec<RejectedRow>,
}

#[utoipa::path(
    get, path = "/jobs/{id}/rejected", operation_id = "get_job_rejected_rows", tag = "jobs",
    params(IdParam<Job>, RejectedQuery),
    responses(
        (status = 200, description = "The rows the job skipped (`on_error: skip_rows`) and kept in its target's `cpi.rejected_rows` (`rejects: table`), first by line; none (total 0) when the target has no such table. They hold row values", body = RejectedRows),
        (status = 502, description = "The job's target database cannot be read (the message says why, without its URL)", body = ErrorBody),
        IdErrors<Job>,
        TokenErrors,
    )
)]
pub async fn rejected(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    QueryParams(q): QueryParams<RejectedQuery>,
) -> Result<Json<RejectedRows>, ApiError> {
    let job = jobs::get(&state.pool, id).await.map_err(db_error)?;
    let job = job.ok_or(ApiError::NotFound { kind: KIND, id })?;
    let limit = i64::from(q.limit.unwrap_or(20).min(MAX_ROWS));
    let (rows, total) = crate::import::job::kept_rejects(&state.pool, &job, limit)
        .await
        .map_err(|e| ApiError::Malformed {
            status: axum::http::StatusCode::BAD_GATEWAY,
            message: secret::scrub_credentials(&e.to_string()),
        })?;
    Ok(Json(RejectedRows {
        total,
        rows: rows
            .into_iter()
            .map(|r| RejectedRow {
                line: r.line,
                raw: r.raw,
                error: secret::scrub_known(&r.error),
            })
            .collect(),
    }))
}
