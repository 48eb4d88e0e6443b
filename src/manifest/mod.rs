//! Loading and validating a manifests folder into the desired state.
//!
//! Fail-closed: every problem of every file is collected, and one problem
//! anywhere makes the whole set invalid, so nothing is applied from it.
//!
//! [`model`] holds the documents' types; the private modules read a folder
//! (`folder`), check a document's YAML text and locate its problems
//! (`text`), and apply each kind's rules (`validate`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::secret::Secret;

mod folder;
pub mod model;
mod text;
mod validate;

pub use folder::{check_text, load, load_confined};
pub use model::{ConnectionSpec, Envelope, Kind, Metadata, ProjectSpec};
pub use text::expanded_nodes;

/// The only `apiVersion` manifests may have.
pub const API_VERSION: &str = "cpi/v1";

/// One problem, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file, relative to the manifests folder.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong (never a secret's value).
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// The whole set is invalid; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("invalid manifests ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct InvalidManifests(pub Vec<ManifestError>);

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
            .collect()
    }
}

/// The largest manifest file read (a manifests folder is reviewed text,
/// not data).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The most YAML nodes (lines, counted with every alias expanded) one
/// document may stand for: aliases that replay a large anchor many times
/// would otherwise make a small file take gigabytes to load.
pub const MAX_EXPANDED_NODES: u64 = 200_000;

/// The git revision of the manifests folder, when it is a git checkout.
pub fn revision(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests;
