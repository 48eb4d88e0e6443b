//! What every document shares: its envelope parsed typed (every shape
//! problem found, not only the first), its apiVersion and name checked,
//! and its secret files found and read.

use std::path::{Path, PathBuf};

use super::desired::{Loaded, Secrets};
use super::error::ManifestError;
use super::model::{Envelope, API_VERSION};
use super::shape;
use super::text::{err, DocCtx};
use crate::rules;
use crate::secret::{self, Secret};

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

pub(super) fn parse_typed<T: serde::de::DeserializeOwned>(
    ctx: &DocCtx,
) -> (Vec<ManifestError>, Option<T>) {
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
