//! The access kinds' documents (ApiToken, RoleBinding) and their rules:
//! a spec in, its problems out, each naming the field it is about. A token
//! is never in git, only its SHA-256.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::access::{token, Binding, Role, Subject};

/// An ApiToken: a named bearer token, by the SHA-256 of its text.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenSpec {
    /// Free text (whose token, what for).
    #[serde(default)]
    pub description: Option<String>,
    /// The SHA-256 of the token, 64 hex digits (`cpi token create` prints it).
    pub sha256: String,
    /// After this instant (RFC 3339) the token is refused.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub expires: Option<DateTime<Utc>>,
}

/// One subject of a RoleBinding: exactly one of `token`, `user`, `group`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SubjectSpec {
    /// The name of an ApiToken declared in the manifests.
    pub token: Option<String>,
    /// A single-sign-on user.
    pub user: Option<String>,
    /// A single-sign-on group.
    pub group: Option<String>,
}

/// A RoleBinding: a role on projects (and connections) for subjects.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBindingSpec {
    /// `viewer`, `operator` or `admin`.
    pub role: Role,
    /// Project names or globs (`customer_abc*`; `*` for every project); at least one.
    pub projects: Vec<String>,
    /// Connections granted beside those the projects use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<String>,
    /// Who gets the role; at least one.
    pub subjects: Vec<SubjectSpec>,
}

/// The problems of an ApiToken spec (field, message); its hash when none.
pub fn check_token(spec: &ApiTokenSpec) -> Result<[u8; 32], Vec<(&'static str, String)>> {
    token::parse_sha256(&spec.sha256).ok_or_else(|| {
        vec![(
            "sha256",
            "sha256: must be the 64 hex digits of the token's SHA-256 (never the token itself; \
             `cpi token create NAME` prints both)"
                .to_string(),
        )]
    })
}

