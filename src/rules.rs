//! The rules every way into the management tables shares: object names,
//! connection URLs and the legacy `connection.env_var` check. Manifests,
//! export, convert-legacy, the HTTP API and the importer all call these, so
//! a row the API accepts can always be exported as a manifest that loads.
//! Also the inbox confinement (`--inbox-root`) the manifests, the API and the
//! daemon share.

use std::path::{Component, Path, PathBuf};

/// The name rule in words, for messages and docs.
pub const NAME_RULE: &str = "1-255 characters of [A-Za-z0-9_.-], starting with a letter or digit";

/// Whether `name` is a valid object name (manifest `metadata.name`, API `name`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A name that breaks [`NAME_RULE`]; reads `"<name>" must be …`, for the
/// caller to prefix with what the name belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} must be {NAME_RULE}")]
pub struct NameError {
    /// The name refused.
    pub name: String,
}

/// [`valid_name`] with the reason.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(NameError {
            name: name.to_string(),
        })
    }
}

/// Why a text is not a PostgreSQL URL. Never holds the URL, which may hold
/// a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// A NUL character, which no driver accepts.
    #[error("must not contain NUL characters")]
    Nul,
    /// Not a URL at all.
    #[error("not a valid URL ({0})")]
    Invalid(#[source] url::ParseError),
    /// A URL of another scheme.
    #[error("scheme {0:?} is not postgres:// or postgresql://")]
    Scheme(String),
}

/// Parses a PostgreSQL URL (`postgres://` or `postgresql://`).
pub fn parse_pg_url(raw: &str) -> Result<url::Url, UrlError> {
    if raw.contains('\0') {
        return Err(UrlError::Nul);
    }
    let url = url::Url::parse(raw).map_err(UrlError::Invalid)?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(UrlError::Scheme(url.scheme().to_string()));
    }
    Ok(url)
}

/// Why a manifest's `database_url` may not carry a password: git is no
/// place for secrets.
pub const INLINE_PASSWORD: &str = "database_url contains a password: secrets never live in git; move it to a file and reference it with password_file (or put the whole URL in database_url_file)";

/// Why a manifest's `database_url` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestUrlError {
    /// Not a PostgreSQL URL.
    #[error("database_url: {0}")]
    Url(#[source] UrlError),
    /// A password in git.
    #[error("{INLINE_PASSWORD}")]
    InlinePassword,
}

/// A manifest's `database_url` rule: a PostgreSQL URL without password.
pub fn check_manifest_url(raw: &str) -> Result<url::Url, ManifestUrlError> {
    let url = parse_pg_url(raw).map_err(ManifestUrlError::Url)?;
    if url.password().is_some() {
        return Err(ManifestUrlError::InlinePassword);
    }
    Ok(url)
}

/// A parsed document (JSON or YAML) the legacy check can look into.
pub trait Tree {
    /// The child under `key` of a mapping.
    fn child(&self, key: &str) -> Option<&Self>;
    /// The value as text for a message: a string as is, anything else as written.
    fn text(&self) -> String;
}

impl Tree for serde_json::Value {
    fn child(&self, key: &str) -> Option<&Self> {
        self.get(key)
    }
    fn text(&self) -> String {
        self.as_str()
            .map_or_else(|| self.to_string(), str::to_string)
    }
}

impl Tree for serde_yaml::Value {
    fn child(&self, key: &str) -> Option<&Self> {
        self.get(key)
    }
    fn text(&self) -> String {
        self.as_str()
            .map_or_else(|| format!("{self:?}"), str::to_string)
    }
}

/// The environment variable of a legacy `connection.env_var`, looked for in
/// `holder.connection` and `holder.config.connection`: `holder` is a
/// manifest's `spec`, an API body, or a stored project config.
pub fn legacy_env_var<T: Tree>(holder: &T) -> Option<String> {
    [
        holder.child("connection"),
        holder.child("config").and_then(|c| c.child("connection")),
    ]
    .into_iter()
    .flatten()
    .find_map(|c| c.child("env_var"))
    .map(Tree::text)
}

/// How to migrate a legacy `connection.env_var` (the variable named).
pub fn legacy_message(env_var: &str) -> String {
    format!(
        "connection.env_var ({env_var}) is no longer supported: target databases are \
         Connection objects now, never environment variables. To migrate, put the URL \
         from ${env_var} into a secret file, declare a Connection manifest with \
         `database_url_file` pointing at it, and set `spec.connection: <connection name>` \
         in this project (`cpi convert-legacy` does all three)"
    )
}

/// A legacy `connection.env_var`; the message is [`legacy_message`], the
/// migration hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", legacy_message(.env_var))]
pub struct LegacyConnection {
    /// The environment variable named.
    pub env_var: String,
}

/// The legacy check with its migration hint: an error when `holder` still
/// uses `connection.env_var`.
pub fn check_legacy<T: Tree>(holder: &T) -> Result<(), LegacyConnection> {
    match legacy_env_var(holder) {
        Some(env_var) => Err(LegacyConnection { env_var }),
        None => Ok(()),
    }
}

