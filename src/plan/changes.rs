//! Each wanted state against its row: create, update (which fields, what
//! of the secret, drift, adoption), conflict, or delete.

use std::collections::{HashMap, HashSet};

use super::model::{Action, Change, Conflict, SecretNote};
use super::state::{ConnState, ObjState, ProjState, Row};
use crate::manifest::{Kind, UrlState};
use crate::secret;

/// The URL fields of two states: (changed, what to say of the secret).
fn compare_url(desired: &UrlState, observed: &UrlState) -> (bool, SecretNote) {
    use UrlState::*;
    match (desired, observed) {
        (Known(a), Known(b)) => {
            if a == b {
                (false, SecretNote::None)
            } else if secret_parts(a.expose()) != secret_parts(b.expose()) {
                (true, SecretNote::Changed)
            } else {
                (true, SecretNote::None)
            }
        }
        (Unknown, _) | (_, Unknown) => (false, SecretNote::Unknown),
        (PasswordUnknown(base), Known(u)) | (Known(u), PasswordUnknown(base)) => (
            secret::url_without_secrets(u.expose()).as_deref() != Some(base.as_str()),
            SecretNote::Unknown,
        ),
        (PasswordUnknown(a), PasswordUnknown(b)) => (a != b, SecretNote::Unknown),
    }
}

/// The secret parts of a URL (password, secret query parameters), to tell a
/// secret change from a visible one without looking at either value again.
fn secret_parts(raw: &str) -> Option<(Option<String>, Vec<String>)> {
    let url = url::Url::parse(raw).ok()?;
    let visible = secret::url_without_secrets(raw)?;
    let params: Vec<String> = url
        .query_pairs()
        .filter(|(k, v)| !visible.contains(&format!("{k}={v}")))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Some((url.password().map(str::to_string), params))
}

fn ownership(owner: &str, row_owner: &Option<String>, adopt: bool) -> Result<bool, ()> {
    match row_owner {
        Some(o) if o == owner => Ok(false),
        _ if adopt => Ok(true),
        _ => Err(()),
    }
}

