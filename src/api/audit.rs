//! `GET /audit`: the audit trail, newest first (admin on every project).

use axum::extract::State;
use axum::Json;

use super::auth::Authorized;
use super::error::ApiError;
use super::extract::QueryParams;
use super::state::AppState;
use crate::store::audit::{self, AuditEntry, Filter};

/// A page of the trail, and which rows.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// At most this many rows (default 100, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<usize>,
    /// Rows skipped first (newest first).
    #[param(minimum = 0)]
    pub offset: Option<usize>,
    /// Only this actor's rows (`token:ci`, `user:alice@example.com`).
    pub actor: Option<String>,
    /// Only this action's rows (`POST /jobs/{id}/retry`).
    pub action: Option<String>,
}

#[utoipa::path(
    get, path = "/audit", operation_id = "list_audit", tag = "system",
    params(AuditQuery),
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
    QueryParams(page): QueryParams<AuditQuery>,
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
    // An empty field (the console's filter form left blank) filters nothing.
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    let filter = Filter {
        actor: given(page.actor),
        action: given(page.action),
    };
    let rows = audit::list(&state.pool, &filter, limit as i64, offset).await?;
    Ok(Json(rows))
}