/// The flag that confines inboxes, for messages.
pub const INBOX_ROOT_FLAG: &str = "--inbox-root";

/// `path` with `.` and `..` removed lexically (`..` at the root stays at the
/// root), made absolute against `cwd` first. Pure.
pub fn normalize(path: &Path, cwd: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether `path` lies inside one of `roots` (all normalized and resolved
/// alike); a root is inside itself. Component-wise, so `/srv/in2` is not
/// inside `/srv/in`. Pure.
pub fn inside(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

/// `path` normalized, then with symlinks resolved for the longest prefix
/// that exists (a symlink pointing out of a root is caught even when the
/// folder below it does not exist yet). The file system's view at the time
/// of the call.
pub fn resolve(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut rest = Vec::new();
    let mut existing = normalize(path, &cwd);
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            // A `..` cannot be left: normalize removed them before.
            return out;
        }
        match (
            existing.file_name().map(ToOwned::to_owned),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return normalize(path, &cwd),
        }
    }
}

/// Why a folder is refused by [`confine`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfineError {
    /// No path at all.
    #[error("must not be empty")]
    Empty,
    /// A path that resolves outside every root.
    #[error(
        "{path:?} resolves to {} which is outside every {INBOX_ROOT_FLAG} ({})",
        .resolved.display(),
        .roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Outside {
        /// The path as given.
        path: String,
        /// Where it resolves to.
        resolved: PathBuf,
        /// The roots, resolved.
        roots: Vec<PathBuf>,
    },
}

/// Checks that `path` resolves inside one of `roots` (each resolved too).
pub fn confine(path: &str, roots: &[PathBuf]) -> Result<PathBuf, ConfineError> {
    if path.trim().is_empty() {
        return Err(ConfineError::Empty);
    }
    let resolved = resolve(Path::new(path));
    let roots: Vec<PathBuf> = roots.iter().map(|r| resolve(r)).collect();
    if inside(&resolved, &roots) {
        Ok(resolved)
    } else {
        Err(ConfineError::Outside {
            path: path.to_string(),
            resolved,
            roots,
        })
    }
}

/// The folders a project's config makes cpi read and write, by config key:
/// `inbox`, and `processed_dir` / `failed_dir` (relative ones, and the
/// defaults `processed`, `failed`, lie under the inbox). Pure.
pub fn project_dirs(
    inbox: Option<&str>,
    processed_dir: Option<&str>,
    failed_dir: Option<&str>,
) -> Vec<(&'static str, String)> {
    let Some(inbox) = inbox else {
        // Without an inbox nothing is watched; absolute dirs are still checked.
        return [("processed_dir", processed_dir), ("failed_dir", failed_dir)]
            .into_iter()
            .filter_map(|(k, d)| {
                d.filter(|d| Path::new(d).is_absolute())
                    .map(|d| (k, d.to_string()))
            })
            .collect();
    };
    let under = |d: Option<&str>, default: &str| match d {
        Some(d) if Path::new(d).is_absolute() => d.to_string(),
        Some(d) => Path::new(inbox).join(d).to_string_lossy().into_owned(),
        None => Path::new(inbox)
            .join(default)
            .to_string_lossy()
            .into_owned(),
    };
    vec![
        ("inbox", inbox.to_string()),
        ("processed_dir", under(processed_dir, "processed")),
        ("failed_dir", under(failed_dir, "failed")),
    ]
}

/// Every folder of a project config outside `roots`, as `(key, message)`.
pub fn confine_project(
    inbox: Option<&str>,
    processed_dir: Option<&str>,
    failed_dir: Option<&str>,
    roots: &[PathBuf],
) -> Vec<(&'static str, String)> {
    project_dirs(inbox, processed_dir, failed_dir)
        .into_iter()
        // `--inbox-root` confines local paths; an `s3://` location is the
        // bucket policy's to confine.
        .filter(|(_, d)| !d.starts_with("s3://") && !inbox.is_some_and(|i| i.starts_with("s3://")))
        .filter_map(|(k, d)| confine(&d, roots).err().map(|m| (k, format!("{k}: {m}"))))
        .collect()
}

