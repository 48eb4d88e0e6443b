//! `/projects`: projects and their import config, validated exactly like a
//! Project manifest's.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Authorization, Authorized};
use super::docs::{Addressed, BodyErrors, IdErrors, IdParam, PageErrors, TokenErrors};
use super::error::{ApiError, ErrorBody};
use super::extract::{check_fields, present, IdPath, JsonBody, Page, QueryParams};
use super::guard::ActionAudit;
use super::state::AppState;
use super::unmanaged::{created, delete_unmanaged, lock_unmanaged};
use crate::access::{Permission, Target};
use crate::config::ProjectConfig;
use crate::rules;
use crate::store::{self, ProjectRow};

const KIND: &str = "project";

#[derive(Debug, Serialize, ToSchema)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Null when the project has no connection (its imports are rejected).
    pub connection_id: Option<Uuid>,
    pub connection_name: Option<String>,
    /// The project config (`cpi_projects.config`, DESIGN §3).
    #[schema(value_type = Object)]
    pub config: Value,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub managed_by: Option<String>,
    pub source: Option<String>,
    /// The operator's pause (`POST /projects/{name}/pause`), if paused: its
    /// files are queued and wait.
    pub paused: Option<crate::store::pauses::Pause>,
}

impl Addressed for Project {
    const ID: &'static str = "Project id";
    const NOUN: &'static str = KIND;
}

impl From<ProjectRow> for Project {
    fn from(r: ProjectRow) -> Self {
        Project {
            id: r.id,
            name: r.name,
            description: r.description,
            connection_id: r.connection_id,
            connection_name: r.connection_name,
            config: r.config,
            created_at: r.created_at,
            updated_at: r.updated_at,
            managed_by: r.managed_by,
            source: r.source,
            paused: None,
        }
    }
}

/// The projects with their pauses.
async fn with_pauses(state: &AppState, rows: Vec<ProjectRow>) -> Result<Vec<Project>, ApiError> {
    let pauses = crate::store::pauses::list(&state.pool).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut p = Project::from(r);
            p.paused = pauses.iter().find(|z| z.project == p.name).cloned();
            p
        })
        .collect())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCreate {
    /// 1-255 characters of `[A-Za-z0-9_.-]`, starting with a letter or digit.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        min_length = 1,
        max_length = 255,
        example = "customer_abc"
    )]
    pub name: String,
    pub description: Option<String>,
    /// An existing connection; null leaves the project without one.
    pub connection_id: Option<Uuid>,
    /// The import config of DESIGN §3 (`inbox`, `defaults`, `tables`, …);
    /// `name` is set from the project name. A legacy `connection.env_var`
    /// is rejected with the way to migrate.
    #[schema(value_type = Object, example = json!({
        "inbox": "/srv/cpi/inbox/customer_abc",
        "defaults": {"file_pattern": "*.csv", "primary_key": "id"},
        "tables": [{"file_pattern": "orders_*.csv", "table": "sales.orders", "primary_key": ["order_id"], "mode": "upsert"}]
    }))]
    pub config: Value,
}

/// Fields left out keep their value; `null` clears `description` or
/// `connection_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        min_length = 1,
        max_length = 255
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>)]
    pub connection_id: Option<Option<Uuid>>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
}

/// Reads a body as a `Value` first, so a legacy body gets its hint rather
/// than an "unknown field" error.
fn parse<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    // The legacy form gets the migration hint before anything else is checked.
    rules::check_legacy(&body).map_err(|e| ApiError::invalid(e.to_string()))?;
    serde_json::from_value(body).map_err(|e| ApiError::Malformed {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: format!("Failed to deserialize the JSON body into the target type: {e}"),
    })
}

/// PostgreSQL's `jsonb` refuses `\u0000`: a 400, not a failed insert.
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The config as a manifest's would be stored: parsed, validated, `name`
/// set to the project's, and serialized canonically.
fn check_config(
    name: &str,
    config: Value,
    roots: &[std::path::PathBuf],
    problems: &mut Vec<String>,
) -> Option<Value> {
    if !config.is_object() {
        problems.push("config: must be an object".into());
        return None;
    }
    if has_nul(&config) {
        problems.push("config: must not contain NUL characters".into());
        return None;
    }
    // Every shape problem at once, each by its path, as `cpi validate` has them.
    let mut parsed: ProjectConfig = match crate::manifest::parse_json("config", config) {
        Ok(c) => c,
        Err(errors) => {
            problems.extend(errors);
            return None;
        }
    };
    match &parsed.name {
        Some(n) if n != name => {
            problems.push(format!(
                "config.name {n:?} differs from the project name {name:?} (leave it out: it is set from the name)"
            ));
            return None;
        }
        _ => parsed.name = Some(name.to_string()),
    }
    let mut errors = parsed.validate();
    errors.extend(check_dirs(&parsed, roots));
    if !errors.is_empty() {
        problems.extend(errors.into_iter().map(|m| format!("config.{m}")));
        return None;
    }
    serde_json::to_value(&parsed)
        .map_err(|e| problems.push(format!("config: {e}")))
        .ok()
}

