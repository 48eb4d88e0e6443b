//! Liveness, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::state::AppState;
use crate::metrics::{self, LastReconcile};
use crate::secret;
use crate::store::{self, StoreError};

/// How long `/readyz` waits for the database before calling it unreachable.
const READY_DB_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    pub status: Liveness,
}

/// What `/healthz` says: answering at all is the news.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// The process is up.
    Ok,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `ok`, or why the management database cannot be used.
    pub database: String,
    /// Whether this process runs the reconciler (`cpi run`) or serves the API alone.
    pub reconciler: bool,
    /// The last reconcile this process ran, if any.
    pub last_reconcile: Option<LastReconcile>,
    /// Projects whose inbox, processed_dir or failed_dir lie outside every
    /// `--inbox-root`: not watched, nothing moved (project name → why).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub refused_inboxes: std::collections::BTreeMap<String, String>,
    /// The ids of the encryption keys this process holds, the one that
    /// encrypts first (ids only; what a key rotation waits for).
    pub key_ids: Vec<String>,
}

#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "system",
    responses((status = 200, description = "The process is up", body = Alive))
)]
pub async fn healthz() -> Json<Alive> {
    Json(Alive {
        status: Liveness::Ok,
    })
}

#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "system",
    responses(
        (status = 200, description = "Ready: the database answers and, under `cpi run`, the first reconcile succeeded", body = Readiness),
        (status = 503, description = "Not ready (the body says why)", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let probe = store::ping(&state.pool);
    let database = match tokio::time::timeout(READY_DB_TIMEOUT, probe).await {
        Ok(Ok(_)) => "ok".to_string(),
        Ok(Err(e)) => {
            // The driver's message alone: the `database` field already
            // says it is the management database.
            let why = match e {
                StoreError::Db(e) => e.to_string(),
                other => other.to_string(),
            };
            format!("unreachable: {}", secret::scrub_known(&why))
        }
        Err(_) => format!(
            "unreachable: no answer within {} s",
            READY_DB_TIMEOUT.as_secs()
        ),
    };
    let ready = database == "ok" && state.health.reconcile_ready();
    let body = Readiness {
        ready,
        database,
        reconciler: state.health.runs_reconciler(),
        last_reconcile: state.health.last_reconcile(),
        refused_inboxes: state.health.refused_inboxes(),
        key_ids: crate::crypto::keyring().ids(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format (0.0.4); every metric is named cpi_*", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = metrics::render(&state.pool, &state.health).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
