//! The route table: every route with its OpenAPI description, so that the
//! router and the document served at `/openapi.json` come from one list.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::AppState;
use super::{
    audit, check, connections, events, freshness, hooks, jobs, pauses, permissions, projects,
    rejects, runs, sso, stats, system,
};

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
        (name = "auth", description = "Single sign-on for the console (OpenID Connect) and who the caller is"),
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
pub(super) fn routes() -> OpenApiRouter<AppState> {
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
        .routes(routes!(rejects::rejected))
        .routes(routes!(jobs::retry))
        .routes(routes!(jobs::replay))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry_failed))
        .routes(routes!(pauses::pause))
        .routes(routes!(pauses::resume))
        .routes(routes!(check::check))
        .routes(routes!(freshness::list))
        .routes(routes!(runs::list))
        .routes(routes!(runs::get))
        .routes(routes!(stats::imports))
        .routes(routes!(audit::list))
        .routes(routes!(events::list))
        .routes(routes!(hooks::receive))
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(sso::login))
        .routes(routes!(sso::callback))
        .routes(routes!(sso::logout))
        .routes(routes!(sso::me))
}

/// The OpenAPI 3 document served at `/openapi.json`.
pub fn openapi() -> serde_json::Value {
    let mut doc = serde_json::to_value(routes().into_openapi())
        .expect("an OpenAPI document always serializes");
    fix_link_keys(&mut doc);
    permissions::annotate(&mut doc);
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

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string_pretty(&openapi()).expect("the OpenAPI document serializes")
});

#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi", tag = "system",
    responses((status = 200, description = "This API's OpenAPI 3 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the router has a row in the permission table, and
    /// every row is a route: a new route without a permission fails here.
    #[test]
    fn every_route_names_its_permission() {
        let doc = routes().into_openapi();
        let mut routed = Vec::new();
        for (path, item) in &doc.paths.paths {
            let item = serde_json::to_value(item).unwrap();
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                if item.get(method).is_some() {
                    routed.push((method.to_string(), path.clone()));
                }
            }
        }
        let missing: Vec<_> = routed
            .iter()
            .filter(|(m, p)| permissions::need_of(m, p).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "routes without a permission: {missing:?}"
        );
        let stale: Vec<_> = permissions::TABLE
            .iter()
            .filter(|(m, p, _)| !routed.iter().any(|(rm, rp)| rm == m && rp == p))
            .collect();
        assert!(stale.is_empty(), "table rows that are no route: {stale:?}");
    }

    #[test]
    fn the_document_shows_each_permission() {
        let doc = openapi();
        let op = &doc["paths"]["/connections/{id}"]["get"];
        assert_eq!(
            op["x-cpi-permission"],
            "read_secrets on the connection (or a project using it)"
        );
        assert!(op["description"].as_str().unwrap().contains("role admin"));
        assert_eq!(
            doc["paths"]["/healthz"]["get"]["x-cpi-permission"],
            "public"
        );
    }
}
