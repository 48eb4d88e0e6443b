//! `cpi convert-legacy`: project configs that name their target database by
//! an environment variable (`connection.env_var`) become a Connection
//! manifest per distinct variable (its URL in a 0600 secret file), Project
//! manifests that reference it by name, and the secret files.
//!
//! Accepted input, one project per YAML document or JSON file:
//! - the bare legacy config:
//!   `{name, description?, connection: {env_var: ABC_URL}, inbox, defaults, tables, ...}`
//!   (every key but `name`, `description` and `connection` is the config);
//! - a `cpi/v1` Project envelope whose `spec.connection` or
//!   `spec.config.connection` is `{env_var: ...}`.
//!
//! The conversion is pure ([`convert`], given the environment as a
//! function); reading the folder and writing the files are at the edges.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::config::ProjectConfig;
use crate::manifest::{ConnectionSpec, Envelope, Kind, ProjectSpec};
use crate::output::{Files, SecretRefs};
use crate::rules;
use crate::secret::Secret;

mod error;
mod input;

pub use error::{InputError, LegacyError};
pub use input::{read_input, LegacyDoc};

const HEADER: &str = "# Converted by `cpi convert-legacy`.\n";

#[derive(Debug)]
struct LegacyProject {
    at: String,
    name: String,
    description: Option<String>,
    env_var: String,
    config: Mapping,
}

/// The Connection name for an environment variable: lower case, every
/// character outside `[a-z0-9_.-]` replaced by `_`, starting alphanumeric.
pub fn connection_name(env_var: &str) -> String {
    let mut name: String = env_var
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert_str(0, "env");
    }
    name.truncate(255);
    name
}

fn str_field(m: &Mapping, key: &'static str, at: &str) -> Result<Option<String>, LegacyError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(LegacyError::NotAString {
            at: at.to_string(),
            key,
        }),
    }
}

/// `{env_var: NAME}` → `NAME`.
fn env_var_of(v: &Value, at: &str) -> Result<String, LegacyError> {
    let at = || at.to_string();
    let m = v
        .as_mapping()
        .ok_or_else(|| LegacyError::ConnectionNotAMapping { at: at() })?;
    if m.len() != 1 {
        return Err(LegacyError::ConnectionKeys {
            at: at(),
            keys: m.len(),
        });
    }
    match m.get("env_var") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(LegacyError::NoEnvVar { at: at() }),
    }
}

fn parse(doc: &LegacyDoc) -> Result<LegacyProject, LegacyError> {
    let at = doc.at();
    let Some(top) = doc.value.as_mapping() else {
        return Err(LegacyError::NotAMapping { at });
    };
    let stem = || {
        (doc.of == 1)
            .then(|| {
                Path::new(&doc.file)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .flatten()
    };
    let (name, description, env_var, mut config) = if top.contains_key("apiVersion") {
        if top.get("kind").and_then(Value::as_str) != Some("Project") {
            return Err(LegacyError::NotAProject { at });
        }
        let name = top
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let spec = top
            .get("spec")
            .and_then(Value::as_mapping)
            .ok_or_else(|| LegacyError::NoSpec { at: at.clone() })?;
        let mut config = spec
            .get("config")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let env_var = match (spec.get("connection"), config.shift_remove("connection")) {
            (Some(c), None) if c.is_mapping() => env_var_of(c, &at)?,
            (None, Some(c)) | (Some(Value::String(_)), Some(c)) => env_var_of(&c, &at)?,
            _ => return Err(LegacyError::ProjectNotLegacy { at }),
        };
        (name, str_field(spec, "description", &at)?, env_var, config)
    } else {
        let mut config = top.clone();
        let env_var = match config.shift_remove("connection") {
            Some(c) => env_var_of(&c, &at)?,
            None => return Err(LegacyError::NotLegacy { at }),
        };
        let name = str_field(top, "name", &at)?;
        let description = str_field(top, "description", &at)?;
        config.shift_remove("description");
        (name, description, env_var, config)
    };
    config.shift_remove("name");
    let Some(name) = name.or_else(stem) else {
        return Err(LegacyError::NoName { at });
    };
    if let Err(source) = rules::check_name(&name) {
        return Err(LegacyError::Name { at, source });
    }
    // Fail now, with the input file's name, rather than in `cpi validate`.
    let typed: ProjectConfig = match serde_yaml::from_value(Value::Mapping(config.clone())) {
        Ok(t) => t,
        Err(source) => return Err(LegacyError::Config { at, source }),
    };
    let problems = typed.validate();
    if !problems.is_empty() {
        return Err(LegacyError::InvalidConfig { at, problems });
    }
    Ok(LegacyProject {
        at,
        name,
        description,
        env_var,
        config,
    })
}

/// What the conversion produced, and which variable became which connection.
#[derive(Debug, Default)]
pub struct Converted {
    /// The manifests and secret files to write.
    pub files: Files,
    /// (environment variable, connection name, projects using it)
    pub connections: Vec<(String, String, Vec<String>)>,
}

/// Converts every document. Any problem (an unparsable config, a variable
/// that is not set, two variables with the same connection name) fails
/// the whole conversion: every problem is listed, nothing is produced.
pub fn convert(
    docs: &[LegacyDoc],
    env: impl Fn(&str) -> Option<String>,
    refs: &SecretRefs,
) -> Result<Converted, Vec<LegacyError>> {
    let mut errors = Vec::new();
    let mut projects = Vec::new();
    for d in docs {
        match parse(d) {
            Ok(p) => projects.push(p),
            Err(e) => errors.push(e),
        }
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for p in &projects {
        if let Some(first) = seen.insert(&p.name, &p.at) {
            errors.push(LegacyError::DuplicateProject {
                at: p.at.clone(),
                name: p.name.clone(),
                first: first.to_string(),
            });
        }
    }
    let mut by_var: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in &projects {
        by_var.entry(&p.env_var).or_default().push(p.name.clone());
    }
    let mut names: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = Converted::default();
    for (var, users) in &by_var {
        let name = connection_name(var);
        if let Some(other) = names.insert(name.clone(), var) {
            errors.push(LegacyError::SameConnectionName {
                first: other.to_string(),
                second: var.to_string(),
                name,
            });
            continue;
        }
        let value = env(var).map(|v| v.trim().to_string()).unwrap_or_default();
        if value.is_empty() {
            errors.push(LegacyError::NotSet {
                var: var.to_string(),
                projects: users.clone(),
            });
            continue;
        }
        if rules::parse_pg_url(&value).is_err() {
            // Never echo the value: it is the secret.
            errors.push(LegacyError::NotAUrl {
                var: var.to_string(),
            });
            continue;
        }
        let file = format!("{name}.url");
        let spec = ConnectionSpec {
            description: Some(format!("Converted from the environment variable {var}")),
            database_url_file: Some(refs.path(&file)),
            ..ConnectionSpec::default()
        };
        out.files.manifests.push((
            Path::new("connections").join(format!("{name}.yaml")),
            Envelope::new(Kind::Connection, &name, spec).to_yaml(HEADER),
        ));
        out.files
            .secrets
            .push((PathBuf::from(file), Secret::new(value)));
        out.connections
            .push((var.to_string(), name.clone(), users.clone()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for p in projects {
        let spec = ProjectSpec {
            description: p.description,
            connection: connection_name(&p.env_var),
            config: p.config,
        };
        out.files.manifests.push((
            Path::new("projects").join(format!("{}.yaml", p.name)),
            Envelope::new(Kind::Project, &p.name, spec).to_yaml(HEADER),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
