//! The enforcing layer: every routed request is judged against the route's
//! row of the permission table before its handler reads anything, so a
//! refused request changes nothing. A route missing from the table is
//! refused (the route test keeps that from shipping).

use axum::extract::FromRequestParts;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use uuid::Uuid;

use super::auth::Caller;
use super::error::ApiError;
use super::permissions::{self, Need, Scope};
use super::state::AppState;
use crate::access::{self, Decision, Principal, Target};
use crate::store::audit::{self as scopes_audit, Pending};
use crate::store::scopes;

/// The middleware: resolve the caller and the target, ask
/// [`access::allows`], answer 401/403 or go on with a [`Caller`].
/// Every action (a request that is not a read) and every refused request
/// leaves a row in `cpi_audit`: actor, route, target, status and peer,
/// never a body, header or query string. An action that changes something
/// writes its row itself, in its own transaction ([`ActionAudit`]); the
/// layer writes the row of every other one once answered, so a failed or
/// rolled-back change is recorded with its error status, never as done.
pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let read = req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD;
    let action = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map_or("", |m| m.as_str())
    );
    let source = req
        .extensions()
        .get::<super::server::Peer>()
        .map(|p| p.0.ip().to_string());
    // Public routes write their own rows when they act (`/auth/*`).
    let public = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| permissions::need_of(req.method().as_str(), m.as_str()))
        == Some(Need::Public);
    let mut audit = Audit {
        actor: "anonymous".into(),
        target: req.uri().path().to_string(),
    };
    let recorded = Arc::new(AtomicBool::new(false));
    let resp = match judge(&state, req, &mut audit).await {
        Ok(mut req) => {
            req.extensions_mut().insert(ActionAudit {
                row: Pending {
                    actor: audit.actor.clone(),
                    action: action.clone(),
                    target: audit.target.clone(),
                    outcome: String::new(),
                    source: source.clone(),
                },
                recorded: recorded.clone(),
            });
            next.run(req).await
        }
        Err(e) => e.into_response(),
    };
    let status = resp.status();
    let refused = status == axum::http::StatusCode::FORBIDDEN
        || status == axum::http::StatusCode::UNAUTHORIZED;
    if (!read || refused) && !public && !recorded.load(Ordering::Acquire) {
        let entry = scopes_audit::NewEntry {
            actor: &audit.actor,
            action: &action,
            target: &audit.target,
            outcome: status.as_str(),
            source: source.as_deref(),
        };
        if let Err(e) = scopes_audit::record(&state.pool, &entry).await {
            tracing::warn!(error = %e, "cannot write the audit row");
        }
    }
    resp
}

/// The audit row of an action the layer let through, for the handler to
/// write in the action's transaction ([`ActionAudit::row`]) and then say
/// so ([`ActionAudit::committed`]): the layer then writes no second row.
#[derive(Debug, Clone)]
pub struct ActionAudit {
    row: Pending,
    recorded: Arc<AtomicBool>,
}

impl ActionAudit {
    /// The row as it reads when the action commits and answers `status`,
    /// on `target` (`None`: as the layer named it).
    pub fn row(&self, status: axum::http::StatusCode, target: Option<String>) -> Pending {
        let mut row = self.row.clone();
        row.outcome = status.as_str().to_string();
        if let Some(t) = target {
            row.target = t;
        }
        row
    }

    /// Says that the action committed with its row.
    pub fn committed(&self) {
        self.recorded.store(true, Ordering::Release);
    }

    /// Writes the row in `tx`, the action's transaction, commits both and
    /// says so.
    pub async fn commit(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        status: axum::http::StatusCode,
        target: Option<String>,
    ) -> Result<(), sqlx::Error> {
        self.row(status, target).record(&mut *tx).await?;
        tx.commit().await?;
        self.committed();
        Ok(())
    }
}

impl FromRequestParts<AppState> for ActionAudit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        // Missing only if a route was served without the layer: refuse,
        // as `Authorized` does.
        parts
            .extensions
            .get::<ActionAudit>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

/// What the audit row says of the request, filled in as it is judged.
struct Audit {
    actor: String,
    target: String,
}

async fn judge(state: &AppState, req: Request, audit: &mut Audit) -> Result<Request, ApiError> {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    // A method the table does not name for a routed path is refused here,
    // as the router would (405): never let through unjudged.
    let need =
        permissions::need_of(req.method().as_str(), &path).ok_or_else(|| ApiError::Malformed {
            status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{} is not allowed on {path}", req.method()),
        })?;
    let Need::Permission(permission, scope) = need else {
        return Ok(req);
    };
    let (principal, session) = super::sso::caller(state, req.headers()).await?;
    audit.actor = principal.actor();
    // A cookie carries the browser's authority to any site's request: an
    // action made with it must prove it comes from the console.
    if let (Some(s), Some(sso)) = (&session, &state.sso) {
        super::session::csrf_check(req.method(), req.headers(), &s.csrf, &sso.origin)
            .map_err(|r| ApiError::Forbidden(r.to_string()))?;
    }
    let (mut parts, body) = req.into_parts();
    let target = target(state, scope, &mut parts).await?;
    match &target {
        Target::Project(p) => audit.target = format!("project:{p}"),
        Target::Connection { name, .. } => audit.target = format!("connection:{name}"),
        Target::Any | Target::Everything => {}
    }
    let policy = state.policy();
    match access::allows(&policy, &principal, permission, &target) {
        Decision::Allow => {}
        // Before roles, a guarded route without any token configured said
        // so; it still does, as the way out is the same.
        Decision::Deny(_)
            if principal == Principal::Anonymous && !state.credentials_configured() =>
        {
            return Err(ApiError::TokenNotConfigured)
        }
        Decision::Deny(_) if principal == Principal::Anonymous => {
            return Err(ApiError::Unauthorized)
        }
        Decision::Deny(d) => return Err(ApiError::Forbidden(d.to_string())),
    }
    parts.extensions.insert(Caller {
        principal,
        policy: std::sync::Arc::new(policy),
    });
    Ok(Request::from_parts(parts, body))
}

/// The target of a request; [`Target::Any`] when the row does not exist
/// or the id is malformed, so that the handler answers 404 or 400 to a
/// caller that may read something.
async fn target(
    state: &AppState,
    scope: Scope,
    parts: &mut axum::http::request::Parts,
) -> Result<Target, ApiError> {
    let params = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Path(p)| p)
        .unwrap_or_default();
    let id = |k: &str| params.get(k).and_then(|v| Uuid::parse_str(v).ok());
    let pool = &state.pool;
    Ok(match scope {
        Scope::Any => Target::Any,
        Scope::Everything => Target::Everything,
        Scope::ProjectName => params
            .get("name")
            .map_or(Target::Any, |n| Target::Project(n.clone())),
        Scope::ProjectId => match id("id") {
            Some(id) => scopes::project_name(pool, id)
                .await?
                .map_or(Target::Any, Target::Project),
            None => Target::Any,
        },
        Scope::JobId => match id("id") {
            Some(id) => scopes::job_project(pool, id)
                .await?
                .map_or(Target::Any, Target::Project),
            None => Target::Any,
        },
        Scope::ConnectionId => {
            match id("id") {
                Some(id) => scopes::connection_scope(pool, id).await?.map_or(
                    Target::Any,
                    |(name, projects)| Target::Connection { name, projects },
                ),
                None => Target::Any,
            }
        }
        Scope::ProjectQuery => {
            let q = Query::<HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map(|Query(q)| q)
                .unwrap_or_default();
            q.get("project")
                .map_or(Target::Everything, |p| Target::Project(p.clone()))
        }
    })
}
