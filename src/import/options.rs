//! The options of one file: its project's stored config, matched by the
//! file's path relative to the inbox. Pure.

use std::path::Path;

use crate::config::ResolvedOptions;
use crate::import::error::ImportError;
use crate::store::ParsedConfig;

/// The file's path relative to the project's inbox (what `file_pattern`
/// matches), else its name.
pub fn relative_path(inbox: Option<&str>, path: &Path, file_name: &str) -> String {
    if let Some(inbox) = inbox {
        if let Ok(rel) = path.strip_prefix(inbox) {
            if let Some(s) = rel.to_str() {
                return s.to_string();
            }
        }
    }
    file_name.to_string()
}

/// The options of one file of `project`, from its stored config: `raw` as
/// stored (so that the legacy `connection.env_var` is recognised whether or
/// not the rest parses), `parsed` as the row read it.
pub fn resolve_options(
    project: &str,
    raw: &serde_json::Value,
    parsed: &ParsedConfig,
    path: &Path,
    file_name: &str,
) -> Result<ResolvedOptions, ImportError> {
    if raw
        .get("connection")
        .and_then(|c| c.get("env_var"))
        .is_some()
    {
        return Err(ImportError::LegacyEnvVar {
            project: project.to_string(),
        });
    }
    let config = parsed.as_ref().map_err(|e| ImportError::InvalidConfig {
        project: project.to_string(),
        source: e.clone(),
    })?;
    let relative = relative_path(config.inbox.as_deref(), path, file_name);
    config
        .options_for(&relative)
        .ok_or_else(|| ImportError::NoPattern {
            project: project.to_string(),
            relative,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use serde_json::json;

    #[test]
    fn relative_to_inbox() {
        let p = Path::new("/in/sub/a.csv");
        assert_eq!(relative_path(Some("/in"), p, "a.csv"), "sub/a.csv");
        assert_eq!(relative_path(Some("/other"), p, "a.csv"), "a.csv");
        assert_eq!(relative_path(None, p, "a.csv"), "a.csv");
    }

    /// What a row of the options table expects.
    #[derive(Debug)]
    enum Want {
        Table(&'static str, Mode),
        Legacy,
        Invalid,
        NoPattern(&'static str),
    }

    #[test]
    fn options_decision_table() {
        let rows: Vec<(serde_json::Value, &str, Want)> = vec![
            (
                json!({"tables": [{"table": "t"}]}),
                "/x/a.csv",
                Want::Table("t", Mode::Append),
            ),
            (
                json!({"inbox": "/in", "tables": [{"file_pattern": "sub/*.csv", "table": "s.t", "mode": "replace"}]}),
                "/in/sub/a.csv",
                Want::Table("s.t", Mode::Replace),
            ),
            (
                json!({"tables": [{"file_pattern": "b_*.csv", "table": "b"}, {"table": "a"}]}),
                "/x/b_1.csv",
                Want::Table("b", Mode::Append),
            ),
            (
                json!({"tables": [{"file_pattern": "b_*.csv", "table": "b"}]}),
                "/x/a.txt",
                Want::NoPattern("a.txt"),
            ),
            (
                json!({"connection": {"env_var": "X"}, "tables": [{"table": "t"}]}),
                "/x/a.csv",
                Want::Legacy,
            ),
            (json!({"tables": "nope"}), "/x/a.csv", Want::Invalid),
        ];
        for (config, path, want) in rows {
            let p = Path::new(path);
            let name = p.file_name().unwrap().to_str().unwrap();
            let parsed = crate::store::parse_config(&config);
            let got = resolve_options("p", &config, &parsed, p, name);
            match (&want, &got) {
                (Want::Table(t, m), Ok(o)) => {
                    assert_eq!(o.table.to_string(), *t, "{config}");
                    assert_eq!(o.mode, *m, "{config}");
                }
                (Want::Legacy, Err(ImportError::LegacyEnvVar { .. }))
                | (Want::Invalid, Err(ImportError::InvalidConfig { .. })) => {}
                (Want::NoPattern(r), Err(ImportError::NoPattern { relative, .. })) => {
                    assert_eq!(relative, r)
                }
                _ => panic!("{config} {path}: want {want:?}, got {got:?}"),
            }
        }
    }
}
