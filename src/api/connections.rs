//! `/connections`: the connection API of the decision record (DESIGN §1).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Authorized;
use super::docs::{Addressed, BodyErrors, IdErrors, IdParam, PageErrors, TokenErrors};
use super::error::{ApiError, ErrorBody};
use super::extract::{check_fields, present, IdPath, JsonBody, Page, QueryParams};
use super::guard::ActionAudit;
use super::state::AppState;
use super::unmanaged::{created, delete_unmanaged, lock_unmanaged};
use crate::secret::{self, Secret};
use crate::store::{self, ConnectionRow};

const KIND: &str = "connection";

/// A connection as lists show it: never with its `database_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Connection {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The reconciler that owns the row; null for rows created by the API
    /// or by hand, which the API may change.
    pub managed_by: Option<String>,
    /// The manifest that declares the row, relative to the manifests root.
    pub source: Option<String>,
}

impl Addressed for Connection {
    const ID: &'static str = "Connection id";
    const NOUN: &'static str = KIND;
}

impl From<&ConnectionRow> for Connection {
    fn from(r: &ConnectionRow) -> Self {
        Connection {
            id: r.id,
            name: r.name.clone(),
            description: r.description.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            managed_by: r.managed_by.clone(),
            source: r.source.clone(),
        }
    }
}

/// One connection with its URL (password included): only ever sent to a
/// caller holding the API token. No `Debug`, so it cannot be logged.
#[derive(Serialize, ToSchema)]
pub struct ConnectionDetail {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub database_url: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub managed_by: Option<String>,
    pub source: Option<String>,
}

/// The body of `POST /connections`. No `Debug`: it holds a URL.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionCreate {
    /// 1-255 characters of `[A-Za-z0-9_.-]`, starting with a letter or digit.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        min_length = 1,
        max_length = 255,
        example = "customer_abc_prod"
    )]
    pub name: String,
    #[schema(example = "Customer ABC production database")]
    pub description: Option<String>,
    /// `postgres://` or `postgresql://`.
    #[schema(
        pattern = "^postgres(ql)?://",
        example = "postgresql://importer:secret@db.internal:5432/abc"
    )]
    pub database_url: String,
}

/// The body of `PUT /connections/{id}`: fields left out keep their value;
/// `"description": null` clears the description.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionUpdate {
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        min_length = 1,
        max_length = 255
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[schema(pattern = "^postgres(ql)?://")]
    pub database_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    pub success: bool,
    /// `Connection successful`, or why it failed (password removed).
    pub message: String,
}

/// Why a body's `database_url` is refused. The message never repeats the URL.
#[derive(Debug, thiserror::Error)]
enum UrlProblem {
    /// Not a PostgreSQL URL.
    #[error("database_url: {0}")]
    NotPostgres(#[source] crate::rules::UrlError),
    /// A PostgreSQL URL the driver refuses.
    #[error("database_url: {0}")]
    Refused(#[source] crate::tls::TlsError),
}

/// A URL the driver accepts.
fn check_url(url: &str) -> Result<Secret, UrlProblem> {
    let secret = Secret::new(url);
    crate::rules::parse_pg_url(url).map_err(UrlProblem::NotPostgres)?;
    crate::tls::connect_options(&secret).map_err(UrlProblem::Refused)?;
    Ok(secret)
}

#[utoipa::path(
    get, path = "/connections", operation_id = "list_connections", tag = "connections",
    params(Page),
    responses(
        (status = 200, description = "A page of connections, by name; never a database_url", body = [Connection]),
        PageErrors,
    )
)]
pub async fn list(
    auth: super::auth::Authorization,
    State(state): State<AppState>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<Vec<Connection>>, ApiError> {
    let mut all = store::list_connections(&state.pool).await?;
    // A caller bound to some projects sees the connections those projects
    // use and the ones their bindings name, before the page is cut.
    if !auth.reads_everything() {
        let used = store::scopes::connection_projects(&state.pool).await?;
        all.retain(|c| {
            let projects = used
                .iter()
                .find(|(id, _)| *id == c.id)
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            auth.reads(&crate::access::Target::Connection {
                name: c.name.clone(),
                projects,
            })
        });
    }
    let rows = page.slice(all)?;
    Ok(Json(rows.iter().map(Connection::from).collect()))
}

#[utoipa::path(
    post, path = "/connections", operation_id = "create_connection", tag = "connections",
    request_body = ConnectionCreate,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created (not managed by any reconciler)", body = Connection, links(
            ("GetConnection" = (operation_id = "get_connection", parameters(("id" = "$response.body#/id")))),
            ("UpdateConnection" = (operation_id = "update_connection", parameters(("id" = "$response.body#/id")))),
            ("DeleteConnection" = (operation_id = "delete_connection", parameters(("id" = "$response.body#/id")))),
            ("TestConnection" = (operation_id = "test_connection", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "Invalid name or URL", body = ErrorBody),
        TokenErrors,
        (status = 409, description = "A connection of this name exists", body = ErrorBody),
        BodyErrors,
    )
)]
pub async fn create(
    _auth: Authorized,
    audit: ActionAudit,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ConnectionCreate>,
) -> Result<impl IntoResponse, ApiError> {
    let mut problems = check_fields(KIND, Some(&body.name), body.description.as_deref());
    let url = check_url(&body.database_url).map_err(|e| problems.push(e.to_string()));
    let Ok(url) = url else {
        return Err(ApiError::Invalid(problems));
    };
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let mut tx = state.pool.begin().await?;
    let row = store::insert_connection(&mut *tx, &body.name, body.description.as_deref(), &url)
        .await
        .map_err(|e| ApiError::from_write(e, KIND, &body.name))?;
    let answer = created(tx, &audit, KIND, &row.name, row.id, Connection::from(&row)).await?;
    tracing::info!(connection = %row.name, id = %row.id, "connection created");
    Ok(answer)
}

