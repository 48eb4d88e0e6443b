//! The rules every way into the management tables shares: object names,
//! connection URLs and the legacy `connection.env_var` check. Manifests,
//! export, convert-legacy, the HTTP API and the importer all call these, so
//! a row the API accepts can always be exported as a manifest that loads.

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

/// [`valid_name`] with the reason: the error reads `"<name>" must be …`, for
/// the caller to prefix with what the name belongs to.
pub fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(format!("{name:?} must be {NAME_RULE}"))
    }
}

/// Parses a PostgreSQL URL (`postgres://` or `postgresql://`). The error
/// never repeats the URL, which may hold a password.
pub fn parse_pg_url(raw: &str) -> Result<url::Url, String> {
    if raw.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    let url = url::Url::parse(raw).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "scheme {:?} is not postgres:// or postgresql://",
            url.scheme()
        ));
    }
    Ok(url)
}

/// Why a manifest's `database_url` may not carry a password: git is no
/// place for secrets.
pub const INLINE_PASSWORD: &str = "database_url contains a password: secrets never live in git; move it to a file and reference it with password_file (or put the whole URL in database_url_file)";

/// A manifest's `database_url` rule: a PostgreSQL URL without password.
pub fn check_manifest_url(raw: &str) -> Result<url::Url, String> {
    let url = parse_pg_url(raw).map_err(|m| format!("database_url: {m}"))?;
    if url.password().is_some() {
        return Err(INLINE_PASSWORD.into());
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

/// The legacy check with its migration hint: `Err(message)` when `holder`
/// still uses `connection.env_var`.
pub fn check_legacy<T: Tree>(holder: &T) -> Result<(), String> {
    match legacy_env_var(holder) {
        Some(v) => Err(legacy_message(&v)),
        None => Ok(()),
    }
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
            assert!(check_name(bad).unwrap_err().contains(NAME_RULE));
        }
    }

    #[test]
    fn urls() {
        assert!(parse_pg_url("postgresql://u@h/db").is_ok());
        assert!(parse_pg_url("postgres://u:p@h/db").is_ok());
        let e = parse_pg_url("mysql://u:topsecret@h/db").unwrap_err();
        assert!(e.contains("mysql") && !e.contains("topsecret"), "{e}");
        assert!(parse_pg_url("postgres://h/\0").unwrap_err().contains("NUL"));
        assert!(parse_pg_url("not a url").is_err());
        assert!(check_manifest_url("postgresql://u@h/db").is_ok());
        let e = check_manifest_url("postgresql://u:sup3r@h/db").unwrap_err();
        assert_eq!(e, INLINE_PASSWORD);
        assert!(check_manifest_url("x://h")
            .unwrap_err()
            .starts_with("database_url: "));
    }

    #[test]
    fn legacy_env_var_in_json_and_yaml() {
        for holder in [
            json!({"connection": {"env_var": "ABC_URL"}}),
            json!({"config": {"connection": {"env_var": "ABC_URL"}}}),
        ] {
            assert_eq!(legacy_env_var(&holder).as_deref(), Some("ABC_URL"));
            let m = check_legacy(&holder).unwrap_err();
            assert!(m.contains("ABC_URL") && m.contains("convert-legacy"), "{m}");
        }
        assert_eq!(legacy_env_var(&json!({"connection": "abc"})), None);
        assert_eq!(legacy_env_var(&json!({"config": {}})), None);
        let y: serde_yaml::Value =
            serde_yaml::from_str("config:\n  connection:\n    env_var: X\n").unwrap();
        assert_eq!(legacy_env_var(&y).as_deref(), Some("X"));
        assert!(check_legacy(&serde_yaml::Value::Null).is_ok());
    }
}
