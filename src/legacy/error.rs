//! What can stop a conversion: a legacy config's problems, and an input
//! folder that cannot be read.

use std::path::PathBuf;

use crate::rules::NameError;

/// Why a legacy config cannot be converted; `at` names its file (and
/// document). Never holds a variable's value: it is the secret.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// A document that is not a mapping.
    #[error("{at}: expected a mapping (a legacy project config)")]
    NotAMapping {
        /// Where.
        at: String,
    },
    /// A manifest of another kind.
    #[error("{at}: a manifest that is not a Project has nothing to convert")]
    NotAProject {
        /// Where.
        at: String,
    },
    /// A Project manifest without `spec` mapping.
    #[error("{at}: a Project needs a `spec` mapping")]
    NoSpec {
        /// Where.
        at: String,
    },
    /// A Project manifest that already names a Connection.
    #[error("{at}: no `connection.env_var`: this Project is not a legacy config")]
    ProjectNotLegacy {
        /// Where.
        at: String,
    },
    /// A config without `connection`.
    #[error("{at}: no `connection.env_var`: not a legacy project config")]
    NotLegacy {
        /// Where.
        at: String,
    },
    /// A key that must hold text.
    #[error("{at}: `{key}` must be a string")]
    NotAString {
        /// Where.
        at: String,
        /// The key.
        key: &'static str,
    },
    /// `connection` that is not `{env_var: NAME}`.
    #[error("{at}: `connection` must be a mapping `{{env_var: NAME}}`")]
    ConnectionNotAMapping {
        /// Where.
        at: String,
    },
    /// `connection` with other keys than `env_var`.
    #[error("{at}: `connection` must hold exactly `env_var` (found {keys} keys)")]
    ConnectionKeys {
        /// Where.
        at: String,
        /// How many keys it holds.
        keys: usize,
    },
    /// `connection.env_var` empty or not text.
    #[error("{at}: `connection.env_var` must name an environment variable")]
    NoEnvVar {
        /// Where.
        at: String,
    },
    /// No `name`, and no lone document whose file could name it.
    #[error("{at}: the project has no `name` (and the file holds several documents)")]
    NoName {
        /// Where.
        at: String,
    },
    /// A name against the manifests' name rule.
    #[error("{at}: project name {source} to be a metadata.name")]
    Name {
        /// Where.
        at: String,
        /// The rule broken.
        #[source]
        source: NameError,
    },
    /// A config that does not parse as a manifest config.
    #[error("{at}: config: {source}")]
    Config {
        /// Where.
        at: String,
        /// Why it does not parse.
        #[source]
        source: serde_yaml::Error,
    },
    /// A config that breaks the config's rules.
    #[error("{at}: config.{}", .problems.join("; config."))]
    InvalidConfig {
        /// Where.
        at: String,
        /// Every problem.
        problems: Vec<String>,
    },
    /// Two documents of one project.
    #[error("{at}: duplicate project {name:?} (also in {first})")]
    DuplicateProject {
        /// Where.
        at: String,
        /// The project.
        name: String,
        /// Where it was first.
        first: String,
    },
    /// Two variables whose connection names collide.
    #[error("environment variables {first} and {second} would both become connection {name:?}; rename one in the legacy configs")]
    SameConnectionName {
        /// The variable seen first.
        first: String,
        /// The other.
        second: String,
        /// The connection name of both.
        name: String,
    },
    /// A variable that is not set (or empty).
    #[error("environment variable {var} is not set (it holds the database URL of project(s) {}): set it and rerun", .projects.join(", "))]
    NotSet {
        /// The variable.
        var: String,
        /// The projects that use it.
        projects: Vec<String>,
    },
    /// A variable whose value is not a PostgreSQL URL.
    #[error("environment variable {var} does not hold a postgres:// or postgresql:// URL")]
    NotAUrl {
        /// The variable.
        var: String,
    },
}

/// Why the input folder cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// `--input` is not a folder.
    #[error("--input {} is not a folder", .0.display())]
    NotAFolder(PathBuf),
    /// A folder or file that cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Files that are not YAML or JSON, one message per document.
    #[error("cannot parse the legacy configs:\n  {}", .0.join("\n  "))]
    Parse(Vec<String>),
    /// Nothing to convert.
    #[error("--input {}: no *.yaml, *.yml or *.json file found", .0.display())]
    Empty(PathBuf),
}
