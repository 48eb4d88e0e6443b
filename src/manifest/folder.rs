//! A manifests folder: its files found, read and parsed (in parallel), and
//! the checks across files (duplicates, dangling references).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::desired::{Loaded, Secrets};
use super::error::{InvalidManifests, ManifestError};
use super::model::Kind;
use super::text::{check_depth, check_expansion, check_tabs, err, split_documents, DocCtx};
use super::validate::{parse_document, Object};

/// The largest manifest file read (a manifests folder is reviewed text,
/// not data).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Loads every `*.yaml`/`*.yml` below `dir`. Secret paths are absolute or
/// relative to `secrets_dir` (default: `dir`).
pub fn load(
    dir: &Path,
    secrets_dir: Option<&Path>,
    mode: Secrets,
) -> Result<Loaded, InvalidManifests> {
    load_confined(dir, secrets_dir, mode, &[])
}

/// [`load`], with every project's `inbox`, `processed_dir` and `failed_dir`
/// required to resolve inside one of `roots` (`--inbox-root`; none: anywhere).
pub fn load_confined(
    dir: &Path,
    secrets_dir: Option<&Path>,
    mode: Secrets,
    roots: &[PathBuf],
) -> Result<Loaded, InvalidManifests> {
    let mut errors = Vec::new();
    let mut loaded = Loaded::default();
    let secrets_dir = secrets_dir.unwrap_or(dir);
    if !dir.is_dir() {
        // An unmounted or mistyped folder must never read as "no manifests",
        // which would plan to delete everything.
        return Err(InvalidManifests(vec![ManifestError {
            file: dir.display().to_string(),
            line: None,
            column: None,
            message: "manifests folder does not exist or is not a directory".into(),
        }]));
    }
    let mut files = Vec::new();
    if let Err(e) = walk(dir, &mut files, &mut loaded.warnings) {
        errors.push(ManifestError {
            file: dir.display().to_string(),
            line: None,
            column: None,
            message: format!("cannot read folder: {e}"),
        });
    }
    files.sort();
    // Files parse independently: spread them over the cores, then merge in
    // file order so that results and errors do not depend on timing.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = files.len().div_ceil(threads).max(1);
    let outcomes: Vec<FileOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|p| parse_file(dir, p, secrets_dir, mode, roots))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("manifest parser thread"))
            .collect()
    });
    let mut seen: BTreeMap<(Kind, String), String> = BTreeMap::new();
    let mut references: Vec<(String, String, ManifestError)> = Vec::new();
    let mut bindings: Vec<(crate::access::Binding, ManifestError)> = Vec::new();
    let mut providers: Vec<(String, String, ManifestError)> = Vec::new();
    for outcome in outcomes {
        loaded.warnings.extend(outcome.warnings);
        loaded.secret_files.extend(outcome.secret_files);
        loaded.notify_secrets.extend(outcome.notify_secrets);
        errors.extend(outcome.errors);
        for (obj, name_at) in outcome.objects {
            let (kind, name) = match &obj {
                Object::Connection(c) => (Kind::Connection, c.name.clone()),
                Object::Project(p, _) => (Kind::Project, p.name.clone()),
                Object::ApiToken(t, _) => (Kind::ApiToken, t.name.clone()),
                Object::RoleBinding(b, _, _) => (Kind::RoleBinding, b.name.clone()),
                Object::Simple((o, _)) => (o.kind, o.name.clone()),
            };
            let key = (kind, name.clone());
            if let Some(first) = seen.get(&key) {
                errors.push(ManifestError {
                    message: format!("duplicate {kind} {name:?} (first declared in {first})"),
                    ..name_at
                });
                continue;
            }
            seen.insert(key, name_at.file.clone());
            match obj {
                Object::Connection(c) => {
                    loaded.desired.connections.insert(name, c);
                }
                Object::Project(p, reference_error) => {
                    references.push((p.name.clone(), p.connection.clone(), reference_error));
                    loaded.desired.projects.insert(name, p);
                }
                Object::ApiToken(t, row) => {
                    loaded.desired.tokens.insert(name.clone(), t);
                    loaded.desired.objects.insert((Kind::ApiToken, name), row);
                }
                Object::RoleBinding(b, at, row) => {
                    bindings.push((b.clone(), at));
                    loaded.desired.bindings.insert(name.clone(), b);
                    loaded
                        .desired
                        .objects
                        .insert((Kind::RoleBinding, name), row);
                }
                Object::Simple((o, reference)) => {
                    if let Some((provider, at)) = reference {
                        providers.push((o.name.clone(), provider, at));
                    }
                    loaded.desired.objects.insert((o.kind, name), o);
                }
            }
        }
    }
    for (project, connection, mut at) in references {
        if !loaded.desired.connections.contains_key(&connection) {
            at.message = format!("project {project:?} references connection {connection:?}, which no manifest declares");
            errors.push(at);
        }
    }
    for (alert, provider, mut at) in providers {
        if !loaded
            .desired
            .objects
            .contains_key(&(Kind::Provider, provider.clone()))
        {
            at.message = format!(
                "alert {alert:?} references provider {provider:?}, which no manifest declares"
            );
            errors.push(at);
        }
    }
    for (binding, at) in bindings {
        for s in &binding.subjects {
            if let crate::access::Subject::Token(t) = s {
                if !loaded.desired.tokens.contains_key(t) {
                    errors.push(ManifestError {
                        message: format!(
                            "role binding {:?} names token {t:?}, which no ApiToken manifest declares",
                            binding.name
                        ),
                        ..at.clone()
                    });
                }
            }
        }
    }
    loaded.files = files;
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(InvalidManifests(errors))
    }
}