/// The API may place a project's folders only inside an `--inbox-root`;
/// without one it may not set them at all (a token would otherwise let its
/// holder read and move any file the daemon can).
fn check_dirs(config: &ProjectConfig, roots: &[std::path::PathBuf]) -> Vec<String> {
    if roots.is_empty() {
        return [
            ("inbox", &config.inbox),
            ("processed_dir", &config.processed_dir),
            ("failed_dir", &config.failed_dir),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| {
            format!(
                "{k}: the API may only set inbox, processed_dir and failed_dir when cpi is started with {} DIR",
                rules::INBOX_ROOT_FLAG
            )
        })
        .collect();
    }
    rules::outside_roots(config, roots)
}

async fn ensure_connection_exists(
    db: impl sqlx::PgExecutor<'_>,
    id: Option<Uuid>,
) -> Result<(), ApiError> {
    if let Some(id) = id {
        if store::connection_by_id(db, id).await?.is_none() {
            return Err(ApiError::invalid(format!(
                "connection_id: no connection has the id {id}"
            )));
        }
    }
    Ok(())
}

#[utoipa::path(
    get, path = "/projects", operation_id = "list_projects", tag = "projects",
    params(Page),
    responses(
        (status = 200, description = "A page of the projects the caller may read, by name", body = [Project]),
        PageErrors,
    )
)]
pub async fn list(
    Authorization(caller): Authorization,
    State(state): State<AppState>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<Vec<Project>>, ApiError> {
    // Only the projects the caller may read (a binding on some projects
    // shows those), before the page is cut.
    let all = store::list_projects(&state.pool).await?;
    let readable = all
        .into_iter()
        .filter(|p| {
            caller
                .as_ref()
                .is_some_and(|c| c.may(Permission::Read, &Target::Project(p.name.clone())))
        })
        .collect();
    let rows = page.slice(readable)?;
    Ok(Json(with_pauses(&state, rows).await?))
}

#[utoipa::path(
    get, path = "/projects/{id}", operation_id = "get_project", tag = "projects",
    params(IdParam<Project>),
    responses(
        (status = 200, description = "The project", body = Project),
        IdErrors<Project>,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Project>, ApiError> {
    let row = store::project_by_id(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound { kind: KIND, id })?;
    let mut one = with_pauses(&state, vec![row]).await?;
    Ok(Json(one.remove(0)))
}

#[utoipa::path(
    post, path = "/projects", operation_id = "create_project", tag = "projects",
    request_body = ProjectCreate,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created (not managed by any reconciler)", body = Project, links(
            ("GetProject" = (operation_id = "get_project", parameters(("id" = "$response.body#/id")))),
            ("UpdateProject" = (operation_id = "update_project", parameters(("id" = "$response.body#/id")))),
            ("DeleteProject" = (operation_id = "delete_project", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "Invalid name or config, legacy connection.env_var, or unknown connection_id", body = ErrorBody),
        TokenErrors,
        (status = 409, description = "A project of this name exists", body = ErrorBody),
        BodyErrors,
    )
)]
pub async fn create(
    _auth: Authorized,
    audit: ActionAudit,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let body: ProjectCreate = parse(body)?;
    let mut problems = check_fields(KIND, Some(&body.name), body.description.as_deref());
    let config = check_config(&body.name, body.config, &state.inbox_roots, &mut problems);
    // Checked with the rest, so one answer lists every problem.
    if let Err(e) = ensure_connection_exists(&state.pool, body.connection_id).await {
        problems.push(e.to_string());
    }
    let Some(config) = config.filter(|_| problems.is_empty()) else {
        return Err(ApiError::Invalid(problems));
    };
    let mut tx = state.pool.begin().await?;
    ensure_connection_exists(&mut *tx, body.connection_id).await?;
    let id = store::insert_project(
        &mut *tx,
        &body.name,
        body.description.as_deref(),
        body.connection_id,
        &config,
    )
    .await
    .map_err(|e| ApiError::from_write(e, KIND, &body.name))?;
    let row = store::project_by_id(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound { kind: KIND, id })?;
    let name = row.name.clone();
    let answer = created(tx, &audit, KIND, &name, id, Project::from(row)).await?;
    tracing::info!(project = %name, %id, "project created");
    Ok(answer)
}