/// What the connection and project rows share for planning.
pub(super) trait State: Clone {
    /// The manifest kind, for conflicts.
    fn kind(&self) -> Kind;
    fn name(&self) -> &str;
    fn managed_by(&self) -> &Option<String>;
    /// What a create can say of the secret: nothing, but for a connection
    /// (a project's config holds no secret; an object's secrets are files,
    /// named by path, not in its spec).
    fn secret_note(&self) -> SecretNote {
        SecretNote::None
    }
    /// The fields that differ from `have`, and what to say of the secret.
    fn changed_fields(&self, have: &Self) -> (Vec<&'static str>, SecretNote);
}

/// `State::name` and `State::managed_by`, which every state keeps in
/// fields of those names.
macro_rules! name_and_owner {
    () => {
        fn name(&self) -> &str {
            &self.name
        }
        fn managed_by(&self) -> &Option<String> {
            &self.managed_by
        }
    };
}

impl State for ConnState {
    fn kind(&self) -> Kind {
        Kind::Connection
    }
    name_and_owner!();
    fn secret_note(&self) -> SecretNote {
        match self.url {
            UrlState::Known(_) => SecretNote::None,
            _ => SecretNote::Unknown,
        }
    }
    fn changed_fields(&self, have: &Self) -> (Vec<&'static str>, SecretNote) {
        let (url_changed, secret) = compare_url(&self.url, &have.url);
        let fields = [
            ("description", self.description != have.description),
            ("database_url", url_changed),
            ("managed_by", self.managed_by != have.managed_by),
            ("source", self.source != have.source),
        ];
        (changed(fields), secret)
    }
}

impl State for ProjState {
    fn kind(&self) -> Kind {
        Kind::Project
    }
    name_and_owner!();
    fn changed_fields(&self, have: &Self) -> (Vec<&'static str>, SecretNote) {
        let fields = [
            ("description", self.description != have.description),
            ("connection", self.connection != have.connection),
            ("config", self.config != have.config),
            ("managed_by", self.managed_by != have.managed_by),
            ("source", self.source != have.source),
        ];
        (changed(fields), SecretNote::None)
    }
}

impl State for ObjState {
    fn kind(&self) -> Kind {
        self.kind
    }
    name_and_owner!();
    fn changed_fields(&self, have: &Self) -> (Vec<&'static str>, SecretNote) {
        let fields = [
            ("spec", self.spec != have.spec),
            ("managed_by", self.managed_by != have.managed_by),
            ("source", self.source != have.source),
        ];
        (changed(fields), SecretNote::None)
    }
}

/// The names of the fields marked changed, in order.
fn changed<const N: usize>(fields: [(&'static str, bool); N]) -> Vec<&'static str> {
    fields
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
}

/// The parts of a [`Plan`] both kinds add to, while each kind is planned.
pub(super) struct Kinds<'a> {
    pub(super) owner: &'a str,
    pub(super) adopt: bool,
    pub(super) conflicts: &'a mut Vec<Conflict>,
    pub(super) unchanged: &'a mut usize,
    pub(super) managed: &'a mut usize,
}

impl Kinds<'_> {
    /// The changes of one kind: creates and updates in the order wanted,
    /// then deletes of this owner's undeclared rows by name.
    pub(super) fn plan<T: State>(&mut self, want: Vec<T>, observed: &[Row<T>]) -> Vec<Change<T>> {
        let owner = self.owner;
        let ours = |r: &&Row<T>| r.state.managed_by().as_deref() == Some(owner);
        *self.managed += observed.iter().filter(ours).count();
        let rows: HashMap<&str, &Row<T>> = observed.iter().map(|r| (r.state.name(), r)).collect();
        let declared: HashSet<String> = want.iter().map(|w| w.name().to_string()).collect();
        let mut changes = Vec::new();
        for want in want {
            let Some(row) = rows.get(want.name()) else {
                changes.push(create(want));
                continue;
            };
            let Ok(adopting) = ownership(owner, row.state.managed_by(), self.adopt) else {
                self.conflicts.push(Conflict {
                    kind: want.kind(),
                    name: want.name().to_string(),
                    owner: row.state.managed_by().clone(),
                });
                continue;
            };
            let have = &row.state;
            let (fields, secret) = want.changed_fields(have);
            if fields.is_empty() {
                *self.unchanged += 1;
                continue;
            }
            let drift = !adopting
                && row.applied_digest.is_some()
                && row.stored_digest.is_some()
                && row.stored_digest != row.applied_digest;
            changes.push(Change {
                action: Action::Update,
                name: want.name().to_string(),
                id: row.id,
                before: Some(have.clone()),
                after: Some(want),
                fields,
                drift,
                adopt: adopting,
                secret,
            });
        }
        let mut deletes: Vec<Change<T>> = observed
            .iter()
            .filter(ours)
            .filter(|r| !declared.contains(r.state.name()))
            .map(delete)
            .collect();
        deletes.sort_by(|a, b| a.name.cmp(&b.name));
        changes.extend(deletes);
        changes
    }
}

fn create<T: State>(want: T) -> Change<T> {
    Change {
        action: Action::Create,
        name: want.name().to_string(),
        id: None,
        before: None,
        secret: want.secret_note(),
        after: Some(want),
        fields: Vec::new(),
        drift: false,
        adopt: false,
    }
}

fn delete<T: State>(row: &Row<T>) -> Change<T> {
    Change {
        action: Action::Delete,
        name: row.state.name().to_string(),
        id: row.id,
        before: Some(row.state.clone()),
        after: None,
        fields: Vec::new(),
        drift: false,
        adopt: false,
        secret: SecretNote::None,
    }
}
