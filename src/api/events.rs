//! `GET /events`: the latest events, newest first, each with its
//! notifications' delivery state.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::state::AppState;
use crate::store::deliveries::{self, Delivery};
use crate::store::events::{self, Event, EventFilter};

/// Which events.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this project's events.
    pub project: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<u32>,
}

/// An event and its deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventWithDeliveries {
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// One per Alert that took it.
    pub deliveries: Vec<Delivery>,
}

#[utoipa::path(
    get, path = "/events", operation_id = "list_events", tag = "system",
    params(EventsQuery),
    responses(
        (status = 200, description = "The latest events, newest first, each with its deliveries (alert, state `pending`/`sent`/`failed`/`suppressed`/`dropped`, attempts, last error)", body = Vec<EventWithDeliveries>),
        (status = 400, description = "A malformed query", body = ErrorBody),
    )
)]
pub async fn list(
    auth: super::auth::Authorization,
    State(state): State<AppState>,
    QueryParams(q): QueryParams<EventsQuery>,
) -> Result<Json<Vec<EventWithDeliveries>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if limit > 500 {
        return Err(ApiError::invalid("limit: at most 500"));
    }
    // A caller bound to some projects sees their events only (not those
    // of no project, which are about the whole installation).
    let among = auth.readable_projects(&state.pool).await?;
    let filter = EventFilter {
        project: q.project,
        kind: None,
        among,
        limit: i64::from(limit),
    };
    let list = events::list(&state.pool, &filter).await?;
    let ids: Vec<uuid::Uuid> = list.iter().map(|e| e.id).collect();
    let all = deliveries::of_events(&state.pool, &ids).await?;
    Ok(Json(
        list.into_iter()
            .map(|event| EventWithDeliveries {
                deliveries: all
                    .iter()
                    .filter(|d| d.event_id == event.id)
                    .cloned()
                    .collect(),
                event,
            })
            .collect(),
    ))
}
