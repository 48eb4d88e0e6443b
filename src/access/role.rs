//! The built-in roles and the permissions they carry.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a route needs. Ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Lists and details without secrets or row values.
    Read,
    /// The operator's actions: connection test, retry, replay, pause, resume, cancel, check.
    Operate,
    /// Secrets and row values: a connection's `database_url`, a job's rows and paths.
    ReadSecrets,
    /// Create, update, delete (rows that manifests do not manage).
    Write,
    /// The audit trail.
    Audit,
}

impl Permission {
    /// Every permission, least first.
    pub const ALL: [Permission; 5] = [
        Permission::Read,
        Permission::Operate,
        Permission::ReadSecrets,
        Permission::Write,
        Permission::Audit,
    ];

    /// The name written in the OpenAPI document and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Operate => "operate",
            Permission::ReadSecrets => "read_secrets",
            Permission::Write => "write",
            Permission::Audit => "audit",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A built-in role.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but secrets and row values.
    Viewer,
    /// Viewer, plus connection test, retry, replay, pause, resume, cancel, check.
    Operator,
    /// Everything: connection details with `database_url`, writes, the audit trail.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// Whether the role carries `permission`.
    pub fn grants(self, permission: Permission) -> bool {
        match self {
            Role::Viewer => permission == Permission::Read,
            Role::Operator => matches!(permission, Permission::Read | Permission::Operate),
            Role::Admin => true,
        }
    }

    /// The name written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The least role that carries `permission`.
    pub fn least_for(permission: Permission) -> Role {
        Role::ALL
            .into_iter()
            .find(|r| r.grants(permission))
            .unwrap_or(Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
