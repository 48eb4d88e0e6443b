//! Documents of the simple kinds (Provider, Alert, Receiver): parsed
//! typed, checked by their kind's rules (`notify`), their secret files
//! resolved to absolute paths and read once (to fail early and to scrub
//! them from messages), and kept as plain JSON for `cpi_objects`.

use std::path::Path;

use serde::Serialize;

use super::desired::{DesiredObject, Loaded, Secrets};
use super::envelope::{parse_envelope, read_secret, secret_path};
use super::error::ManifestError;
use super::model::Kind;
use super::notify::{self, AlertSpec, ProviderSpec, ReceiverSpec};
use super::text::DocCtx;

/// A simple object, with (for an Alert) the Provider it names and where
/// to report it when no manifest declares that Provider.
pub(super) type Parsed = (DesiredObject, Option<(String, ManifestError)>);

/// Parses a document of simple `kind`.
pub(super) fn parse(
    ctx: &DocCtx,
    kind: Kind,
    secrets_dir: &Path,
    mode: Secrets,
    loaded: &mut Loaded,
) -> Result<Parsed, Vec<ManifestError>> {
    match kind {
        Kind::Provider => {
            let (mut errors, env) = parse_envelope::<ProviderSpec>(ctx)?;
            let mut spec = env.spec;
            errors.extend(problems(ctx, notify::check_provider(&spec)));
            if errors.is_empty() {
                let mut files = vec![
                    ("url_file", &mut spec.url_file),
                    ("secret_file", &mut spec.secret_file),
                ];
                if let Some(smtp) = spec.smtp.as_mut() {
                    files.push(("username_file", &mut smtp.username_file));
                    files.push(("password_file", &mut smtp.password_file));
                }
                for (key, file) in files {
                    if let Some(f) = file.as_mut() {
                        if let Err(e) = resolve(ctx, key, f, secrets_dir, mode, loaded) {
                            errors.push(e);
                        }
                    }
                }
                // A CA is no secret: only made absolute, like the secret
                // files, for a daemon that runs elsewhere.
                if let Some(ca) = spec.smtp.as_mut().and_then(|s| s.ca_file.as_mut()) {
                    let path = secret_path(secrets_dir, ca);
                    *ca = std::path::absolute(&path)
                        .unwrap_or(path)
                        .to_string_lossy()
                        .into_owned();
                }
            }
            done(ctx, kind, env.metadata.name, &spec, None, errors)
        }
        Kind::Alert => {
            let (mut errors, env) = parse_envelope::<AlertSpec>(ctx)?;
            errors.extend(problems(
                ctx,
                notify::check_alert(&env.spec, |k| notify::EVENT_KINDS.contains(&k)),
            ));
            let reference = (
                env.spec.provider.clone(),
                ctx.err_at_key("provider", String::new()),
            );
            done(
                ctx,
                kind,
                env.metadata.name,
                &env.spec,
                Some(reference),
                errors,
            )
        }
        Kind::Receiver => {
            let (mut errors, env) = parse_envelope::<ReceiverSpec>(ctx)?;
            let mut spec = env.spec;
            errors.extend(problems(ctx, notify::check_receiver(&spec)));
            if errors.is_empty() {
                if let Err(e) = resolve(
                    ctx,
                    "secret_file",
                    &mut spec.secret_file,
                    secrets_dir,
                    mode,
                    loaded,
                ) {
                    errors.push(e);
                }
            }
            done(ctx, kind, env.metadata.name, &spec, None, errors)
        }
        other => unreachable!("{other} is not a simple kind"),
    }
}

fn problems(ctx: &DocCtx, found: Vec<notify::Problem>) -> Vec<ManifestError> {
    found
        .into_iter()
        .map(|(field, message)| {
            // `smtp.host` is found on its line by its last part.
            let key = field.rsplit('.').next().unwrap_or(&field);
            ctx.err_at_key(key, message)
        })
        .collect()
}

/// Replaces `file` by its absolute path (the daemon may run elsewhere
/// than the folder) after reading it: a missing or empty secret fails
/// the load like a Connection's would.
fn resolve(
    ctx: &DocCtx,
    key: &str,
    file: &mut String,
    secrets_dir: &Path,
    mode: Secrets,
    loaded: &mut Loaded,
) -> Result<(), ManifestError> {
    let path = secret_path(secrets_dir, file);
    let path = std::path::absolute(&path).unwrap_or(path);
    if let Some(s) = read_secret(ctx, key, &path, mode, loaded)? {
        loaded.notify_secrets.push(s);
    }
    *file = path.to_string_lossy().into_owned();
    Ok(())
}

fn done<S: Serialize>(
    ctx: &DocCtx,
    kind: Kind,
    name: String,
    spec: &S,
    reference: Option<(String, ManifestError)>,
    errors: Vec<ManifestError>,
) -> Result<Parsed, Vec<ManifestError>> {
    if !errors.is_empty() {
        return Err(errors);
    }
    let spec = serde_json::to_value(spec).expect("a spec always serializes");
    Ok((
        DesiredObject {
            kind,
            name,
            spec,
            source: ctx.file.to_string(),
        },
        reference,
    ))
}
