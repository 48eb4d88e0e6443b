//! Loading and validating a manifests folder into the desired state.
//!
//! Fail-closed: every problem of every file is collected, and one problem
//! anywhere makes the whole set invalid, so nothing is applied from it.
//!
//! [`model`] holds the documents' types; the private modules hold the
//! desired state a folder declares (`desired`) and the problems found
//! (`error`), read a folder (`folder`), check a document's YAML text and
//! locate its problems (`text`), parse the envelope every document shares
//! and read its secret files (`envelope`), apply each kind's rules
//! (`validate`), and those of the simple kinds, kept as plain JSON (`simple`).

use std::path::Path;

pub mod access;
mod desired;
mod envelope;
mod error;
mod folder;
pub mod model;
pub mod notify;
mod shape;
mod simple;
mod text;
mod validate;

pub use desired::{
    Desired, DesiredConnection, DesiredObject, DesiredProject, DesiredToken, Loaded, Secrets,
    UrlState,
};
pub use error::{InvalidManifests, ManifestError};
pub use folder::{check_text, load, load_confined, MAX_FILE_BYTES};
pub use model::{ConnectionSpec, Envelope, Kind, Metadata, ProjectSpec, API_VERSION};
pub use shape::{closest, parse_json};
pub use text::{expanded_nodes, too_deep, MAX_EXPANDED_NODES, MAX_NESTING_DEPTH};

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
