//! `cpi export`: manifests for the rows that exist, to bring an existing
//! management database under git. Row → manifest text is pure (below);
//! reading the rows and writing the files happen at the edges.
//!
//! A connection's URL is split so that git gets no secret: a URL without
//! password becomes `database_url`; one with a password becomes
//! `database_url` (password removed) + `password_file`; anything that would
//! not load back byte for byte (secret query parameters, an encoding the
//! loader would write differently) goes whole into a `database_url_file`.
//! Either way the manifests load back to exactly the stored URL, so
//! `cpi diff` on the result finds nothing but the ownership change.
//!
//! The kinds stored in `cpi_objects` (Provider, Alert, Receiver, and any
//! kind stored there later) are exported generically: the spec as stored.
//! It names secrets only by their `*_file` paths (the table never holds a
//! secret), so the manifest is the row and nothing is written beside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ProjectConfig;
use crate::crypto::CryptoError;
use crate::manifest::{ConnectionSpec, Envelope, Kind, ProjectSpec};
use crate::output::{Files, SecretRefs};
use crate::plan::ObjState;
use crate::rules::{self, NameError, UrlError};
use crate::secret::{self, Secret};
use crate::store::{ConnectionRow, ProjectRow};

const HEADER: &str = "# Exported by `cpi export` from the management database.\n";