#[derive(Default)]
struct FileOutcome {
    /// Each object with the location of its name (for a duplicate error).
    objects: Vec<(Object, ManifestError)>,
    errors: Vec<ManifestError>,
    warnings: Vec<String>,
    secret_files: Vec<PathBuf>,
    notify_secrets: Vec<crate::secret::Secret>,
}

fn parse_file(
    dir: &Path,
    path: &Path,
    secrets_dir: &Path,
    mode: Secrets,
    roots: &[PathBuf],
) -> FileOutcome {
    let rel = path
        .strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/");
    match read_bounded(path) {
        Ok(text) => parse_text(&rel, &text, secrets_dir, mode, roots),
        Err(m) => FileOutcome {
            errors: vec![err(&rel, None, m.to_string())],
            ..FileOutcome::default()
        },
    }
}

/// Every problem of one manifest file's text, as `load` would report them
/// for `file` (secrets optional; cross-file checks left out). For fuzzing.
pub fn check_text(file: &str, text: &str) -> Vec<ManifestError> {
    parse_text(
        file,
        text,
        Path::new("/nonexistent"),
        Secrets::Optional,
        &[],
    )
    .errors
}

fn parse_text(
    rel: &str,
    text: &str,
    secrets_dir: &Path,
    mode: Secrets,
    roots: &[PathBuf],
) -> FileOutcome {
    let rel = rel.to_string();
    let mut out = FileOutcome::default();
    let mut side = Loaded::default();
    for doc in split_documents(text) {
        let ctx = DocCtx {
            file: &rel,
            text: doc.text,
            offset: doc.line_offset,
            roots,
        };
        if let Err(e) = check_tabs(&ctx)
            .and_then(|()| check_depth(&ctx))
            .and_then(|()| check_expansion(&ctx))
        {
            out.errors.push(e);
            continue;
        }
        match parse_document(&ctx, secrets_dir, mode, &mut side) {
            Ok(None) => {}
            Ok(Some(obj)) => out
                .objects
                .push((obj, ctx.err_at_key("name", String::new()))),
            Err(mut e) => out.errors.append(&mut e),
        }
    }
    out.warnings = side.warnings;
    out.secret_files = side.secret_files;
    out.notify_secrets = side.notify_secrets;
    out
}

/// Why a manifest file's text cannot be had.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// Opening or reading failed.
    #[error("cannot read file: {0}")]
    Io(#[source] std::io::Error),
    /// Over [`MAX_FILE_BYTES`].
    #[error("file is larger than {} KiB, the most a manifest file may be", MAX_FILE_BYTES / 1024)]
    TooLarge,
    /// Not text.
    #[error("cannot read file: not UTF-8")]
    NotUtf8,
    /// A FIFO, a device or a socket named like a manifest: reading it
    /// could block the loader forever or never end.
    #[error("cannot read file: it is a {0}, not a regular file")]
    NotRegular(&'static str),
}

/// A file's text, refused above [`MAX_FILE_BYTES`] (checked while reading:
/// the file may grow between a stat and the read) and refused when it is
/// not a regular file (opened without blocking, judged on the open file).
fn read_bounded(path: &Path) -> Result<String, ReadError> {
    use crate::secret::SmallFileError;
    crate::secret::read_small_file(path, MAX_FILE_BYTES).map_err(|e| match e {
        SmallFileError::Io(e) => ReadError::Io(e),
        SmallFileError::TooLarge { .. } => ReadError::TooLarge,
        SmallFileError::NotUtf8 => ReadError::NotUtf8,
        SmallFileError::NotRegular(kind) => ReadError::NotRegular(kind),
    })
}

/// Collects the manifest files below `dir`. A symlink to a folder is never
/// followed (a link to `.` or `..` would make the walk loop or explode);
/// it is reported as a warning. Each real folder is listed once: linear.
pub(super) fn walk(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&path, out, warnings)?;
        } else if kind.is_symlink() && path.is_dir() {
            warnings.push(format!(
                "{}: a symlink to a folder is not followed",
                path.display()
            ));
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(path);
        }
    }
    Ok(())
}