#[utoipa::path(
    get, path = "/connections/{id}", operation_id = "get_connection", tag = "connections",
    params(IdParam<Connection>),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The connection with its database_url", body = ConnectionDetail),
        IdErrors<Connection>,
        TokenErrors,
    )
)]
pub async fn get(
    _auth: Authorized,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<ConnectionDetail>, ApiError> {
    let row = store::connection_by_id(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound { kind: KIND, id })?;
    let url = row.url().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(ConnectionDetail {
        id: row.id,
        name: row.name,
        description: row.description,
        database_url: url.expose().to_string(),
        created_at: row.created_at,
        updated_at: row.updated_at,
        managed_by: row.managed_by,
        source: row.source,
    }))
}

#[utoipa::path(
    put, path = "/connections/{id}", operation_id = "update_connection", tag = "connections",
    params(IdParam<Connection>),
    request_body = ConnectionUpdate,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = Connection),
        (status = 400, description = "Invalid name or URL, or malformed id", body = ErrorBody),
        TokenErrors,
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 409, description = "Managed by a manifest (the body names it), or the new name is taken", body = ErrorBody),
        BodyErrors,
    )
)]
pub async fn update(
    _auth: Authorized,
    audit: ActionAudit,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<ConnectionUpdate>,
) -> Result<Json<Connection>, ApiError> {
    let description = body.description.as_ref().and_then(Option::as_deref);
    let mut problems = check_fields(KIND, body.name.as_deref(), description);
    let url = match &body.database_url {
        Some(u) => check_url(u).map(Some).unwrap_or_else(|e| {
            problems.push(e.to_string());
            None
        }),
        None => None,
    };
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let mut tx = state.pool.begin().await?;
    let current: ConnectionRow = lock_unmanaged(&mut tx, id).await?;
    let url = match url {
        Some(u) => u,
        None => current
            .url()
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let name = body.name.unwrap_or(current.name);
    let description = body.description.unwrap_or(current.description);
    let row = store::update_unmanaged_connection(&mut *tx, id, &name, description.as_deref(), &url)
        .await
        .map_err(|e| ApiError::from_write(e, KIND, &name))?
        .ok_or(ApiError::NotFound { kind: KIND, id })?;
    audit.commit(tx, StatusCode::OK, None).await?;
    tracing::info!(connection = %row.name, %id, "connection updated");
    Ok(Json(Connection::from(&row)))
}

#[utoipa::path(
    delete, path = "/connections/{id}", operation_id = "delete_connection", tag = "connections",
    params(IdParam<Connection>),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; projects that used it keep existing with connection_id null"),
        IdErrors<Connection>,
        TokenErrors,
        (status = 409, description = "Managed by a manifest (the body names it)", body = ErrorBody),
    )
)]
pub async fn delete(
    _auth: Authorized,
    audit: ActionAudit,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    let current: ConnectionRow = delete_unmanaged(&state.pool, id, &audit).await?;
    tracing::info!(connection = %current.name, %id, "connection deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/connections/{id}/test", operation_id = "test_connection", tag = "connections",
    params(IdParam<Connection>),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The outcome of connecting and running `SELECT 1` (success false when it failed)", body = TestResult),
        IdErrors<Connection>,
        TokenErrors,
    )
)]
pub async fn test(
    _auth: Authorized,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<TestResult>, ApiError> {
    let row = store::connection_by_id(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound { kind: KIND, id })?;
    // Not registered with `secret::register`: scrubbing with this URL
    // explicitly is enough, and the registry must not grow per request.
    let url = &match row.url() {
        Ok(u) => u,
        Err(e) => {
            return Ok(Json(TestResult {
                success: false,
                message: format!("Connection failed: {e}"),
            }))
        }
    };
    let result = store::test_connection(url, state.connection_test_timeout).await;
    Ok(Json(match result {
        Ok(_) => TestResult {
            success: true,
            message: "Connection successful".into(),
        },
        Err(e) => TestResult {
            success: false,
            message: secret::scrub(&format!("Connection failed: {e}"), &[url]),
        },
    }))
}