/// Why `config`'s folders are not allowed under `roots` (empty: they are).
pub fn outside_roots(config: &crate::config::ProjectConfig, roots: &[PathBuf]) -> Vec<String> {
    if roots.is_empty() {
        return Vec::new();
    }
    confine_project(
        config.inbox.as_deref(),
        config.processed_dir.as_deref(),
        config.failed_dir.as_deref(),
        roots,
    )
    .into_iter()
    .map(|(_, m)| m)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        for ok in ["a", "A1", "9.x-y_z", &"a".repeat(255)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "_a", ".a", "a b", "a/b", "é", &"a".repeat(256)] {
            assert!(!valid_name(bad), "{bad}");
            assert!(check_name(bad).unwrap_err().to_string().contains(NAME_RULE));
        }
    }

    #[test]
    fn urls() {
        assert!(parse_pg_url("postgresql://u@h/db").is_ok());
        assert!(parse_pg_url("postgres://u:p@h/db").is_ok());
        let e = parse_pg_url("mysql://u:topsecret@h/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mysql") && !e.contains("topsecret"), "{e}");
        assert!(parse_pg_url("postgres://h/\0")
            .unwrap_err()
            .to_string()
            .contains("NUL"));
        assert!(parse_pg_url("not a url").is_err());
        assert!(check_manifest_url("postgresql://u@h/db").is_ok());
        let e = check_manifest_url("postgresql://u:sup3r@h/db").unwrap_err();
        assert_eq!(e.to_string(), INLINE_PASSWORD);
        assert!(check_manifest_url("x://h")
            .unwrap_err()
            .to_string()
            .starts_with("database_url: "));
    }

    #[test]
    fn legacy_env_var_in_json_and_yaml() {
        for holder in [
            json!({"connection": {"env_var": "ABC_URL"}}),
            json!({"config": {"connection": {"env_var": "ABC_URL"}}}),
        ] {
            assert_eq!(legacy_env_var(&holder).as_deref(), Some("ABC_URL"));
            let m = check_legacy(&holder).unwrap_err().to_string();
            assert!(m.contains("ABC_URL") && m.contains("convert-legacy"), "{m}");
        }
        assert_eq!(legacy_env_var(&json!({"connection": "abc"})), None);
        assert_eq!(legacy_env_var(&json!({"config": {}})), None);
        let y: serde_yaml::Value =
            serde_yaml::from_str("config:\n  connection:\n    env_var: X\n").unwrap();
        assert_eq!(legacy_env_var(&y).as_deref(), Some("X"));
        assert!(check_legacy(&serde_yaml::Value::Null).is_ok());
    }

    #[test]
    fn normalize_removes_dots_lexically() {
        let cwd = Path::new("/srv/cpi");
        assert_eq!(
            normalize(Path::new("../../etc"), cwd),
            PathBuf::from("/etc")
        );
        assert_eq!(
            normalize(Path::new("/a/./b/../c"), cwd),
            PathBuf::from("/a/c")
        );
        assert_eq!(normalize(Path::new("/../../x"), cwd), PathBuf::from("/x"));
        assert_eq!(
            normalize(Path::new("in"), cwd),
            PathBuf::from("/srv/cpi/in")
        );
        assert_eq!(normalize(Path::new(""), cwd), PathBuf::from("/srv/cpi"));
    }

    #[test]
    fn inside_is_component_wise() {
        let roots = [PathBuf::from("/srv/in")];
        assert!(inside(Path::new("/srv/in"), &roots));
        assert!(inside(Path::new("/srv/in/a/b"), &roots));
        assert!(!inside(Path::new("/srv/in2"), &roots));
        assert!(!inside(Path::new("/etc"), &roots));
        assert!(!inside(Path::new("/srv/in/x"), &[]));
    }

    #[test]
    fn confine_resolves_dots_and_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let roots = [root.clone()];
        let p = |s: &Path| s.to_string_lossy().into_owned();
        assert!(confine(&p(&root.join("a")), &roots).is_ok());
        // Not there yet: checked lexically below the existing part.
        assert!(confine(&p(&root.join("new/deeper")), &roots).is_ok());
        let e = confine(&p(&root.join("a/../../outside")), &roots)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside every --inbox-root"), "{e}");
        // A symlink out of the root, with or without a missing tail.
        assert!(confine(&p(&root.join("escape")), &roots).is_err());
        assert!(confine(&p(&root.join("escape/new")), &roots).is_err());
        assert!(confine("/etc", &roots).is_err());
        assert!(confine("", &roots)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        // A root given through a symlink still holds its real folder.
        std::os::unix::fs::symlink(&root, d.path().join("link")).unwrap();
        assert!(confine(&p(&root.join("a")), &[d.path().join("link")]).is_ok());
    }

    #[test]
    fn project_dirs_default_under_the_inbox() {
        assert_eq!(
            project_dirs(Some("/in"), Some("done"), Some("/var/rej")),
            vec![
                ("inbox", "/in".to_string()),
                ("processed_dir", "/in/done".to_string()),
                ("failed_dir", "/var/rej".to_string())
            ]
        );
        assert_eq!(
            project_dirs(None, Some("done"), Some("/x")),
            vec![("failed_dir", "/x".to_string())]
        );
        let bad = confine_project(
            Some("/srv/in/a"),
            Some("/root/.ssh"),
            None,
            &[PathBuf::from("/srv/in")],
        );
        assert_eq!(bad.len(), 1);
        assert!(bad[0].1.starts_with("processed_dir: "), "{bad:?}");
    }
}
