//! The one manifest model: the loader deserializes it, `cpi export` and
//! `cpi convert-legacy` serialize it, and `cpi schema` describes it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::ProjectConfig;

/// The only `apiVersion` manifests may have.
pub const API_VERSION: &str = "cpi/v1";

/// What a manifest declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A target database.
    Connection,
    /// An inbox and its import config.
    Project,
    /// A named API token, by its SHA-256.
    ApiToken,
    /// A role granted on projects to subjects.
    RoleBinding,
    /// Where notifications go (webhook, Slack, mail).
    Provider,
    /// Which events are sent to which Provider.
    Alert,
    /// `POST /hooks/{name}`: a signed push that wakes cpi.
    Receiver,
}

impl Kind {
    /// Every kind, in the order `cpi schema` lists them.
    pub const ALL: [Kind; 7] = [
        Kind::Connection,
        Kind::Project,
        Kind::ApiToken,
        Kind::RoleBinding,
        Kind::Provider,
        Kind::Alert,
        Kind::Receiver,
    ];

    /// The kinds whose spec is plain data, stored as JSON in one table
    /// (`cpi_objects`) and planned by one generic path.
    pub const SIMPLE: [Kind; 3] = [Kind::Provider, Kind::Alert, Kind::Receiver];

    /// The kinds whose rows are in `cpi_objects` (their specs are plain
    /// JSON): the simple kinds and the access kinds.
    pub const STORED: [Kind; 5] = [
        Kind::ApiToken,
        Kind::RoleBinding,
        Kind::Provider,
        Kind::Alert,
        Kind::Receiver,
    ];

    /// The name written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Connection => "Connection",
            Kind::Project => "Project",
            Kind::ApiToken => "ApiToken",
            Kind::RoleBinding => "RoleBinding",
            Kind::Provider => "Provider",
            Kind::Alert => "Alert",
            Kind::Receiver => "Receiver",
        }
    }

    /// The kind named `s`, exactly as written in `kind:`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One cpi/v1 manifest document.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope<S> {
    /// Always [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `Connection`, `Project`, `ApiToken`, `RoleBinding`, `Provider`, `Alert` or `Receiver`.
    // Described as a string: `cpi schema` sets its `const` per kind.
    #[schemars(with = "String")]
    pub kind: Kind,
    /// The object's name.
    pub metadata: Metadata,
    /// The kind's content.
    pub spec: S,
}

impl<S> Envelope<S> {
    /// A document of the current [`API_VERSION`].
    pub fn new(kind: Kind, name: &str, spec: S) -> Self {
        Envelope {
            api_version: API_VERSION.to_string(),
            kind,
            metadata: Metadata {
                name: name.to_string(),
            },
            spec,
        }
    }
}

impl<S: Serialize> Envelope<S> {
    /// The document as YAML text after `header` (a comment saying who wrote it).
    pub fn to_yaml(&self, header: &str) -> String {
        format!(
            "{header}{}",
            serde_yaml::to_string(self).expect("a manifest always serializes")
        )
    }
}

/// A manifest's `metadata`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Unique per kind: 1-255 of [A-Za-z0-9_.-], starting with a letter or digit.
    pub name: String,
}

/// Exactly one URL source: `database_url_file`, or `database_url` (with
/// `password_file` for the password).
// Every `Option` field is left out of the output when `None`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSpec {
    /// Free text.
    pub description: Option<String>,
    /// A postgres:// URL without password (a password here is rejected: secrets never live in git).
    pub database_url: Option<String>,
    /// A secret file holding the whole URL (absolute, or relative to --secrets-dir).
    pub database_url_file: Option<String>,
    /// A secret file holding the password for `database_url`.
    pub password_file: Option<String>,
}

/// A Project: its connection and its import config.
// `C` is the config: typed when loaded or exported, the operator's mapping
// as written when converted from a legacy config.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ProjectSpec")]
pub struct ProjectSpec<C = ProjectConfig> {
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The name of a Connection declared in the manifests.
    pub connection: String,
    /// Stored as `cpi_projects.config`; `name` is set from metadata.name.
    pub config: C,
}
