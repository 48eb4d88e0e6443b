//! One manifest document: its kind told, parsed typed, and checked by the
//! rules of its kind (names, URLs and secret files, project configs).

use std::path::{Path, PathBuf};

use super::access::{self, ApiTokenSpec, RoleBindingSpec};
use super::desired::{DesiredConnection, DesiredProject, DesiredToken, Loaded, Secrets, UrlState};
use super::error::ManifestError;
use super::model::{ConnectionSpec, Envelope, Kind, ProjectSpec, API_VERSION};
use super::shape::{self, Step};
use super::text::{err, DocCtx};
use crate::rules;
use crate::secret::{self, Secret};

pub(super) enum Object {
    Connection(DesiredConnection),
    /// With the error to report if its connection reference is dangling.
    Project(DesiredProject, ManifestError),
    ApiToken(DesiredToken),
    /// With the location of its subjects, for a token no manifest declares.
    RoleBinding(crate::access::Binding, ManifestError),
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
                Ok(sha256) if errors.is_empty() => Ok(Some(Object::ApiToken(DesiredToken {
                    name: env.metadata.name,
                    sha256,
                    expires: env.spec.expires,
                    source: ctx.file.to_string(),
                }))),
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

/// `Connection, Project, … or Receiver`.
fn kind_names() -> String {
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let (last, rest) = names.split_last().expect("kinds");
    format!("{} or {last}", rest.join(", "))
}

/// The document as a `T`, or every shape problem it has (unknown fields
/// and values, wrong types) with, when they could all be taken out, the
/// document less them: its other rules are then checked too.
/// A document's envelope with its spec typed as `S`: every problem of the
/// document so far (shape, apiVersion, name), and the envelope when its
/// shape could be read at all.
pub(super) fn parse_envelope<S: serde::de::DeserializeOwned>(
    ctx: &DocCtx,
) -> Result<(Vec<ManifestError>, Envelope<S>), Vec<ManifestError>> {
    let (mut errors, env) = parse_typed::<Envelope<S>>(ctx);
    let env = env.ok_or_else(|| errors.clone())?;
    errors.extend(
        check_api_version(ctx, &env.api_version)
            .err()
            .into_iter()
            .flatten(),
    );
    errors.extend(
        check_name(ctx, &env.metadata.name)
            .err()
            .into_iter()
            .flatten(),
    );
    Ok((errors, env))
}

fn parse_typed<T: serde::de::DeserializeOwned>(ctx: &DocCtx) -> (Vec<ManifestError>, Option<T>) {
    let first = match serde_yaml::from_str::<T>(ctx.text) {
        Ok(t) => return (Vec::new(), Some(t)),
        Err(e) => ctx.yaml_err(&e),
    };
    let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(ctx.text) else {
        // Not even YAML: the parser's one error is all there is.
        return (vec![first], None);
    };
    let (found, rest) = shape::problems::<T>(value);
    if found.is_empty() {
        // The generic parse took what the typed one refused (a tag, say).
        return (vec![first], None);
    }
    let mut errors: Vec<ManifestError> = found
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            if i == 0 && p.message.starts_with(&first.message) {
                // The parser located the first one to the column.
                return ManifestError {
                    message: p.message,
                    ..first.clone()
                };
            }
            let line =
                shape::line_of(ctx.text, &p.path).map_or(ctx.offset + 1, |l| l + 1 + ctx.offset);
            err(ctx.file, Some(line), p.message)
        })
        .collect();
    // Fields are taken in the struct's order, not the text's.
    errors.sort_by_key(|e| e.line);
    (errors, rest)
}

fn check_api_version(ctx: &DocCtx, v: &str) -> Result<(), Vec<ManifestError>> {
    if v == API_VERSION {
        Ok(())
    } else {
        Err(vec![ctx.err_at_key(
            "apiVersion",
            format!("apiVersion {v:?} is not supported (expected {API_VERSION:?})"),
        )])
    }
}

fn check_name(ctx: &DocCtx, name: &str) -> Result<(), Vec<ManifestError>> {
    rules::check_name(name).map_err(|m| vec![ctx.err_at_key("name", format!("metadata.name {m}"))])
}

pub(super) fn secret_path(secrets_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        secrets_dir.join(p)
    }
}

/// Reads a secret file; `Ok(None)` when it is absent and secrets are optional.
pub(super) fn read_secret(
    ctx: &DocCtx,
    key: &str,
    path: &Path,
    mode: Secrets,
    loaded: &mut Loaded,
) -> Result<Option<Secret>, ManifestError> {
    loaded.secret_files.push(path.to_path_buf());
    // Only a small regular file: a device, a FIFO or a huge file named
    // as a secret must fail at once, not hang or exhaust memory.
    match secret::read_secret_file(path) {
        Ok(s) => {
            let v = s.trim_end();
            if v.is_empty() {
                Err(ctx.err_at_key(
                    key,
                    format!("{key}: secret file {} is empty", path.display()),
                ))
            } else {
                Ok(Some(Secret::new(v)))
            }
        }
        Err(e) if e.is_not_found() && mode == Secrets::Optional => {
            loaded.warnings.push(format!(
                "{}: {key}: secret file {} is not present; its value is compared as unknown",
                ctx.file,
                path.display()
            ));
            Ok(None)
        }
        Err(e) => Err(ctx.err_at_key(
            key,
            format!("{key}: cannot read secret file {}: {e}", path.display()),
        )),
    }
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
