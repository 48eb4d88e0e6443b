//! `plan(desired, observed) -> Plan`: the pure heart of reconcile.
//!
//! Observed rows come from the management database (or, for
//! `cpi diff --against`, from another manifests folder). Nothing here does
//! I/O, so every rule of DESIGN §4 is unit-tested below.
//!
//! [`digest`] holds the digests that tell drift; the private `changes`
//! compares each wanted state with its row.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::manifest::{Desired, Kind, UrlState};

mod changes;
pub mod digest;

pub use digest::{canonical, connection_digest, project_digest};

use changes::Kinds;

/// A connection's content, as declared or as found in a row.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnState {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `database_url`, as far as it is known.
    pub url: UrlState,
    /// The owning reconciler.
    pub managed_by: Option<String>,
    /// The declaring manifest.
    pub source: Option<String>,
}

/// A project's content; `connection` is the connection's name.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjState {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// The connection's name.
    pub connection: Option<String>,
    /// `cpi_projects.config`.
    pub config: serde_json::Value,
    /// The owning reconciler.
    pub managed_by: Option<String>,
    /// The declaring manifest.
    pub source: Option<String>,
}

/// An observed row.
#[derive(Debug, Clone)]
pub struct Row<T> {
    /// The row's id (`None` for a row read from manifests).
    pub id: Option<Uuid>,
    /// Its content.
    pub state: T,
    /// Digest of the content cpi last wrote into the row.
    pub applied_digest: Option<String>,
    /// Digest of the row's content as it is stored now (`None`: the row
    /// was not read from the tables, so drift cannot be told).
    pub stored_digest: Option<String>,
}

/// The rows as found.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Every connection row.
    pub connections: Vec<Row<ConnState>>,
    /// Every project row.
    pub projects: Vec<Row<ProjState>>,
}

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
            .chain(self.projects.iter().map(|x| (x.action, x.drift)));
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
        self.connections.is_empty() && self.projects.is_empty()
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

/// The desired state as it would be stored by `owner`.
fn desired_states(desired: &Desired, owner: &str) -> (Vec<ConnState>, Vec<ProjState>) {
    let conns = desired
        .connections
        .values()
        .map(|c| ConnState {
            name: c.name.clone(),
            description: c.description.clone(),
            url: c.url.clone(),
            managed_by: Some(owner.to_string()),
            source: Some(c.source.clone()),
        })
        .collect();
    let projs = desired
        .projects
        .values()
        .map(|p| ProjState {
            name: p.name.clone(),
            description: p.description.clone(),
            connection: Some(p.connection.clone()),
            config: p.config.clone(),
            managed_by: Some(owner.to_string()),
            source: Some(p.source.clone()),
        })
        .collect();
    (conns, projs)
}

/// Observed rows made from a manifests folder (`cpi diff --against DIR`):
/// every object counts as managed by `owner`.
pub fn observed_from_manifests(desired: &Desired, owner: &str) -> Observed {
    let (conns, projs) = desired_states(desired, owner);
    fn rows<T>(states: Vec<T>) -> Vec<Row<T>> {
        let row = |state| Row {
            id: None,
            state,
            applied_digest: None,
            stored_digest: None,
        };
        states.into_iter().map(row).collect()
    }
    Observed {
        connections: rows(conns),
        projects: rows(projs),
    }
}

/// Compares the desired state with the observed rows for `owner`.
pub fn plan(desired: &Desired, observed: &Observed, owner: &str, adopt: bool) -> Plan {
    let (want_conns, want_projs) = desired_states(desired, owner);
    let mut p = Plan::default();
    let mut kinds = Kinds {
        owner,
        adopt,
        conflicts: &mut p.conflicts,
        unchanged: &mut p.unchanged,
        managed: &mut p.managed,
    };
    p.connections = kinds.plan(want_conns, &observed.connections);
    p.projects = kinds.plan(want_projs, &observed.projects);
    p
}

