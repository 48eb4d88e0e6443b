//! The HTTP API (DESIGN §7): the connection API of the decision record,
//! projects, import jobs, health and metrics.
//!
//! [`app`] builds the router from the state alone, so tests can drive it
//! without a socket; [`serve`] takes its listener and its shutdown future, so
//! tests bind port 0 and stop it at will, and the daemon serves the same
//! router from `cpi run --listen`.
//!
//! Rows that a reconciler manages (`managed_by` set) are read-only here:
//! git is their source of truth, and a write answers 409 naming the
//! manifest. A bearer token guards writes, connection tests and every
//! response carrying a `database_url`.

pub mod auth;
mod connections;
mod error;
mod jobs;
mod projects;
mod runs;
pub mod server;
mod stats;
mod system;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use serde::{Deserialize, Deserializer};
use sqlx::PgPool;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use error::{ApiError, ErrorBody};

use crate::metrics::Health;
use crate::secret::Secret;
use crate::store::{self, ConnectionRow, ProjectRow, StoreError};

/// How long `POST /connections/{id}/test` waits for the target database.
pub const CONNECTION_TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What every handler shares: the pool, the token, the health, the limits.
#[derive(Clone)]
pub struct AppState {
    /// The management database.
    pub pool: PgPool,
    /// The API token; `None` makes every guarded endpoint answer 403.
    pub token: Option<Secret>,
    /// Shared with the daemon, which reports reconciles and watcher errors.
    pub health: Arc<Health>,
    /// How long `POST /connections/{id}/test` waits.
    pub connection_test_timeout: Duration,
    /// `--inbox-root`: where a project's folders may be; none: the API may not set them.
    pub inbox_roots: Arc<Vec<std::path::PathBuf>>,
    /// Connection cap, timeouts and CORS origins of the server.
    pub http: server::HttpSettings,
}

impl AppState {
    /// The state with the default connection test timeout.
    pub fn new(pool: PgPool, token: Option<Secret>, health: Arc<Health>) -> Self {
        AppState {
            pool,
            token,
            health,
            connection_test_timeout: CONNECTION_TEST_TIMEOUT,
            inbox_roots: Arc::default(),
            http: server::HttpSettings::default(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cpi",
        description = "Connections, projects and import jobs of cpi (CSV imports into PostgreSQL, under git). \
            Rows with `managed_by` set are declared by manifests in git and are read-only here (409). \
            Writes, connection tests and `GET /connections/{id}` need `Authorization: Bearer <token>`; \
            the token is read from `--api-token-file`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "connections", description = "Target databases (the URL is only shown by GET /connections/{id})"),
        (name = "projects", description = "Projects and their import config"),
        (name = "jobs", description = "Import jobs"),
        (name = "reconcile", description = "Reconcile runs"),
        (name = "system", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every route, with its OpenAPI description: the router and the document
/// come from the same list, so they cannot disagree.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(connections::list, connections::create))
        .routes(routes!(
            connections::get,
            connections::update,
            connections::delete
        ))
        .routes(routes!(connections::test))
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::get, projects::update, projects::delete))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::retry))
        .routes(routes!(runs::list))
        .routes(routes!(runs::get))
        .routes(routes!(stats::imports))
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi_json))
}

/// The OpenAPI 3 document served at `/openapi.json`.
pub fn openapi() -> serde_json::Value {
    let mut doc = serde_json::to_value(routes().into_openapi())
        .expect("an OpenAPI document always serializes");
    fix_link_keys(&mut doc);
    doc
}

/// utoipa 5 writes the fields of a Link Object in snake case
/// (`operation_id`); OpenAPI, and every tool that follows links (e.g.
/// schemathesis' stateful tests), want `operationId`.
fn fix_link_keys(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut())
        .filter_map(|resp| resp.get_mut("links").and_then(|l| l.as_object_mut()))
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(from) {
                link.insert(to.to_string(), v);
            }
        }
    }
}

/// The API as an axum router: every route, the 404 fallback, the request
/// log, the request timeout, the headers every response carries, and CORS
/// when origins are configured.
pub fn app(state: AppState) -> Router {
    use axum::http::{header, HeaderValue};
    use tower_http::set_header::SetResponseHeaderLayer;
    let (router, _) = routes().split_for_parts();
    let http = state.http.clone();
    let router = router
        .merge(crate::console::router())
        .fallback(no_route)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            http.request_timeout,
        ))
        // API responses may hold URLs with passwords: never cached. A route
        // that wants caching (static assets) sets its own Cache-Control.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(middleware::from_fn(log_request));
    let router = match server::cors(&http.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if state.token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the API listens on a non-loopback address without an API token: reads are open to \
             the network and writes answer 403; give --api-token-file to enable writes"
        );
    }
    tracing::info!(%addr, "API listening");
    let http = state.http.clone();
    server::serve(listener, app(state), &http, shutdown).await
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::Malformed {
        status: StatusCode::NOT_FOUND,
        message: format!("no route for {method} {}", uri.path()),
    }
}

/// One line per request: method, path, status, duration. Never headers,
/// bodies or query strings, which may hold the token or a URL.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    if method == Method::GET || method == Method::HEAD {
        tracing::debug!(%method, %path, status, ms, "request");
    } else {
        tracing::info!(%method, %path, status, ms, "request");
    }
    resp
}

