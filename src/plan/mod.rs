//! `plan(desired, observed) -> Plan`: the pure heart of reconcile.
//!
//! Observed rows come from the management database (or, for
//! `cpi diff --against`, from another manifests folder). Nothing here does
//! I/O, so every rule of DESIGN §4 is unit-tested below.
//!
//! [`digest`] holds the digests that tell drift; the private modules hold
//! a row's content (`state`), what a plan is made of (`model`), and compare
//! each wanted state with its row (`changes`).

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::manifest::{Desired, Kind};

mod changes;
pub mod digest;
mod model;
mod state;

pub use digest::{canonical, connection_digest, object_digest, project_digest};
pub use model::{Action, Change, Conflict, Counts, DeleteRefused, Plan, SecretNote};
pub use state::{ConnState, ObjState, Observed, ProjState, Row};

use changes::Kinds;

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

/// The simple kinds' objects as they would be stored by `owner`.
fn desired_objects(desired: &Desired, owner: &str) -> Vec<ObjState> {
    desired
        .objects
        .values()
        .map(|o| ObjState {
            kind: o.kind,
            name: o.name.clone(),
            spec: o.spec.clone(),
            managed_by: Some(owner.to_string()),
            source: Some(o.source.clone()),
        })
        .collect()
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
        objects: rows(desired_objects(desired, owner)),
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
    let want_objects = desired_objects(desired, owner);
    for kind in Kind::STORED {
        let want = want_objects.iter().filter(|o| o.kind == kind).cloned();
        let rows: Vec<Row<ObjState>> = observed
            .objects
            .iter()
            .filter(|r| r.state.kind == kind)
            .cloned()
            .collect();
        let changes = kinds.plan(want.collect(), &rows);
        p.objects.extend(changes);
    }
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
    use crate::manifest::{DesiredProject, UrlState};
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

    #[test]
    fn access_kinds_are_planned_owned_and_pruned_like_the_others() {
        use crate::manifest::DesiredObject;
        let mut d = Desired::default();
        for (kind, spec) in [
            (Kind::ApiToken, json!({"sha256": "ab".repeat(32)})),
            (
                Kind::RoleBinding,
                json!({"role": "viewer", "projects": ["*"], "subjects": [{"token": "ci"}]}),
            ),
        ] {
            d.objects.insert(
                (kind, "ci".into()),
                DesiredObject {
                    kind,
                    name: "ci".into(),
                    spec,
                    source: "access.yaml".into(),
                },
            );
        }
        assert_eq!(
            plan(&d, &Observed::default(), "cpi", false).counts().create,
            2
        );
        // Another owner's token of that name is a conflict, not overwritten.
        let mut o = observed_from_manifests(&d, "team-b");
        for r in &mut o.objects {
            r.id = Some(Uuid::new_v4());
            r.stored_digest = Some(object_digest(&r.state));
            r.applied_digest = r.stored_digest.clone();
        }
        let p = plan(&d, &o, "cpi", false);
        assert_eq!(p.conflicts.len(), 2, "{:?}", p.conflicts);
        // Our own rows, edited by hand, are drift; undeclared, they are pruned.
        for r in &mut o.objects {
            r.state.managed_by = Some("cpi".into());
            r.applied_digest = Some(object_digest(&r.state));
        }
        o.objects[0].state.spec = json!({"sha256": "cd".repeat(32)});
        o.objects[0].stored_digest = Some(object_digest(&o.objects[0].state));
        let p = plan(&d, &o, "cpi", false);
        assert_eq!(p.counts().drift, 1);
        let p = plan(&Desired::default(), &o, "cpi", false);
        assert_eq!(p.counts().delete, 2);
    }

    #[test]
    fn simple_kinds_create_update_and_prune_by_kind_and_name() {
        use crate::manifest::DesiredObject;
        let mut d = Desired::default();
        for (kind, name) in [(Kind::Provider, "ops"), (Kind::Alert, "ops")] {
            d.objects.insert(
                (kind, name.into()),
                DesiredObject {
                    kind,
                    name: name.into(),
                    spec: json!({"type": "webhook", "url_file": "/s/u"}),
                    source: "n.yaml".into(),
                },
            );
        }
        let p = plan(&d, &Observed::default(), "cpi", false);
        assert_eq!(p.counts().create, 2, "same name, two kinds");
        let mut o = observed_from_manifests(&d, "cpi");
        for r in &mut o.objects {
            r.stored_digest = Some(object_digest(&r.state));
            r.applied_digest = r.stored_digest.clone();
        }
        assert!(plan(&d, &o, "cpi", false).is_empty());
        let mut d2 = d.clone();
        d2.objects
            .get_mut(&(Kind::Provider, "ops".into()))
            .unwrap()
            .spec = json!({"type": "webhook", "url_file": "/s/other"});
        d2.objects.remove(&(Kind::Alert, "ops".into()));
        let p = plan(&d2, &o, "cpi", false);
        let got: Vec<_> = p
            .objects
            .iter()
            .map(|c| {
                (
                    c.after.as_ref().or(c.before.as_ref()).unwrap().kind,
                    c.action,
                    c.fields.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::Provider, Action::Update, vec!["spec"]),
                (Kind::Alert, Action::Delete, vec![])
            ]
        );
        let text = crate::render::text(&p, false);
        assert!(text.contains("~ Provider ops (update: spec)"), "{text}");
        assert!(text.contains("- Alert ops (delete)"), "{text}");
        assert!(text.contains("+  url_file: /s/other"), "{text}");
    }
}
