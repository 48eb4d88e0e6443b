//! A row's content, the same whether declared in manifests or found in the
//! management database, so the two compare field by field.

use uuid::Uuid;

use crate::manifest::{Kind, UrlState};

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

/// An object of a simple kind (Provider, Alert, Receiver): its spec is
/// compared as a whole, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjState {
    /// Its kind (one of [`Kind::STORED`]).
    pub kind: Kind,
    /// `name`, unique per kind.
    pub name: String,
    /// `cpi_objects.spec`.
    pub spec: serde_json::Value,
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
    /// Every `cpi_objects` row (the simple kinds).
    pub objects: Vec<Row<ObjState>>,
}
