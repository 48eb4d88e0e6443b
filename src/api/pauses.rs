//! `POST /projects/{name}/pause` and `/resume`: the operator's pause of a
//! project ([`crate::store::pauses`]): files keep being queued, none is
//! imported until it is resumed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Authorized;
use super::docs::TokenErrors;
use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::guard::ActionAudit;
use super::jobs::ReasonQuery;
use super::state::AppState;
use crate::store::pauses::{self, Toggled};
use crate::store::queue::Actor;

/// A project's pause, after a pause or a resume.
#[derive(Debug, Serialize, ToSchema)]
pub struct PauseState {
    /// The project's name.
    pub project: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// Whether this request changed it (`false`: it already was).
    pub changed: bool,
}

#[utoipa::path(
    post, path = "/projects/{name}/pause", operation_id = "pause_project", tag = "projects",
    params(("name" = String, Path, description = "The project's name"), ReasonQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Paused: its files keep being queued and none is claimed until it is resumed (a running import finishes); a `project.paused` event (who: `api`, why: `reason`). Pausing a paused project changes nothing (`changed: false`)", body = PauseState),
        (status = 404, description = "No project has that name", body = ErrorBody),
        TokenErrors,
    )
)]
pub async fn pause(
    _: Authorized,
    audit: ActionAudit,
    State(state): State<AppState>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<ReasonQuery>,
) -> Result<Json<PauseState>, ApiError> {
    toggle(&state, &audit, name, q, true).await
}

#[utoipa::path(
    post, path = "/projects/{name}/resume", operation_id = "resume_project", tag = "projects",
    params(("name" = String, Path, description = "The project's name"), ReasonQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Resumed: its waiting files are claimed again, in order; a `project.resumed` event (who: `api`, why: `reason`). Resuming a project that is not paused changes nothing (`changed: false`)", body = PauseState),
        (status = 404, description = "No project has that name", body = ErrorBody),
        TokenErrors,
    )
)]
pub async fn resume(
    _: Authorized,
    audit: ActionAudit,
    State(state): State<AppState>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<ReasonQuery>,
) -> Result<Json<PauseState>, ApiError> {
    toggle(&state, &audit, name, q, false).await
}

async fn toggle(
    state: &AppState,
    audit: &ActionAudit,
    name: String,
    q: ReasonQuery,
    pausing: bool,
) -> Result<Json<PauseState>, ApiError> {
    let by = Actor {
        who: super::jobs::API_ACTOR,
        reason: q.reason.as_deref(),
        audit: None,
    };
    let mut tx = state.pool.begin().await?;
    let done = pauses::set(&mut *tx, &name, pausing, &by).await?;
    if done != Toggled::NoProject {
        audit.commit(tx, StatusCode::OK, None).await?;
    }
    match done {
        Toggled::NoProject => Err(ApiError::Malformed {
            status: StatusCode::NOT_FOUND,
            message: format!("project {name:?} does not exist"),
        }),
        changed => Ok(Json(PauseState {
            project: name,
            paused: pausing,
            changed: changed == Toggled::Done,
        })),
    }
}
