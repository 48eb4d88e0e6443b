//! What a plan is made of: a change per row (its action, fields, drift and
//! what can be said of the secret), the conflicts that need `--adopt`, and
//! the delete guard.

use serde::Serialize;
use uuid::Uuid;

use super::state::{ConnState, ObjState, ProjState};
use crate::manifest::Kind;

/// What a change does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Insert the row.
    Create,
    /// Change the row.
    Update,
    /// Delete the row.
    Delete,
}

/// What can be said about a connection's secret without printing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretNote {
    /// Nothing to say.
    None,
    /// The values differ (found by comparing them, never by showing them).
    Changed,
    /// A secret file is not present, so the secret could not be compared.
    Unknown,
}

/// One change to one row.
#[derive(Debug, Clone)]
pub struct Change<T> {
    /// Create, update or delete.
    pub action: Action,
    /// The object's name.
    pub name: String,
    /// The row's id (update, delete).
    pub id: Option<Uuid>,
    /// The row as found (update, delete).
    pub before: Option<T>,
    /// The row as it will be (create, update).
    pub after: Option<T>,
    /// Changed fields of an update.
    pub fields: Vec<&'static str>,
    /// The row was changed behind cpi's back since cpi last wrote it.
    pub drift: bool,
    /// The row was not ours (unmanaged or another owner's) and `--adopt` takes it.
    pub adopt: bool,
    /// What can be said of the secret.
    pub secret: SecretNote,
}

/// A declared object whose row someone else owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// `Connection` or `Project`.
    pub kind: Kind,
    /// The object's name.
    pub name: String,
    /// `None` for a row nobody manages.
    pub owner: Option<String>,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.owner {
            None => write!(
                f,
                "{} {:?} exists and is not managed by cpi: rerun with --adopt to take it over",
                self.kind, self.name
            ),
            Some(o) => write!(
                f,
                "{} {:?} is managed by owner {o:?}: rerun with --adopt to take it over",
                self.kind, self.name
            ),
        }
    }
}

/// Why the delete guard refuses a plan (the message says how to allow it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeleteRefused {
    /// The plan deletes every managed object.
    #[error("refusing to delete every managed object ({0}): if that is really meant, rerun with --allow-delete")]
    Everything(usize),
    /// The plan deletes more than `--max-delete` objects.
    #[error("refusing to delete {deletes} objects (more than --max-delete {max_delete}): rerun with --allow-delete or a higher --max-delete")]
    TooMany {
        /// The deletes planned.
        deletes: usize,
        /// The most allowed.
        max_delete: usize,
    },
}

/// What apply would do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Connection changes: creates and updates by name, then deletes.
    pub connections: Vec<Change<ConnState>>,
    /// Project changes, in the same order.
    pub projects: Vec<Change<ProjState>>,
    /// Changes of the simple kinds (Provider, Alert, Receiver), kind by kind.
    pub objects: Vec<Change<ObjState>>,
    /// Rows that need `--adopt`.
    pub conflicts: Vec<Conflict>,
    /// Declared objects whose rows already match.
    pub unchanged: usize,
    /// Rows this owner manages now.
    pub managed: usize,
}

/// How many changes of each action a plan holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    /// Rows to create.
    pub create: usize,
    /// Rows to update.
    pub update: usize,
    /// Rows to delete.
    pub delete: usize,
    /// Updates of rows changed behind cpi's back.
    pub drift: usize,
}

impl Plan {
    /// The changes counted by action.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        let actions = self
            .connections
            .iter()
            .map(|x| (x.action, x.drift))
            .chain(self.projects.iter().map(|x| (x.action, x.drift)))
            .chain(self.objects.iter().map(|x| (x.action, x.drift)));
        for (a, drift) in actions {
            match a {
                Action::Create => c.create += 1,
                Action::Update => c.update += 1,
                Action::Delete => c.delete += 1,
            }
            c.drift += usize::from(drift);
        }
        c
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty() && self.projects.is_empty() && self.objects.is_empty()
    }

    /// The delete guard: a plan that deletes every managed object, or more
    /// than `max_delete`, needs `allow_delete`. An empty or unmounted
    /// manifests folder must never wipe the tables by accident.
    pub fn check_deletes(
        &self,
        max_delete: usize,
        allow_delete: bool,
    ) -> Result<(), DeleteRefused> {
        let deletes = self.counts().delete;
        if allow_delete || deletes == 0 {
            return Ok(());
        }
        if deletes >= self.managed {
            return Err(DeleteRefused::Everything(deletes));
        }
        if deletes > max_delete {
            return Err(DeleteRefused::TooMany {
                deletes,
                max_delete,
            });
        }
        Ok(())
    }
}
