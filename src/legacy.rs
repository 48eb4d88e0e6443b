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
use crate::rules::{self, NameError};
use crate::secret::Secret;

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

const HEADER: &str = "# Converted by `cpi convert-legacy`.\n";

/// One input document: its file (relative to the input folder), its
/// position in the file, and its content.
#[derive(Debug, Clone)]
pub struct LegacyDoc {
    /// The file, relative to the input folder.
    pub file: String,
    /// 0-based document index inside the file.
    pub index: usize,
    /// How many documents the file holds (a lone document may take its
    /// name from the file).
    pub of: usize,
    /// The document as parsed.
    pub value: Value,
}

impl LegacyDoc {
    fn at(&self) -> String {
        if self.of > 1 {
            format!("{} (document {})", self.file, self.index + 1)
        } else {
            self.file.clone()
        }
    }
}

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

/// Every YAML document of every `*.yaml`/`*.yml`/`*.json` below `dir`
/// (hidden files and folders skipped), in path order.
pub fn read_input(dir: &Path) -> Result<Vec<LegacyDoc>, InputError> {
    if !dir.is_dir() {
        return Err(InputError::NotAFolder(dir.to_path_buf()));
    }
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|source| InputError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    files.sort();
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).map_err(|source| InputError::Read {
            path: path.clone(),
            source,
        })?;
        let mut values = Vec::new();
        for d in serde_yaml::Deserializer::from_str(&text) {
            match <Value as serde::Deserialize>::deserialize(d) {
                Ok(Value::Null) => {}
                Ok(v) => values.push(v),
                Err(e) => errors.push(format!("{rel}: {e}")),
            }
        }
        let of = values.len();
        docs.extend(
            values
                .into_iter()
                .enumerate()
                .map(|(index, value)| LegacyDoc {
                    file: rel.clone(),
                    index,
                    of,
                    value,
                }),
        );
    }
    if !errors.is_empty() {
        return Err(InputError::Parse(errors));
    }
    if docs.is_empty() {
        return Err(InputError::Empty(dir.to_path_buf()));
    }
    Ok(docs)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(file: &str, yaml: &str) -> LegacyDoc {
        LegacyDoc {
            file: file.into(),
            index: 0,
            of: 1,
            value: serde_yaml::from_str(yaml).unwrap(),
        }
    }

    fn refs() -> SecretRefs {
        SecretRefs {
            prefix: PathBuf::new(),
            needs_secrets_dir: true,
        }
    }

    const URL: &str = "postgresql://u:pw-x@h/abc";

    fn env(var: &str) -> Option<String> {
        (var == "ABC_URL" || var == "WH_DSN").then(|| format!("{URL}\n"))
    }

    #[test]
    fn names_are_safe() {
        assert_eq!(connection_name("ABC_URL"), "abc_url");
        assert_eq!(connection_name("_X Y"), "env_x_y");
    }

    #[test]
    fn one_connection_per_variable_and_projects_reference_it() {
        let docs = [
            doc("a.yaml", "name: a\ndescription: A\nconnection: {env_var: ABC_URL}\ninbox: /in/a\ndefaults: {primary_key: id}\n"),
            doc("b.json", r#"{"connection": {"env_var": "ABC_URL"}, "inbox": "/in/b"}"#),
            doc("c.yaml", "apiVersion: cpi/v1\nkind: Project\nmetadata: {name: c}\nspec:\n  connection: x\n  config:\n    connection: {env_var: WH_DSN}\n    inbox: /in/c\n"),
        ];
        let out = convert(&docs, env, &refs()).unwrap();
        let files: BTreeMap<_, _> = out.files.manifests.iter().cloned().collect();
        assert_eq!(files.len(), 5);
        assert_eq!(
            files[Path::new("projects/a.yaml")],
            format!("{HEADER}apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: a\nspec:\n  description: A\n  connection: abc_url\n  config:\n    inbox: /in/a\n    defaults:\n      primary_key: id\n")
        );
        assert!(files[Path::new("projects/b.yaml")].contains("name: b\n"));
        assert!(files[Path::new("projects/c.yaml")].contains("connection: wh_dsn\n"));
        assert!(files[Path::new("connections/abc_url.yaml")]
            .contains("database_url_file: abc_url.url\n"));
        assert!(files.values().all(|t| !t.contains("pw-x")));
        assert_eq!(out.files.secrets.len(), 2);
        assert_eq!(out.files.secrets[0].1.expose(), URL);
    }

    #[test]
    fn a_missing_variable_fails_everything_and_is_named() {
        let docs = [
            doc("a.yaml", "connection: {env_var: ABC_URL}\n"),
            doc("b.yaml", "connection: {env_var: NOPE_URL}\n"),
        ];
        let e = convert(&docs, env, &refs()).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].to_string().contains("NOPE_URL is not set"), "{e:?}");
        assert!(e[0].to_string().contains("project(s) b"), "{e:?}");
    }

    #[test]
    fn bad_input_is_reported_per_file_without_the_url() {
        let docs = [
            doc("a.yaml", "name: a\ninbox: /x\n"),
            doc("b.yaml", "connection: {env_var: ABC_URL}\ninbx: /x\n"),
            doc("c.yaml", "connection: {env_var: BAD}\n"),
        ];
        let e = convert(
            &docs,
            |v| (v == "BAD").then(|| "mysql://u:pw-x@h/x".to_string()),
            &refs(),
        )
        .unwrap_err();
        let all = e
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("a.yaml: no `connection.env_var`"), "{all}");
        assert!(
            all.contains("b.yaml: config: unknown field `inbx`"),
            "{all}"
        );
        assert!(
            all.contains("BAD does not hold a postgres:// or postgresql:// URL"),
            "{all}"
        );
        assert!(!all.contains("pw-x"));
    }
}