/// Connection names by id, to show a project's connection by name.
pub fn connection_names(rows: &[Row<ConnState>]) -> BTreeMap<Uuid, String> {
    rows.iter()
        .filter_map(|r| r.id.map(|id| (id, r.state.name.clone())))
        .collect()
}

// Inline, not in a file of its own: the layering check leaves out only
// inline test modules, and these tests render a plan.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::DesiredProject;
    use crate::secret::Secret;
    use serde_json::json;

    fn desired() -> Desired {
        let mut d = Desired::default().with_connection(
            "c1",
            Some("one"),
            UrlState::Known(Secret::new("postgresql://u:pw@h/db")),
            "c.yaml",
        );
        d.projects.insert(
            "p1".into(),
            DesiredProject {
                name: "p1".into(),
                description: None,
                connection: "c1".into(),
                config: json!({"name": "p1", "inbox": "/in"}),
                source: "p.yaml".into(),
            },
        );
        d
    }

    /// The rows that applying `d` as `owner` would leave.
    fn applied(d: &Desired, owner: &str) -> Observed {
        let mut o = observed_from_manifests(d, owner);
        reread(&mut o);
        for r in &mut o.connections {
            r.id = Some(Uuid::new_v4());
            r.applied_digest = r.stored_digest.clone();
        }
        for r in &mut o.projects {
            r.id = Some(Uuid::new_v4());
            r.applied_digest = r.stored_digest.clone();
        }
        o
    }

    /// The stored digests as `store::load_observed` computes them (URLs
    /// stored in plain text).
    fn reread(o: &mut Observed) {
        for r in &mut o.connections {
            let UrlState::Known(url) = &r.state.url else {
                panic!("test rows have known URLs");
            };
            let s = &r.state;
            r.stored_digest = Some(connection_digest(
                &s.name,
                s.description.as_deref(),
                url.expose(),
            ));
        }
        for r in &mut o.projects {
            r.stored_digest = Some(project_digest(&r.state));
        }
    }

    #[test]
    fn empty_observed_creates_everything() {
        let p = plan(&desired(), &Observed::default(), "cpi", false);
        assert_eq!(
            p.counts(),
            Counts {
                create: 2,
                update: 0,
                delete: 0,
                drift: 0
            }
        );
    }

    #[test]
    fn applied_state_plans_nothing() {
        let d = desired();
        let p = plan(&d, &applied(&d, "cpi"), "cpi", false);
        assert!(p.is_empty());
        assert_eq!(p.unchanged, 2);
        assert_eq!(p.managed, 2);
    }

    #[test]
    fn update_names_exactly_the_changed_fields() {
        let d = desired();
        let o = applied(&d, "cpi");
        let mut d2 = d.clone();
        d2.connections.get_mut("c1").unwrap().description = Some("uno".into());
        d2.projects.get_mut("p1").unwrap().config = json!({"name": "p1", "inbox": "/other"});
        let p = plan(&d2, &o, "cpi", false);
        assert_eq!(p.connections.len(), 1);
        assert_eq!(p.connections[0].fields, vec!["description"]);
        assert_eq!(p.projects[0].fields, vec!["config"]);
        assert!(!p.connections[0].drift);
    }

    #[test]
    fn password_change_is_a_secret_change() {
        let d = desired();
        let o = applied(&d, "cpi");
        let mut d2 = d.clone();
        d2.connections.get_mut("c1").unwrap().url =
            UrlState::Known(Secret::new("postgresql://u:pw2@h/db"));
        let p = plan(&d2, &o, "cpi", false);
        assert_eq!(p.connections[0].fields, vec!["database_url"]);
        assert_eq!(p.connections[0].secret, SecretNote::Changed);
        // A host change is visible, not a secret change.
        d2.connections.get_mut("c1").unwrap().url =
            UrlState::Known(Secret::new("postgresql://u:pw@h2/db"));
        let p = plan(&d2, &o, "cpi", false);
        assert_eq!(p.connections[0].secret, SecretNote::None);
    }

    #[test]
    fn unknown_secret_alone_is_not_a_change() {
        let d = desired();
        let o = applied(&d, "cpi");
        let mut d2 = d.clone();
        d2.connections.get_mut("c1").unwrap().url =
            UrlState::PasswordUnknown("postgresql://u@h/db".into());
        assert!(plan(&d2, &o, "cpi", false).is_empty());
        d2.connections.get_mut("c1").unwrap().url = UrlState::Unknown;
        assert!(plan(&d2, &o, "cpi", false).is_empty());
        d2.connections.get_mut("c1").unwrap().url =
            UrlState::PasswordUnknown("postgresql://u@other/db".into());
        let p = plan(&d2, &o, "cpi", false);
        assert_eq!(p.connections[0].fields, vec!["database_url"]);
        assert_eq!(p.connections[0].secret, SecretNote::Unknown);
    }

    #[test]
    fn undeclared_managed_rows_are_deleted_and_guarded() {
        let d = desired();
        let o = applied(&d, "cpi");
        let mut d2 = d.clone();
        d2.projects.clear();
        let p = plan(&d2, &o, "cpi", false);
        assert_eq!(p.counts().delete, 1);
        assert!(p.check_deletes(10, false).is_ok());
        assert!(p.check_deletes(0, false).is_err());
        let everything = plan(&Desired::default(), &o, "cpi", false);
        assert_eq!(everything.counts().delete, 2);
        assert!(everything
            .check_deletes(10, false)
            .unwrap_err()
            .to_string()
            .contains("every managed object"));
        assert!(everything.check_deletes(10, true).is_ok());
    }

    #[test]
    fn unmanaged_or_foreign_rows_conflict_unless_adopted() {
        let d = desired();
        for row_owner in [None, Some("other".to_string())] {
            let mut o = applied(&d, "cpi");
            for r in &mut o.connections {
                r.state.managed_by = row_owner.clone();
            }
            let p = plan(&d, &o, "cpi", false);
            assert_eq!(p.conflicts.len(), 1);
            assert_eq!(p.conflicts[0].owner, row_owner);
            let p = plan(&d, &o, "cpi", true);
            assert!(p.conflicts.is_empty());
            assert!(p.connections[0].adopt);
            assert_eq!(p.connections[0].fields, vec!["managed_by"]);
        }
    }

    #[test]
    fn other_owners_rows_are_never_deleted() {
        let d = desired();
        let o = applied(&d, "team-a");
        let p = plan(&Desired::default(), &o, "team-b", false);
        assert!(p.is_empty());
        assert_eq!(p.managed, 0);
    }

    #[test]
    fn edits_behind_cpis_back_are_drift() {
        let d = desired();
        let mut o = applied(&d, "cpi");
        o.projects[0].state.description = Some("edited by hand".into());
        o.connections[0].state.url = UrlState::Known(Secret::new("postgresql://u:pw@evil/db"));
        reread(&mut o);
        let p = plan(&d, &o, "cpi", false);
        assert!(p.projects[0].drift);
        assert!(p.connections[0].drift);
        assert_eq!(p.counts().drift, 2);
    }

    #[test]
    fn regression_jsonb_key_order_is_neither_drift_nor_a_change() {
        let mut d = desired();
        d.projects.get_mut("p1").unwrap().config =
            serde_json::from_str(r#"{"name": "p1", "inbox": "/in", "settle_seconds": 1}"#).unwrap();
        let mut o = applied(&d, "cpi");
        // As PostgreSQL's JSONB gives it back: keys reordered.
        o.projects[0].state.config =
            serde_json::from_str(r#"{"inbox": "/in", "name": "p1", "settle_seconds": 1}"#).unwrap();
        reread(&mut o);
        d.projects.get_mut("p1").unwrap().description = Some("edited in git".into());
        let p = plan(&d, &o, "cpi", false);
        assert!(!p.projects[0].drift, "a key order is not drift");
        assert_eq!(p.projects[0].fields, vec!["description"]);
        let text = crate::render::text(&p, false);
        assert!(!text.contains("+  settle_seconds"), "{text}");
    }
}