/// Why a row cannot become a manifest. Never holds a URL.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The stored URL is not a PostgreSQL URL.
    #[error("the stored URL: {0}")]
    StoredUrl(#[source] UrlError),
    /// A connection named against the manifests' name rule.
    #[error("connection name {0} to be a metadata.name; rename the row first")]
    ConnectionName(#[source] NameError),
    /// A connection whose stored URL cannot be decrypted.
    #[error("connection {name:?}: {source}")]
    Sealed {
        /// The connection.
        name: String,
        /// Why it cannot be decrypted.
        #[source]
        source: CryptoError,
    },
    /// A connection whose URL cannot be split for a manifest.
    #[error("connection {name:?}: {source}")]
    ConnectionUrl {
        /// The connection.
        name: String,
        /// Why its URL does not split.
        #[source]
        source: Box<ExportError>,
    },
    /// A project named against the manifests' name rule.
    #[error("project name {0} to be a metadata.name; rename the row first")]
    ProjectName(#[source] NameError),
    /// A project without connection: a manifest needs one.
    #[error("project {0:?} has no connection (connection_id is NULL), and a Project manifest needs spec.connection; give the row a connection, or write its manifest by hand")]
    NoConnection(String),
    /// A project whose stored config does not parse.
    #[error("project {name:?}: its stored config is not a valid manifest config ({source}); a legacy config with connection.env_var is converted by `cpi convert-legacy`")]
    UnparsedConfig {
        /// The project.
        name: String,
        /// Why its config does not parse.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// A project whose stored config breaks the config's rules.
    #[error("project {name:?}: its stored config is invalid: {}", .problems.join("; "))]
    InvalidConfig {
        /// The project.
        name: String,
        /// Every problem.
        problems: Vec<String>,
    },
    /// A `cpi_objects` row named against the manifests' name rule.
    #[error("{kind} name {source} to be a metadata.name; rename the row first")]
    ObjectName {
        /// Its kind.
        kind: Kind,
        /// Why the name does not do.
        #[source]
        source: NameError,
    },
    /// A project whose connection was left out.
    #[error("project {project:?}: its connection {connection:?} was not exported")]
    ConnectionLeftOut {
        /// The project.
        project: String,
        /// Its connection.
        connection: String,
    },
}

/// Where a stored URL goes in a manifest.
#[derive(Debug, PartialEq, Eq)]
pub enum UrlSplit {
    /// No secret in it: the URL itself goes into git.
    Plain(String),
    /// `database_url` without the password, the password in a file.
    Password {
        /// The URL without its password.
        url: String,
        /// The password, decoded.
        password: Secret,
    },
    /// The whole URL in a `database_url_file`.
    Whole(Secret),
}

/// Splits a stored URL so that what the manifest loader rebuilds from the
/// parts equals the stored text exactly. The error never contains the URL.
pub fn split_url(raw: &str) -> Result<UrlSplit, ExportError> {
    let url = rules::parse_pg_url(raw).map_err(ExportError::StoredUrl)?;
    let whole = || Ok(UrlSplit::Whole(Secret::new(raw)));
    let Some(visible) = secret::url_without_secrets(raw) else {
        return whole();
    };
    let mut without_password = url.clone();
    let _ = without_password.set_password(None);
    if without_password.as_str() != visible {
        // Secret query parameters: only a whole-URL file keeps them out of git.
        return whole();
    }
    match url.password() {
        None if url.as_str() == raw => Ok(UrlSplit::Plain(raw.to_string())),
        None => whole(),
        Some(encoded) => {
            let password = percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .map(|p| p.into_owned());
            let Ok(password) = password else {
                return whole();
            };
            // The loader sets the file's password on `database_url`; only
            // when that rebuilds the stored text is the split faithful.
            let mut rebuilt = without_password.clone();
            if url.username().is_empty() || rebuilt.set_password(Some(&password)).is_err() {
                return whole();
            }
            if rebuilt.as_str() == raw {
                Ok(UrlSplit::Password {
                    url: visible,
                    password: Secret::new(password),
                })
            } else {
                whole()
            }
        }
    }
}

/// A connection row as a manifest, and the secret file it references.
pub fn connection_manifest(
    row: &ConnectionRow,
    refs: &SecretRefs,
) -> Result<(String, Option<(PathBuf, Secret)>), ExportError> {
    rules::check_name(&row.name).map_err(ExportError::ConnectionName)?;
    let url = row.url().map_err(|source| ExportError::Sealed {
        name: row.name.clone(),
        source,
    })?;
    let split = split_url(url.expose()).map_err(|e| ExportError::ConnectionUrl {
        name: row.name.clone(),
        source: Box::new(e),
    })?;
    let mut spec = ConnectionSpec {
        description: row.description.clone(),
        ..ConnectionSpec::default()
    };
    let secret = match split {
        UrlSplit::Plain(url) => {
            spec.database_url = Some(url);
            None
        }
        UrlSplit::Password { url, password } => {
            let file = format!("{}.pass", row.name);
            spec.database_url = Some(url);
            spec.password_file = Some(refs.path(&file));
            Some((PathBuf::from(file), password))
        }
        UrlSplit::Whole(url) => {
            let file = format!("{}.url", row.name);
            spec.database_url_file = Some(refs.path(&file));
            Some((PathBuf::from(file), url))
        }
    };
    let text = Envelope::new(Kind::Connection, &row.name, spec).to_yaml(HEADER);
    Ok((text, secret))
}

/// A project row as a manifest: `spec.connection` is the connection's name,
/// `spec.config` the stored config without `name` (set from metadata.name).
pub fn project_manifest(row: &ProjectRow) -> Result<String, ExportError> {
    rules::check_name(&row.name).map_err(ExportError::ProjectName)?;
    let Some(connection) = &row.connection_name else {
        return Err(ExportError::NoConnection(row.name.clone()));
    };
    let mut config: ProjectConfig =
        row.parsed
            .clone()
            .map_err(|source| ExportError::UnparsedConfig {
                name: row.name.clone(),
                source,
            })?;
    config.name = None;
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(ExportError::InvalidConfig {
            name: row.name.clone(),
            problems,
        });
    }
    let spec = ProjectSpec {
        description: row.description.clone(),
        connection: connection.clone(),
        config,
    };
    Ok(Envelope::new(Kind::Project, &row.name, spec).to_yaml(HEADER))
}

/// A `cpi_objects` row as a manifest, under `<kind>s/` (`providers/`,
/// `alerts/`, …): the spec as stored.
pub fn object_manifest(obj: &ObjState) -> Result<(PathBuf, String), ExportError> {
    rules::check_name(&obj.name).map_err(|source| ExportError::ObjectName {
        kind: obj.kind,
        source,
    })?;
    let path = Path::new(&format!("{}s", obj.kind.as_str().to_lowercase()))
        .join(format!("{}.yaml", obj.name));
    Ok((
        path,
        Envelope::new(obj.kind, &obj.name, &obj.spec).to_yaml(HEADER),
    ))
}

/// What `cpi export` writes, and the rows it leaves out (with the reason).
#[derive(Debug, Default)]
pub struct Exported {
    /// The manifests and secret files to write.
    pub files: Files,
    /// Why each left-out row was left out.
    pub skipped: Vec<ExportError>,
}

/// Every row as a manifest. A row that cannot become a valid manifest is
/// skipped with its reason, and so is a project whose connection is
/// skipped: the exported folder must validate as a whole.
pub fn export(
    conns: &[ConnectionRow],
    projs: &[ProjectRow],
    objects: &[ObjState],
    refs: &SecretRefs,
) -> Exported {
    let mut out = Exported::default();
    let mut exported = BTreeSet::new();
    for row in conns {
        match connection_manifest(row, refs) {
            Ok((text, secret)) => {
                out.files.manifests.push((
                    Path::new("connections").join(format!("{}.yaml", row.name)),
                    text,
                ));
                out.files.secrets.extend(secret);
                exported.insert(row.name.as_str());
            }
            Err(e) => out.skipped.push(e),
        }
    }
    for row in projs {
        if let Some(c) = &row.connection_name {
            if !exported.contains(c.as_str()) {
                out.skipped.push(ExportError::ConnectionLeftOut {
                    project: row.name.clone(),
                    connection: c.clone(),
                });
                continue;
            }
        }
        match project_manifest(row) {
            Ok(text) => out.files.manifests.push((
                Path::new("projects").join(format!("{}.yaml", row.name)),
                text,
            )),
            Err(e) => out.skipped.push(e),
        }
    }
    for obj in objects {
        match object_manifest(obj) {
            Ok(file) => out.files.manifests.push(file),
            Err(e) => out.skipped.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SecretText;

    fn conn(name: &str, url: &str) -> ConnectionRow {
        ConnectionRow {
            id: uuid::Uuid::new_v4(),
            name: name.into(),
            description: Some("d: with colon".into()),
            database_url: SecretText(Secret::new(url)),
            managed_by: None,
            source: None,
            created_at: None,
            updated_at: None,
        }
    }

    fn proj(name: &str, connection: Option<&str>, config: serde_json::Value) -> ProjectRow {
        ProjectRow {
            id: uuid::Uuid::new_v4(),
            name: name.into(),
            description: None,
            connection_id: connection.map(|_| uuid::Uuid::new_v4()),
            connection_name: connection.map(str::to_string),
            parsed: crate::store::parse_config(&config),
            config,
            managed_by: None,
            source: None,
            created_at: None,
            updated_at: None,
        }
    }

    fn refs() -> SecretRefs {
        SecretRefs {
            prefix: PathBuf::from("secrets"),
            needs_secrets_dir: false,
        }
    }

    #[test]
    fn urls_split_so_that_they_load_back_exactly() {
        assert_eq!(
            split_url("postgresql://u@h:5432/db").unwrap(),
            UrlSplit::Plain("postgresql://u@h:5432/db".into())
        );
        assert_eq!(
            split_url("postgresql://u:p%40ss@h:5432/db?sslmode=require").unwrap(),
            UrlSplit::Password {
                url: "postgresql://u@h:5432/db?sslmode=require".into(),
                password: Secret::new("p@ss"),
            }
        );
        for whole in [
            "postgresql://u@h/db?password=x",
            "postgresql://u:p%21w@h/db", // `!` would come back unencoded
        ] {
            assert_eq!(
                split_url(whole).unwrap(),
                UrlSplit::Whole(Secret::new(whole))
            );
        }
        let e = split_url("mysql://u:topsecret@h/db")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("topsecret"), "{e}");
    }

    #[test]
    fn connection_with_password_gets_a_password_file() {
        let (text, secret) =
            connection_manifest(&conn("abc", "postgresql://u:pw123@h/db"), &refs()).unwrap();
        assert!(!text.contains("pw123"), "{text}");
        assert!(text.contains("database_url: postgresql://u@h/db"), "{text}");
        assert!(text.contains("password_file: secrets/abc.pass"), "{text}");
        assert!(text.contains("description: 'd: with colon'"), "{text}");
        let (path, value) = secret.unwrap();
        assert_eq!(path, PathBuf::from("abc.pass"));
        assert_eq!(value.expose(), "pw123");
    }

    #[test]
    fn project_config_loses_name_and_keeps_the_rest() {
        let text = project_manifest(&proj(
            "p1",
            Some("abc"),
            serde_json::json!({"name": "p1", "inbox": "/in", "defaults": {"primary_key": "id"}}),
        ))
        .unwrap();
        assert_eq!(
            text,
            format!("{HEADER}apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: p1\nspec:\n  connection: abc\n  config:\n    inbox: /in\n    defaults:\n      primary_key: id\n")
        );
    }

    #[test]
    fn rows_that_cannot_be_manifests_are_skipped_with_a_reason() {
        let conns = [
            conn("abc", "postgresql://u@h/db"),
            conn("bad name", "postgresql://u@h/db"),
        ];
        let projs = [
            proj("orphan", None, serde_json::json!({})),
            proj("via_bad", Some("bad name"), serde_json::json!({})),
            proj(
                "legacy",
                Some("abc"),
                serde_json::json!({"connection": {"env_var": "X"}}),
            ),
            proj("ok", Some("abc"), serde_json::json!({})),
        ];
        let out = export(&conns, &projs, &[], &refs());
        let names: Vec<_> = out.files.manifests.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            names,
            [
                PathBuf::from("connections/abc.yaml"),
                PathBuf::from("projects/ok.yaml")
            ]
        );
        assert_eq!(out.skipped.len(), 4, "{:?}", out.skipped);
        assert!(out
            .skipped
            .iter()
            .any(|s| s.to_string().contains("connection_id is NULL")));
        assert!(out
            .skipped
            .iter()
            .any(|s| s.to_string().contains("convert-legacy")));
    }

    #[test]
    fn objects_export_their_spec_as_stored_under_their_kind() {
        let obj = |name: &str| ObjState {
            kind: Kind::Provider,
            name: name.into(),
            spec: serde_json::json!({"type": "webhook", "url_file": "/etc/cpi/hook.url"}),
            managed_by: None,
            source: None,
        };
        let out = export(&[], &[], &[obj("hook"), obj("bad name")], &refs());
        assert_eq!(
            out.files.manifests,
            [(
                PathBuf::from("providers/hook.yaml"),
                format!("{HEADER}apiVersion: cpi/v1\nkind: Provider\nmetadata:\n  name: hook\nspec:\n  type: webhook\n  url_file: /etc/cpi/hook.url\n")
            )]
        );
        assert!(out.files.secrets.is_empty());
        assert_eq!(out.skipped.len(), 1);
        assert!(
            out.skipped[0].to_string().starts_with("Provider name "),
            "{}",
            out.skipped[0]
        );
    }
}
