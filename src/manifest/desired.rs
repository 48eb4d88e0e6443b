//! What a manifests folder declares once loaded: the desired state, by
//! name, with each connection's URL as far as the secret files tell it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::secret::Secret;

/// Whether a missing secret file is an error (`apply`, `run`) or a warning
/// (`validate`, `diff`: they change nothing, and CI has no secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Missing secret files are errors.
    Required,
    /// Missing secret files are warnings; their values compare as unknown.
    Optional,
}

/// A connection's URL as far as the manifests tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlState {
    /// The whole URL, password included.
    Known(Secret),
    /// `database_url` + a `password_file` that is not present: the URL
    /// without its password is known.
    PasswordUnknown(String),
    /// A `database_url_file` that is not present.
    Unknown,
}

/// A Connection as the manifests declare it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredConnection {
    /// `metadata.name`.
    pub name: String,
    /// `spec.description`.
    pub description: Option<String>,
    /// The URL, as far as the secret files tell it.
    pub url: UrlState,
    /// The manifest file, relative to the manifests folder.
    pub source: String,
}

/// A Project as the manifests declare it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredProject {
    /// `metadata.name`.
    pub name: String,
    /// `spec.description`.
    pub description: Option<String>,
    /// The name of its Connection.
    pub connection: String,
    /// The config as stored in `cpi_projects.config` (with `name`).
    pub config: serde_json::Value,
    /// The manifest file, relative to the manifests folder.
    pub source: String,
}

/// Everything the manifests declare, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Connections by name.
    pub connections: BTreeMap<String, DesiredConnection>,
    /// Projects by name.
    pub projects: BTreeMap<String, DesiredProject>,
    /// API tokens by name.
    pub tokens: BTreeMap<String, DesiredToken>,
    /// Role bindings by name.
    pub bindings: BTreeMap<String, crate::access::Binding>,
    /// The `cpi_objects` rows the manifests declare (Provider, Alert,
    /// Receiver, and the ApiTokens and RoleBindings also held above), by kind and name.
    pub objects: BTreeMap<(super::model::Kind, String), DesiredObject>,
}

/// An object stored in `cpi_objects` ([`super::model::Kind::STORED`]): its spec is plain
/// data, stored as JSON. Secret files are named by their resolved path;
/// their content is never part of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    /// Its kind.
    pub kind: super::model::Kind,
    /// `metadata.name`.
    pub name: String,
    /// `spec`, as stored in `cpi_objects.spec`.
    pub spec: serde_json::Value,
    /// The manifest file, relative to the manifests folder.
    pub source: String,
}

/// An ApiToken as the manifests declare it: the hash, never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredToken {
    /// `metadata.name`.
    pub name: String,
    /// The SHA-256 of the token.
    pub sha256: [u8; 32],
    /// After this instant the token is refused.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    /// The manifest file, relative to the manifests folder.
    pub source: String,
}

impl Desired {
    /// The specs of one simple kind, typed, by name (specs that no longer
    /// read as `T` are left out: the loader checked them).
    pub fn specs<T: serde::de::DeserializeOwned>(
        &self,
        kind: super::model::Kind,
    ) -> Vec<(String, T)> {
        self.objects
            .values()
            .filter(|o| o.kind == kind)
            .filter_map(|o| {
                serde_json::from_value(o.spec.clone())
                    .ok()
                    .map(|t| (o.name.clone(), t))
            })
            .collect()
    }

    /// The tokens, as the API recognises them.
    pub fn known_tokens(&self) -> Vec<crate::access::token::KnownToken> {
        self.tokens
            .values()
            .map(|t| crate::access::token::KnownToken {
                name: t.name.clone(),
                sha256: t.sha256,
                expires: t.expires,
            })
            .collect()
    }

    /// Whether any token or binding is declared (anonymous access then defaults to none).
    pub fn declares_access(&self) -> bool {
        !self.tokens.is_empty() || !self.bindings.is_empty()
    }
}

#[cfg(test)]
impl Desired {
    /// This state with one more connection, declared in `source`.
    pub(crate) fn with_connection(
        mut self,
        name: &str,
        description: Option<&str>,
        url: UrlState,
        source: &str,
    ) -> Desired {
        let connection = DesiredConnection {
            name: name.to_string(),
            description: description.map(str::to_string),
            url,
            source: source.to_string(),
        };
        self.connections.insert(name.to_string(), connection);
        self
    }
}

/// A manifests folder, loaded.
#[derive(Debug, Default)]
pub struct Loaded {
    /// What the manifests declare.
    pub desired: Desired,
    /// Missing secret files under [`Secrets::Optional`].
    pub warnings: Vec<String>,
    /// Every secret file referenced, present or not (the daemon watches them).
    pub secret_files: Vec<PathBuf>,
    /// Every manifest file read.
    pub files: Vec<PathBuf>,
    /// The notification kinds' secrets read (webhook URLs, HMAC keys,
    /// SMTP credentials), for scrubbing only: they are read again when used.
    pub notify_secrets: Vec<Secret>,
}

impl Loaded {
    /// All secrets loaded, for scrubbing messages that may echo them.
    pub fn secrets(&self) -> Vec<&Secret> {
        self.desired
            .connections
            .values()
            .filter_map(|c| match &c.url {
                UrlState::Known(s) => Some(s),
                _ => None,
            })
            .chain(&self.notify_secrets)
            .collect()
    }
}
