//! Every failure of the API, and the one place that maps it to a status
//! code and a JSON body.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::secret;
use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error in one sentence.
    pub error: String,
    /// Every problem found, for a request that fails validation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// The owner of a row that manifests manage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    /// The manifest (relative to the manifests root) that declares the row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Every failure of a request, mapped to its status and JSON body in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: every problem the request has.
    #[error("invalid request: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A body, path or query string the extractors could not read.
    #[error("{message}")]
    Malformed {
        /// 400, 404, 405, 415 or 422, as the extractor decided.
        status: StatusCode,
        /// What could not be read.
        message: String,
    },
    /// 404: no row of this kind has the id.
    #[error("{kind} {id} does not exist")]
    NotFound {
        /// `connection` or `project`.
        kind: &'static str,
        /// The id asked for.
        id: Uuid,
    },
    /// 409: the name is taken.
    #[error("a {kind} named {name:?} already exists")]
    Duplicate {
        /// `connection` or `project`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    #[error(
        "{kind} {name:?} is managed by {managed_by:?} from the manifest {}: git is the source of truth for it, change the manifest instead",
        manifest.as_deref().unwrap_or("(unknown path)")
    )]
    /// 409: a reconciler owns the row, so its manifest must change instead.
    Managed {
        /// `connection` or `project`.
        kind: &'static str,
        /// The row's name.
        name: String,
        /// The reconciler's owner name.
        managed_by: String,
        /// `source` of the row; not named so, which thiserror would take
        /// for the underlying error.
        manifest: Option<String>,
    },
    #[error(
        "this endpoint needs an API token and none is configured: start cpi with --api-token-file FILE (a file holding the token), then send `Authorization: Bearer <token>`"
    )]
    /// 403: the route needs a token and the server has none.
    TokenNotConfigured,
    /// 401: the token is missing or wrong.
    #[error("missing or wrong API token: send `Authorization: Bearer <token>`")]
    Unauthorized,
    /// 403: the caller lacks the route's permission (the message names it).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 401: a known ApiToken past its expiry (its name).
    #[error("API token {0:?} has expired: make a new one with `cpi token create`")]
    TokenExpired(String),
    /// 503: the management database cannot be reached.
    #[error("the management database is unavailable")]
    Unavailable,
    /// The message is already scrubbed of secrets.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Malformed { status, .. } => *status,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Duplicate { .. } | ApiError::Managed { .. } => StatusCode::CONFLICT,
            ApiError::TokenNotConfigured => StatusCode::FORBIDDEN,
            ApiError::Unauthorized | ApiError::TokenExpired(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A 400 with one problem.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![message.into()])
    }

    /// A failed insert or update of a `kind` named `name`: the unique
    /// constraint on `name` becomes 409, a dangling `connection_id` 400.
    pub fn from_write(e: StoreError, kind: &'static str, name: &str) -> Self {
        if let StoreError::Db(sqlx::Error::Database(db)) = &e {
            match db.code().as_deref() {
                Some("23505") => {
                    return ApiError::Duplicate {
                        kind,
                        name: name.to_string(),
                    }
                }
                Some("23503") => {
                    return ApiError::invalid("connection_id: no connection has this id")
                }
                _ => {}
            }
        }
        e.into()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %secret::scrub_known(&e.to_string()), "management database unavailable");
                ApiError::Unavailable
            }
            // Class 22 is "data exception": a value PostgreSQL refuses
            // (e.g. out of range). The request is at fault, not the server.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")) => {
                ApiError::invalid(secret::scrub_known(db.message()))
            }
            _ => ApiError::Internal(secret::scrub_known(&e.to_string())),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(e) => e.into(),
            other => ApiError::Internal(secret::scrub_known(&other.to_string())),
        }
    }
}

// Extractor rejections keep axum's status (400, 413, 415, 422) but answer in
// the same JSON shape as every other error. serde messages can quote the
// offending value, hence the scrub.
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::Malformed {
            status: r.status(),
            message: secret::scrub_known(&r.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::Malformed {
            status: r.status(),
            message: secret::scrub_known(&r.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::Malformed {
            status: r.status(),
            message: secret::scrub_known(&r.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let (details, managed_by, source) = match &self {
            ApiError::Invalid(d) if d.len() > 1 => (d.clone(), None, None),
            ApiError::Managed {
                managed_by,
                manifest,
                ..
            } => (Vec::new(), Some(managed_by.clone()), manifest.clone()),
            _ => (Vec::new(), None, None),
        };
        let body = ErrorBody {
            error: self.to_string(),
            details,
            managed_by,
            source,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
