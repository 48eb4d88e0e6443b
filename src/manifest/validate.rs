//! One manifest document: its kind told, parsed typed, and checked by the
//! rules of its kind (names, URLs and secret files, project configs).

use std::path::Path;

use super::access::{self, ApiTokenSpec, RoleBindingSpec};
use super::desired::{
    DesiredConnection, DesiredObject, DesiredProject, DesiredToken, Loaded, Secrets, UrlState,
};
use super::envelope::{parse_envelope, read_secret, secret_path};
use super::error::ManifestError;
use super::model::{ConnectionSpec, Kind, ProjectSpec};
use super::shape::{self, Step};
use super::text::{err, DocCtx};
use crate::rules;
use crate::secret::{self, Secret};

pub(super) enum Object {
    Connection(DesiredConnection),
    /// With the error to report if its connection reference is dangling.
    Project(DesiredProject, ManifestError),
    /// With its row for `cpi_objects`.
    ApiToken(DesiredToken, DesiredObject),
    /// With the location of its subjects, for a token no manifest declares,
    /// and its row for `cpi_objects`.
    RoleBinding(crate::access::Binding, ManifestError, DesiredObject),
    /// A Provider, Alert or Receiver, with an Alert's provider reference.
    Simple(super::simple::Parsed),
}

pub(super) fn parse_document(
    ctx: &DocCtx,
    secrets_dir: &Path,
    mode: Secrets,
    loaded: &mut Loaded,
) -> Result<Option<Object>, Vec<ManifestError>> {
    // The common block-style document names its kind on a top-level line:
    // read that and parse once, typed. Anything else (flow style, a missing
    // kind, a legacy config) takes the slow path through a generic Value.
    let quick = ctx
        .text
        .lines()
        .find_map(|l| l.strip_prefix("kind:"))
        .map(str::trim)
        .filter(|k| Kind::parse(k).is_some() && !ctx.text.contains("env_var"));
    let value: serde_yaml::Value;
    let kind = match quick {
        Some(k) => k,
        None => {
            value = serde_yaml::from_str(ctx.text).map_err(|e| vec![ctx.yaml_err(&e)])?;
            if value.is_null() {
                return Ok(None);
            }
            if let Some(spec) = value.get("spec") {
                rules::check_legacy(spec)
                    .map_err(|m| vec![ctx.err_at_key("env_var", m.to_string())])?;
            }
            if value.get("apiVersion").is_none() {
                return Err(vec![err(
                    ctx.file,
                    Some(ctx.offset + 1),
                    "missing apiVersion".into(),
                )]);
            }
            value.get("kind").and_then(|k| k.as_str()).unwrap_or("")
        }
    };
    match Kind::parse(kind) {
        Some(Kind::Connection) => {
            let (errors, env) = parse_envelope::<ConnectionSpec>(ctx)?;
            if !errors.is_empty() {
                return Err(errors);
            }
            connection(ctx, env.metadata.name, env.spec, secrets_dir, mode, loaded)
                .map(|c| Some(Object::Connection(c)))
        }
        Some(Kind::Project) => {
            let (mut errors, env) = parse_envelope::<ProjectSpec>(ctx)?;
            match project(ctx, env.metadata.name, env.spec) {
                Ok((p, at)) if errors.is_empty() => Ok(Some(Object::Project(p, at))),
                Ok(_) => Err(errors),
                Err(more) => {
                    errors.extend(more);
                    Err(errors)
                }
            }
        }
        Some(Kind::ApiToken) => {
            let (mut errors, env) = parse_envelope::<ApiTokenSpec>(ctx)?;
            match access::check_token(&env.spec) {
                Ok(sha256) if errors.is_empty() => {
                    let row = stored(
                        ctx,
                        Kind::ApiToken,
                        &env.metadata.name,
                        access::token_row(&env.spec, &sha256),
                    );
                    Ok(Some(Object::ApiToken(
                        DesiredToken {
                            name: env.metadata.name,
                            sha256,
                            expires: env.spec.expires,
                            source: ctx.file.to_string(),
                        },
                        row,
                    )))
                }
                Ok(_) => Err(errors),
                Err(more) => {
                    errors.extend(more.into_iter().map(|(k, m)| ctx.err_at_key(k, m)));
                    Err(errors)
                }
            }
        }
        Some(Kind::RoleBinding) => {
            let (mut errors, env) = parse_envelope::<RoleBindingSpec>(ctx)?;
            match access::check_binding(&env.metadata.name, &env.spec) {
                Ok(b) if errors.is_empty() => Ok(Some(Object::RoleBinding(
                    b,
                    ctx.err_at_key("subjects", String::new()),
                    stored(
                        ctx,
                        Kind::RoleBinding,
                        &env.metadata.name,
                        access::binding_row(&env.spec),
                    ),
                ))),
                Ok(_) => Err(errors),
                Err(more) => {
                    errors.extend(more.into_iter().map(|(k, m)| ctx.err_at_key(k, m)));
                    Err(errors)
                }
            }
        }
        Some(k @ (Kind::Provider | Kind::Alert | Kind::Receiver)) => {
            super::simple::parse(ctx, k, secrets_dir, mode, loaded).map(|p| Some(Object::Simple(p)))
        }
        None if kind.is_empty() => Err(vec![err(
            ctx.file,
            Some(ctx.offset + 1),
            format!("missing kind ({})", kind_names()),
        )]),
        None => Err(vec![ctx.err_at_key(
            "kind",
            format!("unknown kind {kind:?} (expected {})", kind_names()),
        )]),
    }
}

