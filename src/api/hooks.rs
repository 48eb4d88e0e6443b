//! `POST /hooks/{receiver}`: a signed push (GitHub's `X-Hub-Signature-256`,
//! or `X-Cpi-Signature-256` for a generic webhook) that wakes the daemon:
//! an immediate reconcile and/or inbox rescan. The body is capped and read
//! only up to the cap; a bad or missing signature answers 401 and wakes
//! nothing. The signature is the only credential: the route is public.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::state::AppState;
use crate::manifest::notify::{ReceiverSpec, ReceiverType, Trigger};
use crate::manifest::Kind;
use crate::notify::sign;
use crate::secret;

/// The largest push body read (GitHub caps its payloads at 25 MB; a push
/// of a manifests repository is far below this).
pub const MAX_HOOK_BODY: usize = 1024 * 1024;

/// What a good push started.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookAccepted {
    /// The receiver.
    pub receiver: String,
    /// `reconcile` and/or `rescan`.
    pub triggered: Vec<String>,
}

fn refuse(status: StatusCode, message: &str) -> ApiError {
    ApiError::Malformed {
        status,
        message: message.to_string(),
    }
}

#[utoipa::path(
    post, path = "/hooks/{receiver}", operation_id = "receive_hook", tag = "system",
    params(("receiver" = String, Path, description = "The Receiver's name")),
    request_body(content = String, description = "The push, as sent (at most 1 MiB)", content_type = "application/json"),
    responses(
        (status = 202, description = "Signed: the receiver's reconcile and/or rescan is started", body = HookAccepted),
        (status = 401, description = "The signature is missing or wrong: nothing is started", body = ErrorBody),
        (status = 404, description = "No Receiver has this name", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB (refused without reading it all)", body = ErrorBody),
        (status = 503, description = "This server runs no daemon to wake (`cpi serve`)", body = ErrorBody),
    )
)]
/// Checks a push's signature and wakes what its Receiver names.
pub async fn receive(
    State(state): State<AppState>,
    Path(receiver): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<HookAccepted>), ApiError> {
    let declared = length(&headers);
    if declared.is_some_and(|n| n > MAX_HOOK_BODY) {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is over 1 MiB",
        ));
    }
    let spec: Option<ReceiverSpec> =
        crate::store::simple::spec(&state.pool, Kind::Receiver, &receiver)
            .await?
            .and_then(|v| serde_json::from_value(v).ok());
    let Some(spec) = spec else {
        return Err(refuse(StatusCode::NOT_FOUND, "no receiver has this name"));
    };
    // Read only up to the cap: a longer body (without or with a false
    // Content-Length) stops being read there.
    let body = axum::body::to_bytes(body, MAX_HOOK_BODY)
        .await
        .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 1 MiB"))?;
    let key = secret::read_secret_file(std::path::Path::new(&spec.secret_file)).map_err(|e| {
        tracing::error!(receiver, error = %e, "the receiver's secret file cannot be read");
        ApiError::Internal("the receiver's secret file cannot be read".into())
    })?;
    let key = secret::Secret::new(key.trim_end());
    secret::register(&key);
    let header = match spec.kind {
        ReceiverType::Github => "x-hub-signature-256",
        ReceiverType::Webhook => "x-cpi-signature-256",
    };
    let given = headers.get(header).and_then(|v| v.to_str().ok());
    if !sign::verify(key.expose().as_bytes(), &body, given) {
        tracing::warn!(
            receiver,
            "a push with a missing or wrong signature was refused"
        );
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong signature",
        ));
    }
    let Some(wake) = &state.wake else {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server runs no daemon to wake (cpi serve): run cpi run",
        ));
    };
    let mut triggered = Vec::new();
    for t in &spec.triggers {
        match t {
            Trigger::Reconcile => {
                wake.reconcile.notify_one();
                triggered.push("reconcile".to_string());
            }
            Trigger::Rescan => {
                wake.rescan.notify_one();
                triggered.push("rescan".to_string());
            }
        }
    }
    tracing::info!(receiver, ?triggered, "a signed push woke the daemon");
    Ok((
        StatusCode::ACCEPTED,
        Json(HookAccepted {
            receiver,
            triggered,
        }),
    ))
}

fn length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
