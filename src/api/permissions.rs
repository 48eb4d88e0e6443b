//! The one route × permission table: every route of the API names the
//! permission it needs and what the permission is scoped by. The enforcing
//! layer reads it, the OpenAPI document shows it (`x-cpi-permission`, and a
//! line in each operation's description), and a test walks the router's
//! routes and fails for a route that is missing here.

use crate::access::Permission;

/// What a route's permission is scoped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A list or a page, filtered by the projects the caller may see.
    Any,
    /// Beyond any one project (creating rows): a binding on `*`.
    Everything,
    /// The project of the path's `{id}` (or its name).
    ProjectId,
    /// The project of the path's `{name}`.
    ProjectName,
    /// The connection of the path's `{id}`, with the projects that use it.
    ConnectionId,
    /// The project of the job of the path's `{id}`.
    JobId,
    /// The project of the `project` query parameter; without one, every project.
    ProjectQuery,
}

impl Scope {
    /// How the OpenAPI document and docs/security.md say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Any => "any",
            Scope::Everything => "every project",
            Scope::ProjectId | Scope::ProjectName => "the project",
            Scope::ConnectionId => "the connection (or a project using it)",
            Scope::JobId => "the job's project",
            Scope::ProjectQuery => "the `project` parameter (else every project)",
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Open to everyone: health, readiness, metrics, this document.
    Public,
    /// A permission, scoped.
    Permission(Permission, Scope),
}

impl Need {
    /// The value of `x-cpi-permission`.
    pub fn label(self) -> String {
        match self {
            Need::Public => "public".into(),
            Need::Permission(p, Scope::Any) => p.as_str().into(),
            Need::Permission(p, s) => format!("{} on {}", p.as_str(), s.as_str()),
        }
    }
}

use Need::Public;
use Permission::{Audit, Operate, Read, ReadSecrets, Write};
use Scope::*;

const fn need(p: Permission, s: Scope) -> Need {
    Need::Permission(p, s)
}

/// Every route: method (lower case, as OpenAPI writes it), path template, need.
pub const TABLE: &[(&str, &str, Need)] = &[
    ("get", "/connections", need(Read, Any)),
    ("post", "/connections", need(Write, Everything)),
    ("get", "/connections/{id}", need(ReadSecrets, ConnectionId)),
    ("put", "/connections/{id}", need(Write, ConnectionId)),
    ("delete", "/connections/{id}", need(Write, ConnectionId)),
    (
        "post",
        "/connections/{id}/test",
        need(Operate, ConnectionId),
    ),
    ("get", "/projects", need(Read, Any)),
    ("post", "/projects", need(Write, Everything)),
    ("get", "/projects/{id}", need(Read, ProjectId)),
    ("put", "/projects/{id}", need(Write, ProjectId)),
    ("delete", "/projects/{id}", need(Write, ProjectId)),
    ("post", "/projects/{name}/pause", need(Operate, ProjectName)),
    (
        "post",
        "/projects/{name}/resume",
        need(Operate, ProjectName),
    ),
    // A dry run writes nothing, but runs the project's import: an operator's.
    ("post", "/projects/{name}/check", need(Operate, ProjectName)),
    ("get", "/freshness", need(Read, Any)),
    ("get", "/jobs", need(Read, Any)),
    ("get", "/jobs/{id}", need(Read, JobId)),
    ("get", "/jobs/{id}/rejected", need(ReadSecrets, JobId)),
    ("post", "/jobs/{id}/retry", need(Operate, JobId)),
    ("post", "/jobs/{id}/replay", need(Operate, JobId)),
    ("post", "/jobs/{id}/cancel", need(Operate, JobId)),
    ("post", "/jobs/retry", need(Operate, ProjectQuery)),
    ("get", "/reconcile/runs", need(Read, Any)),
    // A run spans every project's manifests.
    ("get", "/reconcile/runs/{id}", need(Read, Everything)),
    ("get", "/stats/imports", need(Read, Any)),
    ("get", "/audit", need(Audit, Everything)),
    // Filtered to the caller's projects by the handler, as /jobs is.
    ("get", "/events", need(Read, Any)),
    // Authenticated by the body's HMAC signature, checked by the handler.
    ("post", "/hooks/{receiver}", Public),
    ("get", "/healthz", Public),
    ("get", "/readyz", Public),
    ("get", "/metrics", Public),
    ("get", "/openapi.json", Public),
    // Single sign-on: open to be reached; logout checks the session's CSRF
    // token itself, and /auth/me tells each caller what they may do.
    ("get", "/auth/login", Public),
    ("get", "/auth/callback", Public),
    ("post", "/auth/logout", Public),
    ("get", "/auth/me", Public),
];

/// What the route `method path` (path as a template, `/jobs/{id}`) needs;
/// `None` for a route missing from the table, which the layer refuses.
pub fn need_of(method: &str, path: &str) -> Option<Need> {
    TABLE
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map(|(_, _, n)| *n)
}

/// Writes each operation's need into the OpenAPI document: the
/// `x-cpi-permission` extension and a sentence at the end of its description.
pub fn annotate(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let (Some(need), Some(op)) = (need_of(method, path), op.as_object_mut()) else {
                continue;
            };
            let label = need.label();
            let sentence = match need {
                Need::Public => "Permission: none (public).".to_string(),
                Need::Permission(p, _) => format!(
                    "Permission: `{label}` (role {} or more).",
                    crate::access::Role::least_for(p)
                ),
            };
            let description = match op.get("description").and_then(|d| d.as_str()) {
                Some(d) if !d.is_empty() => format!("{d}\n\n{sentence}"),
                _ => sentence,
            };
            op.insert("description".into(), description.into());
            op.insert("x-cpi-permission".into(), label.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_no_duplicates() {
        for (i, (m, p, _)) in TABLE.iter().enumerate() {
            assert!(
                !TABLE[i + 1..].iter().any(|(m2, p2, _)| m == m2 && p == p2),
                "{m} {p} twice"
            );
        }
    }

    /// Every route of the table has its row in docs/security.md's
    /// route × role table, and the docs name no route the table lacks.
    #[test]
    fn the_security_docs_list_every_route() {
        let doc = include_str!("../../docs/security.md");
        let mut documented = std::collections::BTreeSet::new();
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cell = line.split('|').nth(1).unwrap_or_default();
            let mut method = "";
            for word in cell.split(['`', ',', ' ']).filter(|w| !w.is_empty()) {
                if word.chars().all(|c| c.is_ascii_uppercase()) {
                    method = word;
                } else if word.starts_with('/') && !method.is_empty() {
                    documented.insert((method.to_ascii_lowercase(), word.to_string()));
                }
            }
        }
        let routes: std::collections::BTreeSet<(String, String)> = TABLE
            .iter()
            .map(|(m, p, _)| (m.to_ascii_lowercase(), p.to_string()))
            .collect();
        let missing: Vec<_> = routes.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routes).collect();
        assert!(
            missing.is_empty(),
            "routes missing from docs/security.md: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "docs/security.md names routes the table lacks: {extra:?}"
        );
    }

    #[test]
    fn labels_name_permission_and_scope() {
        assert_eq!(need_of("GET", "/jobs"), Some(need(Read, Any)));
        assert_eq!(need(Operate, JobId).label(), "operate on the job's project");
        assert_eq!(Public.label(), "public");
        assert_eq!(need_of("get", "/nowhere"), None);
    }
}
