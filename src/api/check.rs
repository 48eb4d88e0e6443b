//! `POST /projects/{name}/check?file=NAME`: the dry run of `cpi check`
//! ([`crate::import::dry_run`]) on the request's body. The body is streamed
//! into a temporary file, at most [`CHECK_MAX_BYTES`], and removed after.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use http_body_util::BodyExt as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;
use utoipa::IntoParams;

use super::auth::Authorized;
use super::docs::TokenErrors;
use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::state::AppState;
use crate::import::dry_run::{check_file, Report, Target};
use crate::import::ImportError;
use crate::secret;

/// The largest body a check takes (64 MiB); a larger file is checked with
/// `cpi check` on the host.
pub const CHECK_MAX_BYTES: u64 = 64 << 20;

/// The file's name.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// The file's name as the project's file patterns see it (e.g.
    /// `orders_2024.csv`): it chooses the table and options.
    pub file: String,
}

#[utoipa::path(
    post, path = "/projects/{name}/check", operation_id = "check_file", tag = "projects",
    params(("name" = String, Path, description = "The project's name"), CheckQuery),
    request_body(content = Vec<u8>, description = "The file's bytes (at most 64 MiB)", content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What an import of the file would do (`verdict`: load, load_with_warnings, fail, duplicate), with its counts, row errors, every check's verdict and samples, and the `CREATE TABLE` it would run. Nothing is written: the import ran in a transaction that was rolled back, and no job was made", body = Report),
        (status = 404, description = "No project has that name", body = ErrorBody),
        (status = 413, description = "The body is over 64 MiB", body = ErrorBody),
        (status = 422, description = "The project cannot import the file: no pattern matches its name, or its config or connection is missing or invalid", body = ErrorBody),
        (status = 502, description = "The target database could not be reached", body = ErrorBody),
        TokenErrors,
    )
)]
pub async fn check(
    _: Authorized,
    State(state): State<AppState>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<CheckQuery>,
    body: Body,
) -> Result<Json<Report>, ApiError> {
    if q.file.is_empty() || q.file.contains('/') || q.file.contains('\0') {
        return Err(ApiError::invalid("file: a file name, without a folder"));
    }
    let target = Target::applied(&state.pool, &name).await.map_err(refused)?;
    let dir = tempfile::tempdir().map_err(|e| ApiError::Internal(e.to_string()))?;
    let path = dir.path().join(&q.file);
    receive(body, &path).await?;
    let report = check_file(&target, &path, &q.file).await.map_err(refused)?;
    Ok(Json(report))
}

/// Writes the body to `path`, refusing it past [`CHECK_MAX_BYTES`].
async fn receive(mut body: Body, path: &std::path::Path) -> Result<(), ApiError> {
    let internal = |e: std::io::Error| ApiError::Internal(e.to_string());
    let mut file = tokio::fs::File::create(path).await.map_err(internal)?;
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::Malformed {
            status: StatusCode::BAD_REQUEST,
            message: format!("the body could not be read: {e}"),
        })?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        total += data.len() as u64;
        if total > CHECK_MAX_BYTES {
            return Err(ApiError::Malformed {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!(
                    "the file is over {} MiB: check it with `cpi check` on the host",
                    CHECK_MAX_BYTES >> 20
                ),
            });
        }
        file.write_all(data).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)
}

/// Why the project cannot check a file, as an answer.
fn refused(e: ImportError) -> ApiError {
    let message = secret::scrub_known(&e.to_string());
    let status = match e {
        ImportError::ProjectNotFound(_) => StatusCode::NOT_FOUND,
        ImportError::NoConnection(_)
        | ImportError::ConnectionNotFound { .. }
        | ImportError::LegacyEnvVar { .. }
        | ImportError::InvalidConfig { .. }
        | ImportError::NoPattern { .. }
        | ImportError::InvalidTargetUrl { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ImportError::TargetUnreachable { .. }
        | ImportError::ConnectTimeout { .. }
        | ImportError::TargetTransient { .. } => StatusCode::BAD_GATEWAY,
        ImportError::Management(_) => return ApiError::Unavailable,
        _ => return ApiError::Internal(message),
    };
    ApiError::Malformed { status, message }
}
