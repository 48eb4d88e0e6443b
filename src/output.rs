//! Writing generated manifests and secret files to disk (`cpi export`,
//! `cpi convert-legacy`). The content is computed by pure functions
//! elsewhere; this module is the I/O edge.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::secret::Secret;

/// Why generated files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A folder given cannot be made absolute.
    #[error(transparent)]
    Absolute(std::io::Error),
    /// Files exist and `--force` was not given; nothing was written.
    #[error("refusing to overwrite {} existing file(s) (rerun with --force): {}", .0.len(), .0.join(", "))]
    Exists(Vec<String>),
    /// A folder that cannot be created.
    #[error("cannot create {}", .path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file that cannot be written.
    #[error("cannot write {}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A secret file that cannot be written.
    #[error("cannot write secret file {}", .path.display())]
    WriteSecret {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A secret file whose mode cannot be narrowed.
    #[error("cannot set mode 0600 on {}", .path.display())]
    SecretMode {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The absolute form of `p`, `.` and `..` removed.
fn absolute(p: &Path) -> Result<PathBuf, OutputError> {
    std::path::absolute(p)
        .map(|a| normalize(&a))
        .map_err(OutputError::Absolute)
}

fn create_dir(path: &Path, mode: Option<u32>) -> Result<(), OutputError> {
    let made = match mode {
        Some(mode) => DirBuilder::new().recursive(true).mode(mode).create(path),
        None => std::fs::create_dir_all(path),
    };
    made.map_err(|source| OutputError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), OutputError> {
    std::fs::write(path, text).map_err(|source| OutputError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// What a generator produced: manifest files (relative to the output
/// folder) and secret files (relative to the secrets folder).
#[derive(Debug, Default)]
pub struct Files {
    /// Manifest files: path relative to the output folder, and text.
    pub manifests: Vec<(PathBuf, String)>,
    /// Secret files: path relative to the secrets folder, and content.
    pub secrets: Vec<(PathBuf, Secret)>,
}

/// How a manifest written into `output` names a secret file written into
/// `secrets_out`. Secret paths resolve against `--secrets-dir`, which
/// defaults to the manifests folder: when the secrets folder lies inside
/// the output folder, the path relative to the output works with no flag;
/// otherwise the bare file name works with `--secrets-dir SECRETS_OUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRefs {
    /// Prefix of every secret path written into a manifest.
    pub prefix: PathBuf,
    /// Whether `--secrets-dir` must be given to find the secrets.
    pub needs_secrets_dir: bool,
}

impl SecretRefs {
    /// ` --secrets-dir DIR` when the written manifests need it to find
    /// their secrets, else nothing: for the "Next:" hint after writing.
    pub fn secrets_dir_flag(&self, secrets_out: &Path) -> String {
        if self.needs_secrets_dir {
            format!(" --secrets-dir {}", secrets_out.display())
        } else {
            String::new()
        }
    }

    /// How manifests in `output` should name files in `secrets_out`.
    pub fn new(output: &Path, secrets_out: &Path) -> Result<SecretRefs, OutputError> {
        let out = absolute(output)?;
        let sec = absolute(secrets_out)?;
        Ok(match sec.strip_prefix(&out) {
            Ok(rel) => SecretRefs {
                prefix: rel.to_path_buf(),
                needs_secrets_dir: false,
            },
            Err(_) => SecretRefs {
                prefix: PathBuf::new(),
                needs_secrets_dir: true,
            },
        })
    }

    /// The path a manifest writes for the secret file `file_name`.
    pub fn path(&self, file_name: &str) -> String {
        self.prefix
            .join(file_name)
            .to_string_lossy()
            .replace('\\', "/")
    }
}

/// Removes `.` and resolves `..` lexically (the folders may not exist yet).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Writes every file. Without `force`, an existing file is an error and
/// nothing is written (checked before the first write). Secret files are
/// created with mode 0600 and their folder with 0700.
pub fn write_all(
    files: &Files,
    output: &Path,
    secrets_out: &Path,
    force: bool,
) -> Result<(), OutputError> {
    if !force {
        let existing: Vec<String> = files
            .manifests
            .iter()
            .map(|(p, _)| output.join(p))
            .chain(files.secrets.iter().map(|(p, _)| secrets_out.join(p)))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(OutputError::Exists(existing));
        }
    }
    create_dir(secrets_out, Some(0o700))?;
    // The secrets folder often sits inside a repository: make `git add .`
    // unable to pick the secrets up (unless it is the manifests folder
    // itself, whose manifests must stay committable).
    let ignore = secrets_out.join(".gitignore");
    let shared = absolute(secrets_out)? == absolute(output)?;
    if !files.secrets.is_empty() && !shared && !ignore.exists() {
        write(&ignore, "# Secret files: never commit them.\n*\n")?;
    }
    for (rel, value) in &files.secrets {
        write_secret(&secrets_out.join(rel), value)?;
    }
    for (rel, text) in &files.manifests {
        let path = output.join(rel);
        if let Some(parent) = path.parent() {
            create_dir(parent, None)?;
        }
        write(&path, text)?;
    }
    Ok(())
}

/// Writes a secret file readable by its owner only. The mode is set on
/// creation, so the value is never readable by others, not even briefly;
/// an existing file (with `--force`) is narrowed to 0600 before writing.
pub fn write_secret(path: &Path, value: &Secret) -> Result<(), OutputError> {
    if let Some(parent) = path.parent() {
        create_dir(parent, Some(0o700))?;
    }
    let unwritable = |source| OutputError::WriteSecret {
        path: path.to_path_buf(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(unwritable)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|source| OutputError::SecretMode {
            path: path.to_path_buf(),
            source,
        })?;
    writeln!(f, "{}", value.expose()).map_err(unwritable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_inside_output_need_no_flag() {
        let r = SecretRefs::new(Path::new("/x/out"), Path::new("/x/out/./secrets")).unwrap();
        assert_eq!(r.path("a.pass"), "secrets/a.pass");
        assert!(!r.needs_secrets_dir);
        let r = SecretRefs::new(Path::new("/x/out"), Path::new("/x/out/../sec")).unwrap();
        assert_eq!(r.path("a.pass"), "a.pass");
        assert!(r.needs_secrets_dir);
    }

    #[test]
    fn secret_files_are_0600_and_existing_files_are_kept() {
        let d = tempfile::tempdir().unwrap();
        let files = Files {
            manifests: vec![(PathBuf::from("c/a.yaml"), "x: 1\n".into())],
            secrets: vec![(PathBuf::from("a.pass"), Secret::new("pw"))],
        };
        let out = d.path().join("out");
        let sec = d.path().join("sec");
        write_all(&files, &out, &sec, false).unwrap();
        let mode = std::fs::metadata(sec.join("a.pass"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(sec.join("a.pass")).unwrap(), "pw\n");
        assert!(std::fs::read_to_string(sec.join(".gitignore"))
            .unwrap()
            .contains("*\n"));
        let e = write_all(&files, &out, &sec, false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        write_all(&files, &out, &sec, true).unwrap();
    }
}
