//! Who may do what (issue #26): the built-in roles, the bindings that grant
//! a role on projects to subjects, and the one decision
//! [`allows`]`(principal, permission, target)`. Pure: the API resolves a
//! request into a [`Principal`] and a [`Target`], asks, and answers 403 with
//! the [`Denial`]'s message.
//!
//! Roles are fixed, not configurable: `viewer` reads everything but secrets
//! and row values; `operator` is viewer plus the operator's actions (tests,
//! retry, replay, pause, cancel, check); `admin` is everything, including
//! connection details with `database_url` and writes.

mod policy;
mod role;
pub mod token;

pub use policy::{Binding, Policy, Principal, Subject, Target};
pub use role::{Permission, Role};

use std::fmt;

/// `--anonymous`: what a request without credentials may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Anonymous {
    /// The default: viewer while no token is configured (the API as it was
    /// before roles), nothing once any token is.
    #[default]
    Auto,
    /// Nothing: every route but the public ones needs a token.
    None,
    /// Viewer on every project (never more).
    Viewer,
}

impl Anonymous {
    /// The anonymous role, given whether any token is configured.
    pub fn role(self, tokens_configured: bool) -> Option<Role> {
        match self {
            Anonymous::None => None,
            Anonymous::Viewer => Some(Role::Viewer),
            Anonymous::Auto if tokens_configured => None,
            Anonymous::Auto => Some(Role::Viewer),
        }
    }
}

/// The answer of [`allows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused; the reason names the missing permission.
    Deny(Denial),
}

impl Decision {
    /// Whether the request may go ahead.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Why a request was refused: the permission it lacks and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The permission the request needs.
    pub permission: Permission,
    /// Where it needs it, as a phrase (`on project "abc"`, `on every project`).
    pub scope: String,
    /// Nobody was identified: a token would help.
    pub anonymous: bool,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "permission {:?} {} is needed (role {} or more)",
            self.permission.as_str(),
            self.scope,
            Role::least_for(self.permission)
        )?;
        if self.anonymous {
            f.write_str(
                ": send `Authorization: Bearer <token>` with a token bound to such a role",
            )?;
        }
        Ok(())
    }
}

/// The one decision: may `principal` use `permission` on `target` under `policy`?
pub fn allows(
    policy: &Policy,
    principal: &Principal,
    permission: Permission,
    target: &Target,
) -> Decision {
    let roles = policy.roles_of(principal);
    let ok = match target {
        Target::Any => roles.iter().any(|(role, _)| role.grants(permission)),
        Target::Everything => roles
            .iter()
            .any(|(role, b)| role.grants(permission) && b.covers_everything()),
        Target::Project(name) => roles
            .iter()
            .any(|(role, b)| role.grants(permission) && b.covers_project(name)),
        Target::Connection { name, projects } => roles.iter().any(|(role, b)| {
            role.grants(permission)
                && (b.covers_connection(name) || projects.iter().any(|p| b.covers_project(p)))
        }),
    };
    if ok {
        return Decision::Allow;
    }
    Decision::Deny(Denial {
        permission,
        scope: target.phrase(),
        anonymous: matches!(principal, Principal::Anonymous),
    })
}

#[cfg(test)]
mod tests;
