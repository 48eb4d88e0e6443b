//! `GET /freshness`: every table with a `freshness` rule, how long since
//! its last imported file and the state that puts it in ([`crate::freshness`]).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::state::AppState;
use crate::freshness::{current, TableFreshness};

/// Which tables.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FreshnessQuery {
    /// Only this project's tables.
    pub project: Option<String>,
}

#[utoipa::path(
    get, path = "/freshness", operation_id = "list_freshness", tag = "projects",
    params(FreshnessQuery),
    responses(
        (status = 200, description = "Each table with a freshness rule: its last import, its age in seconds (since the project was created when none yet), its bounds and its state (`fresh`, `warn` past `warn_after`, `error` past `error_after`)", body = Vec<TableFreshness>),
        (status = 400, description = "A malformed query", body = ErrorBody),
    )
)]
pub async fn list(
    auth: super::auth::Authorization,
    State(state): State<AppState>,
    QueryParams(q): QueryParams<FreshnessQuery>,
) -> Result<Json<Vec<TableFreshness>>, ApiError> {
    let mut tables = current(&state.pool, q.project.as_deref()).await?;
    // A caller bound to some projects sees their tables only.
    if !auth.reads_everything() {
        tables.retain(|t| auth.reads(&crate::access::Target::Project(t.project.clone())));
    }
    Ok(Json(tables))
}