#[utoipa::path(
    put, path = "/projects/{id}", operation_id = "update_project", tag = "projects",
    params(IdParam<Project>),
    request_body = ProjectUpdate,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = Project),
        (status = 400, description = "Invalid name or config, legacy connection.env_var, unknown connection_id, or malformed id", body = ErrorBody),
        TokenErrors,
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 409, description = "Managed by a manifest (the body names it), or the new name is taken", body = ErrorBody),
        BodyErrors,
    )
)]
pub async fn update(
    _auth: Authorized,
    audit: ActionAudit,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Project>, ApiError> {
    let body: ProjectUpdate = parse(body)?;
    let description = body.description.as_ref().and_then(Option::as_deref);
    let mut problems = check_fields(KIND, body.name.as_deref(), description);
    if let Some(Some(c)) = body.connection_id {
        if let Err(e) = ensure_connection_exists(&state.pool, Some(c)).await {
            problems.push(e.to_string());
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let mut tx = state.pool.begin().await?;
    let current: ProjectRow = lock_unmanaged(&mut tx, id).await?;
    let name = body.name.unwrap_or(current.name);
    // A rename changes `config.name` too; a new config is checked whole.
    let config = match body.config {
        Some(c) => check_config(&name, c, &state.inbox_roots, &mut problems),
        None => {
            let mut c = current.config;
            if let Some(o) = c.as_object_mut() {
                o.insert("name".into(), Value::String(name.clone()));
            }
            Some(c)
        }
    };
    let Some(config) = config.filter(|_| problems.is_empty()) else {
        return Err(ApiError::Invalid(problems));
    };
    let description = body.description.unwrap_or(current.description);
    let connection_id = body.connection_id.unwrap_or(current.connection_id);
    ensure_connection_exists(&mut *tx, connection_id).await?;
    let updated = store::update_unmanaged_project(
        &mut *tx,
        id,
        &name,
        description.as_deref(),
        connection_id,
        &config,
    )
    .await
    .map_err(|e| ApiError::from_write(e, KIND, &name))?;
    if !updated {
        return Err(ApiError::NotFound { kind: KIND, id });
    }
    let row = store::project_by_id(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound { kind: KIND, id })?;
    audit.commit(tx, StatusCode::OK, None).await?;
    tracing::info!(project = %row.name, %id, "project updated");
    Ok(Json(row.into()))
}

#[utoipa::path(
    delete, path = "/projects/{id}", operation_id = "delete_project", tag = "projects",
    params(IdParam<Project>),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; its import jobs stay, with project_id null"),
        IdErrors<Project>,
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
    let current: ProjectRow = delete_unmanaged(&state.pool, id, &audit).await?;
    tracing::info!(project = %current.name, %id, "project deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_is_validated_like_a_manifest() {
        let root = [std::path::PathBuf::from("/in")];
        let mut p = Vec::new();
        let c = check_config("abc", json!({"inbox": "/in"}), &root, &mut p).unwrap();
        assert_eq!(c, json!({"name": "abc", "inbox": "/in"}));
        let mut p = Vec::new();
        assert!(check_config("abc", json!({"inbox": "/in"}), &[], &mut p).is_none());
        assert!(p[0].contains("--inbox-root"), "{p:?}");
        let mut p = Vec::new();
        assert!(check_config("abc", json!({"inbox": "/in/../etc"}), &root, &mut p).is_none());
        assert!(p[0].contains("outside every --inbox-root"), "{p:?}");

        let mut p = Vec::new();
        assert!(check_config("abc", json!({"name": "other"}), &root, &mut p).is_none());
        assert!(p[0].contains("differs"), "{p:?}");

        let mut p = Vec::new();
        assert!(check_config("abc", json!({"nope": 1}), &root, &mut p).is_none());
        assert!(p[0].contains("unknown field"), "{p:?}");

        let mut p = Vec::new();
        assert!(check_config("abc", json!([]), &root, &mut p).is_none());
        let mut p = Vec::new();
        assert!(check_config("abc", json!({"inbox": "a\u{0}b"}), &root, &mut p).is_none());
    }

    #[test]
    fn legacy_env_var_gets_the_hint() {
        for body in [
            json!({"name": "a", "config": {"connection": {"env_var": "ABC_URL"}}}),
            json!({"name": "a", "connection": {"env_var": "ABC_URL"}, "config": {}}),
        ] {
            let e = parse::<ProjectCreate>(body).err().unwrap();
            let m = e.to_string();
            assert!(m.contains("ABC_URL") && m.contains("convert-legacy"), "{m}");
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        }
    }
}
