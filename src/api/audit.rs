//! `GET /audit`: the audit trail, newest first (admin on every project).

use axum::extract::State;
use axum::Json;

use super::auth::Authorized;
use super::error::ApiError;
use super::extract::{Page, QueryParams};
use super::state::AppState;
use crate::store::audit::{self, AuditEntry};

#[utoipa::path(
    get, path = "/audit", operation_id = "list_audit", tag = "system",
    params(Page),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the audit trail, newest first: every action and every refused request (actor, route, target, HTTP status, peer address; never a secret)", body = [AuditEntry]),
        (status = 401, description = "No or unknown token", body = super::error::ErrorBody),
        (status = 403, description = "The caller lacks `audit` on every project", body = super::error::ErrorBody),
    )
)]
pub async fn list(
    _: Authorized,
    State(state): State<AppState>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = page.limit.unwrap_or(super::extract::DEFAULT_PAGE);
    if limit > super::extract::MAX_PAGE {
        return Err(ApiError::invalid(format!(
            "limit: at most {}",
            super::extract::MAX_PAGE
        )));
    }
    let offset = i64::try_from(page.offset.unwrap_or(0))
        .map_err(|_| ApiError::invalid("offset: too large"))?;
    let rows = audit::list(&state.pool, limit as i64, offset).await?;
    Ok(Json(rows))
}