/// The problems of a RoleBinding spec (field, message); the binding when none.
pub fn check_binding(
    name: &str,
    spec: &RoleBindingSpec,
) -> Result<Binding, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    if spec.projects.is_empty() {
        problems.push((
            "projects",
            "projects: name at least one project or glob (`*` for all)".into(),
        ));
    }
    for p in &spec.projects {
        if let Err(e) = glob::Pattern::new(p) {
            problems.push((
                "projects",
                format!("projects: {p:?} is not a valid glob: {e}"),
            ));
        }
    }
    if spec.subjects.is_empty() {
        problems.push((
            "subjects",
            "subjects: name at least one token, user or group".into(),
        ));
    }
    let mut subjects = Vec::new();
    for (i, s) in spec.subjects.iter().enumerate() {
        let given: Vec<Subject> = [
            s.token.clone().map(Subject::Token),
            s.user.clone().map(Subject::User),
            s.group.clone().map(Subject::Group),
        ]
        .into_iter()
        .flatten()
        .collect();
        match <[Subject; 1]>::try_from(given) {
            Ok([one]) if !subject_name(&one).trim().is_empty() => subjects.push(one),
            _ => problems.push((
                "subjects",
                format!("subjects[{i}]: give exactly one non-empty `token`, `user` or `group`"),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Binding {
        name: name.to_string(),
        role: spec.role,
        projects: spec.projects.clone(),
        connections: spec.connections.clone(),
        subjects,
    })
}

/// An ApiToken's spec as `cpi_objects` keeps it: the hash in lower-case
/// hex (so a change of case in git is no change), the expiry, the description.
pub fn token_row(spec: &ApiTokenSpec, sha256: &[u8; 32]) -> serde_json::Value {
    let stored = ApiTokenSpec {
        sha256: hex::encode(sha256),
        ..spec.clone()
    };
    serde_json::to_value(stored).expect("a spec always serializes")
}

/// A RoleBinding's spec as `cpi_objects` keeps it.
pub fn binding_row(spec: &RoleBindingSpec) -> serde_json::Value {
    serde_json::to_value(spec).expect("a spec always serializes")
}

/// Why a stored access row does not read back as a rule.
#[derive(Debug, thiserror::Error)]
pub enum StoredRuleError {
    /// Its spec is not of its kind's shape (edited by hand, or by a newer cpi).
    #[error("not a spec of its kind: {0}")]
    Shape(#[from] serde_json::Error),
    /// Its spec reads but breaks the kind's rules: each problem.
    #[error("{}", .0.join("; "))]
    Rules(Vec<String>),
}

/// The problems of a spec, as an error.
fn broken(problems: Vec<(&'static str, String)>) -> StoredRuleError {
    StoredRuleError::Rules(problems.into_iter().map(|(_, m)| m).collect())
}

/// A stored ApiToken row read back for the API; the reason for a row that
/// no longer reads (edited by hand, or by a newer cpi).
pub fn token_from_row(
    name: &str,
    spec: serde_json::Value,
) -> Result<crate::access::token::KnownToken, StoredRuleError> {
    let spec: ApiTokenSpec = serde_json::from_value(spec)?;
    let sha256 = check_token(&spec).map_err(broken)?;
    Ok(crate::access::token::KnownToken {
        name: name.to_string(),
        sha256,
        expires: spec.expires,
    })
}

/// A stored RoleBinding row read back for the API (see [`token_from_row`]).
pub fn binding_from_row(name: &str, spec: serde_json::Value) -> Result<Binding, StoredRuleError> {
    let spec: RoleBindingSpec = serde_json::from_value(spec)?;
    check_binding(name, &spec).map_err(broken)
}

fn subject_name(s: &Subject) -> &str {
    match s {
        Subject::Token(n) | Subject::User(n) | Subject::Group(n) => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(yaml: &str) -> RoleBindingSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_token_holds_a_hash_never_a_token() {
        let ok = ApiTokenSpec {
            description: None,
            sha256: token::sha256_hex("x"),
            expires: None,
        };
        assert!(check_token(&ok).is_ok());
        let bad = ApiTokenSpec {
            sha256: "cpi_0123".into(),
            ..ok
        };
        let e = check_token(&bad).unwrap_err();
        assert_eq!(e[0].0, "sha256");
        assert!(!e[0].1.contains("cpi_0123"), "the value is not echoed");
    }

    #[test]
    fn stored_rows_read_back_as_the_rules_they_came_from() {
        let hash = token::sha256_hex("t");
        let spec = ApiTokenSpec {
            description: Some("ci".into()),
            sha256: hash.to_uppercase(),
            expires: Some("2030-01-01T00:00:00Z".parse().unwrap()),
        };
        let row = token_row(&spec, &check_token(&spec).unwrap());
        assert_eq!(row["sha256"], hash, "stored lower-case");
        let known = token_from_row("ci", row).unwrap();
        assert_eq!(known.sha256, token::parse_sha256(&hash).unwrap());
        assert_eq!(known.expires, spec.expires);
        assert!(token_from_row("x", serde_json::json!({"sha256": "nope"})).is_err());
        let b =
            binding("role: operator\nprojects: [a]\nconnections: [c]\nsubjects: [{token: ci}]\n");
        let back = binding_from_row("ops", binding_row(&b)).unwrap();
        assert_eq!(back, check_binding("ops", &b).unwrap());
        assert!(binding_from_row(
            "x",
            serde_json::json!({"role": "viewer", "projects": [], "subjects": []})
        )
        .is_err());
    }

    #[test]
    fn a_binding_needs_projects_and_one_kind_per_subject() {
        let b = check_binding(
            "ops",
            &binding("role: operator\nprojects: [customer_abc*]\nsubjects: [{token: ci}, {group: team-alpha}]\n"),
        )
        .unwrap();
        assert_eq!(b.role, Role::Operator);
        assert_eq!(
            b.subjects,
            vec![
                Subject::Token("ci".into()),
                Subject::Group("team-alpha".into())
            ]
        );
        let e = check_binding(
            "x",
            &binding("role: viewer\nprojects: []\nsubjects: [{token: a, user: b}, {}]\n"),
        )
        .unwrap_err();
        let msgs: Vec<_> = e.iter().map(|(_, m)| m.as_str()).collect();
        assert!(msgs.iter().any(|m| m.starts_with("projects:")), "{msgs:?}");
        assert!(
            msgs.iter().any(|m| m.starts_with("subjects[0]")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.starts_with("subjects[1]")),
            "{msgs:?}"
        );
        assert!(serde_yaml::from_str::<RoleBindingSpec>(
            "role: root\nprojects: ['*']\nsubjects: []\n"
        )
        .is_err());
        let e = check_binding(
            "x",
            &binding("role: viewer\nprojects: ['[']\nsubjects: [{user: u}]\n"),
        )
        .unwrap_err();
        assert_eq!(e[0].0, "projects");
    }
}