/// `axum::Json`, answering a body it cannot read with the API's JSON error.
/// The body must be a JSON object (serde would read a struct from an array).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::Malformed {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: "the body must be a JSON object".into(),
            });
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| ApiError::Malformed {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("Failed to deserialize the JSON body into the target type: {e}"),
            })
    }
}

/// A UUID path segment; a malformed one is a 400 with the API's JSON error.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<Uuid>::from_request_parts(parts, state).await?;
        Ok(IdPath(id))
    }
}

/// `axum::extract::Query`, answering a query string it cannot read with the API's JSON error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

/// Deserializes a field that is present (even as `null`) into `Some`, so
/// `Option<Option<T>>` tells "left out" (`None`) from "cleared" (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The longest description the API stores (names have the name rule's 255).
pub const MAX_DESCRIPTION: usize = 4096;

/// `limit`/`offset` of a list: at most [`MAX_PAGE`] rows, [`DEFAULT_PAGE`] by default.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// At most this many rows (default 100, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<usize>,
    /// Rows skipped first (by name order).
    #[param(minimum = 0)]
    pub offset: Option<usize>,
}

/// A list's default page size.
pub const DEFAULT_PAGE: usize = 100;
/// A list's largest page.
pub const MAX_PAGE: usize = 1000;

impl Page {
    /// The rows of this page, or a 400 for a limit over [`MAX_PAGE`].
    pub fn slice<T>(&self, rows: Vec<T>) -> Result<Vec<T>, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if limit > MAX_PAGE {
            return Err(ApiError::invalid(format!(
                "limit: at most {MAX_PAGE}, got {limit}"
            )));
        }
        Ok(rows
            .into_iter()
            .skip(self.offset.unwrap_or(0))
            .take(limit)
            .collect())
    }
}

/// The problems of the fields every body may carry: the manifests' name
/// rule (so every row can be exported as a manifest) and a description
/// PostgreSQL can store (text cannot hold NUL).
fn check_fields(kind: &str, name: Option<&str>, description: Option<&str>) -> Vec<String> {
    let name = name.and_then(|n| {
        crate::rules::check_name(n)
            .err()
            .map(|e| format!("name: a {kind} name {e}"))
    });
    let description = description.and_then(|d| {
        if d.contains('\0') {
            Some("description: must not contain NUL characters".to_string())
        } else if d.chars().count() > MAX_DESCRIPTION {
            Some(format!(
                "description: at most {MAX_DESCRIPTION} characters, got {}",
                d.chars().count()
            ))
        } else {
            None
        }
    });
    name.into_iter().chain(description).collect()
}

/// What the write handlers of `/connections` and `/projects` share about
/// their rows: how to lock and delete one, and who owns it.
trait Resource: Sized + Send {
    /// `connection` or `project`, for messages.
    const KIND: &'static str;
    /// The row's name, owner and manifest.
    fn ownership(&self) -> (&str, &Option<String>, &Option<String>);
    /// Locks the row for the rest of the transaction.
    fn lock(
        tx: &mut sqlx::PgConnection,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Self>, StoreError>> + Send;
    /// Deletes the row unless a reconciler owns it; `false` when it is gone.
    fn delete(
        tx: &mut sqlx::PgConnection,
        id: Uuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl Resource for ConnectionRow {
    const KIND: &'static str = "connection";
    fn ownership(&self) -> (&str, &Option<String>, &Option<String>) {
        (&self.name, &self.managed_by, &self.source)
    }
    fn lock(
        tx: &mut sqlx::PgConnection,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Self>, StoreError>> + Send {
        store::lock_connection(tx, id)
    }
    fn delete(
        tx: &mut sqlx::PgConnection,
        id: Uuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        store::delete_unmanaged_connection(tx, id)
    }
}

impl Resource for ProjectRow {
    const KIND: &'static str = "project";
    fn ownership(&self) -> (&str, &Option<String>, &Option<String>) {
        (&self.name, &self.managed_by, &self.source)
    }
    fn lock(
        tx: &mut sqlx::PgConnection,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Self>, StoreError>> + Send {
        store::lock_project(tx, id)
    }
    fn delete(
        tx: &mut sqlx::PgConnection,
        id: Uuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        store::delete_unmanaged_project(tx, id)
    }
}

/// Locks row `id` for a write: 404 when it does not exist, 409 when a
/// reconciler owns it (its manifest is the source of truth).
async fn lock_unmanaged<R: Resource>(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<R, ApiError> {
    let row = R::lock(tx, id)
        .await?
        .ok_or(ApiError::NotFound { kind: R::KIND, id })?;
    let (name, managed_by, source) = row.ownership();
    if let Some(owner) = managed_by {
        return Err(ApiError::Managed {
            kind: R::KIND,
            name: name.to_string(),
            managed_by: owner.clone(),
            manifest: source.clone(),
        });
    }
    Ok(row)
}

/// `DELETE` of an unmanaged row in one transaction; the deleted row back.
async fn delete_unmanaged<R: Resource>(pool: &PgPool, id: Uuid) -> Result<R, ApiError> {
    let mut tx = pool.begin().await?;
    let current = lock_unmanaged::<R>(&mut tx, id).await?;
    if !R::delete(&mut tx, id).await? {
        return Err(ApiError::NotFound { kind: R::KIND, id });
    }
    tx.commit().await?;
    Ok(current)
}