fn stored(ctx: &DocCtx, kind: Kind, name: &str, spec: serde_json::Value) -> DesiredObject {
    DesiredObject {
        kind,
        name: name.to_string(),
        spec,
        source: ctx.file.to_string(),
    }
}

/// `Connection, Project, … or Receiver`.
fn kind_names() -> String {
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let (last, rest) = names.split_last().expect("kinds");
    format!("{} or {last}", rest.join(", "))
}

/// Why a secret file's content is not a URL, as a clause that reads after
/// "does not hold a PostgreSQL URL:".
fn url_problem(e: &rules::UrlError) -> String {
    match e {
        rules::UrlError::Nul => "it contains NUL characters".into(),
        other => other.to_string(),
    }
}

fn connection(
    ctx: &DocCtx,
    name: String,
    spec: ConnectionSpec,
    secrets_dir: &Path,
    mode: Secrets,
    loaded: &mut Loaded,
) -> Result<DesiredConnection, Vec<ManifestError>> {
    let url = match (&spec.database_url, &spec.database_url_file, &spec.password_file) {
        (Some(_), Some(_), _) | (None, None, _) => {
            return Err(vec![ctx.err_at_key(
                "spec",
                "a Connection needs exactly one of database_url_file, or database_url (with password_file for the password)".into(),
            )])
        }
        (None, Some(_), Some(_)) => {
            return Err(vec![ctx.err_at_key(
                "password_file",
                "password_file goes with database_url; with database_url_file the whole URL, password included, lives in that file".into(),
            )])
        }
        (None, Some(file), None) => {
            let path = secret_path(secrets_dir, file);
            match read_secret(ctx, "database_url_file", &path, mode, loaded).map_err(|e| vec![e])? {
                None => UrlState::Unknown,
                Some(s) => {
                    // Never echo the file's content: it is the secret.
                    rules::parse_pg_url(s.expose()).map_err(|m| {
                        vec![ctx.err_at_key(
                            "database_url_file",
                            format!("database_url_file {}: the file does not hold a PostgreSQL URL: {}", path.display(), secret::scrub(&url_problem(&m), &[&s])),
                        )]
                    })?;
                    // Certificate and key paths resolve like secret files.
                    match url::Url::parse(s.expose()) {
                        Ok(mut u) => {
                            if crate::tls::resolve_file_params(&mut u, secrets_dir) {
                                UrlState::Known(Secret::new(u.to_string()))
                            } else {
                                UrlState::Known(s)
                            }
                        }
                        Err(_) => UrlState::Known(s),
                    }
                }
            }
        }
        (Some(raw), None, password_file) => {
            let mut url = rules::check_manifest_url(raw)
                .map_err(|m| vec![ctx.err_at_key("database_url", m.to_string())])?;
            // Certificate and key paths resolve like secret files.
            crate::tls::resolve_file_params(&mut url, secrets_dir);
            match password_file {
                None => UrlState::Known(Secret::new(url.to_string())),
                Some(file) => {
                    let path = secret_path(secrets_dir, file);
                    match read_secret(ctx, "password_file", &path, mode, loaded).map_err(|e| vec![e])? {
                        None => UrlState::PasswordUnknown(url.to_string()),
                        Some(pw) => {
                            if url.username().is_empty() {
                                return Err(vec![ctx.err_at_key(
                                    "database_url",
                                    "database_url needs a user name when a password_file is given".into(),
                                )]);
                            }
                            // set_password percent-encodes the password into the URL.
                            url.set_password(Some(pw.expose())).map_err(|_| {
                                vec![ctx.err_at_key("database_url", "cannot set a password on this URL".into())]
                            })?;
                            UrlState::Known(Secret::new(url.to_string()))
                        }
                    }
                }
            }
        }
    };
    Ok(DesiredConnection {
        name,
        description: spec.description,
        url,
        source: ctx.file.to_string(),
    })
}

fn project(
    ctx: &DocCtx,
    name: String,
    spec: ProjectSpec,
) -> Result<(DesiredProject, ManifestError), Vec<ManifestError>> {
    let mut config = spec.config;
    match &config.name {
        Some(n) if n != &name => {
            return Err(vec![ctx.err_at_key(
                "name",
                format!("config.name {n:?} differs from metadata.name {name:?} (leave it out: it is set from metadata.name)"),
            )])
        }
        _ => config.name = Some(name.clone()),
    }
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|m| {
                let mut path = vec![Step::Key("spec".into()), Step::Key("config".into())];
                path.extend(shape::parse_path(&m));
                match shape::line_of(ctx.text, &path) {
                    Some(l) => err(ctx.file, Some(l + 1 + ctx.offset), format!("config.{m}")),
                    None => ctx.err_at_key("config", format!("config.{m}")),
                }
            })
            .collect());
    }
    if !ctx.roots.is_empty() {
        let outside = rules::confine_project(
            config.inbox.as_deref(),
            config.processed_dir.as_deref(),
            config.failed_dir.as_deref(),
            ctx.roots,
        );
        if !outside.is_empty() {
            return Err(outside
                .into_iter()
                .map(|(key, m)| {
                    // A default dir (processed/, failed/) is located at the inbox.
                    let key = if ctx.text.contains(&format!("{key}:")) {
                        key
                    } else {
                        "inbox"
                    };
                    ctx.err_at_key(key, format!("config.{m}"))
                })
                .collect());
        }
    }
    let config = serde_json::to_value(&config).expect("a config always serializes");
    let at = ctx.err_at_key("connection", String::new());
    Ok((
        DesiredProject {
            name,
            description: spec.description,
            connection: spec.connection,
            config,
            source: ctx.file.to_string(),
        },
        at,
    ))
}
