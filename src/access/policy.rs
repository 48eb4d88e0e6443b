//! The policy a request is judged by: the bindings of the manifests, the
//! anonymous role, and who the request is.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::role::{Permission, Role};

/// Who a binding names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Subject {
    /// A named API token (`kind: ApiToken`).
    Token(String),
    /// A single-sign-on user (the ID token's subject or e-mail).
    User(String),
    /// A single-sign-on group (from the groups claim).
    Group(String),
}

/// Who made a request, as the API resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// The token of `--api-token-file`: admin on everything.
    LegacyAdmin,
    /// A named API token.
    Token(String),
    /// A signed-in user and their groups.
    User {
        /// The user's name.
        name: String,
        /// The user's groups.
        groups: Vec<String>,
    },
}

impl Principal {
    /// The actor written in the audit trail.
    pub fn actor(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::LegacyAdmin => "token:--api-token-file".into(),
            Principal::Token(n) => format!("token:{n}"),
            Principal::User { name, .. } => format!("user:{name}"),
        }
    }

    fn is(&self, subject: &Subject) -> bool {
        match (self, subject) {
            (Principal::Token(a), Subject::Token(b)) => a == b,
            (Principal::User { name, .. }, Subject::User(b)) => name == b,
            (Principal::User { groups, .. }, Subject::Group(g)) => groups.iter().any(|x| x == g),
            _ => false,
        }
    }
}

/// A role granted on projects (names or globs) and connections (names) to subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The RoleBinding's name.
    pub name: String,
    /// The role granted.
    pub role: Role,
    /// Project names or globs (`customer_*`, `*` for all).
    pub projects: Vec<String>,
    /// Connections granted beside those the projects use.
    pub connections: Vec<String>,
    /// Who gets the role.
    pub subjects: Vec<Subject>,
}

impl Binding {
    /// Whether the binding reaches project `name`.
    pub fn covers_project(&self, name: &str) -> bool {
        self.projects
            .iter()
            .any(|p| p == name || glob::Pattern::new(p).is_ok_and(|g| g.matches(name)))
    }

    /// Whether the binding names connection `name` explicitly, or reaches
    /// every project (and so every connection, used or not).
    pub fn covers_connection(&self, name: &str) -> bool {
        self.covers_everything() || self.connections.iter().any(|c| c == name)
    }

    /// Whether the binding reaches every project (a `*` pattern).
    pub fn covers_everything(&self) -> bool {
        self.projects.iter().any(|p| p == "*")
    }
}

/// What a request acts on, for the scope of a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A list or a page that is filtered by project afterwards: some project is enough.
    Any,
    /// Something beyond any project (creating rows, the audit trail): needs `*`.
    Everything,
    /// One project.
    Project(String),
    /// One connection and the projects that use it.
    Connection {
        /// The connection's name.
        name: String,
        /// The projects that use it.
        projects: Vec<String>,
    },
}

impl Target {
    /// The scope as a phrase for messages.
    pub fn phrase(&self) -> String {
        match self {
            Target::Any => "on some project".into(),
            Target::Everything => "on every project (a binding with projects: [\"*\"])".into(),
            Target::Project(p) => format!("on project {p:?}"),
            Target::Connection { name, .. } => {
                format!("on connection {name:?} (or a project that uses it)")
            }
        }
    }
}

/// Everything the decision needs: the bindings and the anonymous role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The RoleBindings of the manifests.
    pub bindings: Vec<Binding>,
    /// `--anonymous viewer`: requests without credentials are viewers of everything.
    pub anonymous: Option<Role>,
}

static EVERYTHING_ADMIN: LazyLock<Binding> =
    LazyLock::new(|| everything("--api-token-file", Role::Admin));
static EVERYTHING_VIEWER: LazyLock<Binding> =
    LazyLock::new(|| everything("--anonymous", Role::Viewer));

fn everything(name: &str, role: Role) -> Binding {
    Binding {
        name: name.into(),
        role,
        projects: vec!["*".into()],
        connections: Vec::new(),
        subjects: Vec::new(),
    }
}

impl Policy {
    /// The roles `principal` holds, each with the binding that grants it.
    pub fn roles_of(&self, principal: &Principal) -> Vec<(Role, &Binding)> {
        match principal {
            Principal::LegacyAdmin => vec![(Role::Admin, &*EVERYTHING_ADMIN)],
            // Only the viewer role can be given to anonymous requests.
            Principal::Anonymous => match self.anonymous {
                Some(_) => vec![(Role::Viewer, &*EVERYTHING_VIEWER)],
                None => Vec::new(),
            },
            p => self
                .bindings
                .iter()
                .filter(|b| b.subjects.iter().any(|s| p.is(s)))
                .map(|b| (b.role, b))
                .collect(),
        }
    }

    /// The projects of `names` that `principal` may use `permission` on, for filtering lists.
    pub fn visible<'a>(
        &self,
        principal: &Principal,
        permission: Permission,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<&'a str> {
        let roles = self.roles_of(principal);
        names
            .into_iter()
            .filter(|n| {
                roles
                    .iter()
                    .any(|(r, b)| r.grants(permission) && b.covers_project(n))
            })
            .collect()
    }
}
