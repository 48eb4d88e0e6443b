//! A project's `config` (stored as `cpi_projects.config`): its inbox and the
//! import options of DESIGN §3, and the pure rules that pick the options for
//! one file. Shared by manifest validation, the HTTP API and the importer.
//!
//! [`options`] holds the import options as written, [`checks`] the data
//! contract and [`expression`] the SQL an `expression` check may hold, [`table`] the target
//! table's name; the private modules merge and default them for one file
//! (`resolve`) and check a config (`validate`).

use serde::{Deserialize, Serialize};

mod characters;
pub mod checks;
mod column_names;
pub mod expression;
pub mod freshness;
pub mod options;
mod resolve;
pub mod table;
mod validate;

pub use characters::{WIDE_DELIMITERS, WIDE_DELIMITER_BYTE};
pub use column_names::OneOrMany;
pub use options::{
    AutoWord, ColumnPolicy, CreateTable, DateOrder, Encoding, ExtraColumns, Formats, HeaderOption,
    ImportOptions, InferWord, LimitOptions, Mode, OnError, RaggedRows, Rejects, SkipLinesOption,
    MAX_TABLE_COLUMNS,
};
pub use resolve::{Limits, ResolvedOptions, SkipLines};
pub use table::{quote_ident, table_from_file_name, TableName, TableNameError};
pub use validate::format_problem;

use resolve::{merge, resolve, DEFAULT_PATTERN};
use validate::{check_column_refs, check_extra_columns, check_key_mode};

/// `cpi_projects.config`. Every field is optional so that the JSON stored is
/// exactly what the operator wrote (plus `name`); defaults are applied when
/// options are resolved for a file, not when they are stored.
// Every `Option` field is left out of the output when `None`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectConfig {
    /// Set from the project name; leave it out.
    pub name: Option<String>,
    /// The folder watched for CSV files, or an object-storage prefix `s3://bucket/prefix/`.
    pub inbox: Option<String>,
    /// Where imported files go (default `<inbox>/processed`; `s3://…` for an object inbox).
    pub processed_dir: Option<String>,
    /// Where rejected files and their `.error.json` go (default `<inbox>/failed`; `s3://…` for an object inbox).
    pub failed_dir: Option<String>,
    /// How an `s3://` inbox's store is reached (S3-compatible stores).
    /// Never credentials: those come from the standard AWS chain.
    pub storage: Option<StorageConfig>,
    /// Seconds a file's size and mtime must stay unchanged before it is read.
    // Kept as the number written (`2` stays `2`, not `2.0`), so a stored
    // config exports and loads back to the same JSON.
    pub settle_seconds: Option<serde_json::Number>,
    /// Options for every file, under each `tables` entry.
    pub defaults: Option<ImportOptions>,
    /// First entry whose `file_pattern` matches wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<ImportOptions>,
}

pub use crate::object_storage::StorageConfig;

impl ProjectConfig {
    /// The tables a `freshness` rule watches, with their rules (see [`freshness::rules`]).
    pub fn freshness_rules(&self) -> Vec<(String, freshness::Freshness)> {
        fn entry(o: &ImportOptions) -> freshness::Entry<'_> {
            (o.table.as_deref(), o.freshness.as_ref())
        }
        freshness::rules(
            self.defaults.as_ref().map(entry),
            self.tables.iter().map(entry),
        )
    }

    /// Where imported files go (`processed/` under the inbox unless the
    /// config says; a relative setting is relative to the inbox).
    pub fn processed_path(&self, inbox: &std::path::Path) -> std::path::PathBuf {
        sub_dir(self.processed_dir.as_deref(), inbox, "processed")
    }

    /// Where rejected files and their reports go (`failed/` unless the config says).
    pub fn failed_path(&self, inbox: &std::path::Path) -> std::path::PathBuf {
        sub_dir(self.failed_dir.as_deref(), inbox, "failed")
    }

    /// `settle_seconds` as a duration (`None` when unset or out of range).
    pub fn settle(&self) -> Option<std::time::Duration> {
        let s = self.settle_seconds.as_ref()?.as_f64()?;
        std::time::Duration::try_from_secs_f64(s).ok()
    }

    /// Every problem of the config, as messages naming the offending key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(s) = &self.settle_seconds {
            if !s.as_f64().is_some_and(|f| (0.0..=3600.0).contains(&f)) {
                errors.push(format!("settle_seconds: {s} is not between 0 and 3600"));
            }
        }
        if let Some(d) = &self.defaults {
            d.validate("defaults", &mut errors);
        }
        for (i, t) in self.tables.iter().enumerate() {
            let at = format!("tables[{i}]");
            t.validate(&at, &mut errors);
            let merged = merge(self.defaults.as_ref(), Some(t));
            check_key_mode(&merged, &at, &mut errors);
            check_extra_columns(&merged, &at, &mut errors);
            check_column_refs(&merged, &at, &mut errors);
        }
        if let Some(d) = &self.defaults {
            check_key_mode(d, "defaults", &mut errors);
            check_extra_columns(d, "defaults", &mut errors);
            check_column_refs(d, "defaults", &mut errors);
        }
        crate::object_storage::check_config(
            self.inbox.as_deref(),
            self.processed_dir.as_deref(),
            self.failed_dir.as_deref(),
            self.storage.as_ref(),
            &mut errors,
        );
        errors
    }

    /// The options for a file (its path relative to the inbox), or `None`
    /// when no pattern matches it and the file is not this project's.
    pub fn options_for(&self, relative_path: &str) -> Option<ResolvedOptions> {
        self.options_with(&self.patterns(), relative_path)
    }

    /// This config's file patterns, compiled: a caller that matches many
    /// files (the daemon's inbox scans) compiles them once per config.
    pub fn patterns(&self) -> Patterns {
        let default = self
            .defaults
            .as_ref()
            .and_then(|d| d.file_pattern.as_deref())
            .unwrap_or(DEFAULT_PATTERN);
        let compile = |p: &str| glob::Pattern::new(p).ok();
        Patterns {
            tables: self
                .tables
                .iter()
                .map(|t| compile(t.file_pattern.as_deref().unwrap_or(default)))
                .collect(),
            default: compile(default),
            default_on_path: self.defaults.is_some(),
        }
    }

    /// [`options_for`](Self::options_for) with `patterns` compiled from this
    /// config by [`patterns`](Self::patterns).
    pub fn options_with(
        &self,
        patterns: &Patterns,
        relative_path: &str,
    ) -> Option<ResolvedOptions> {
        let file_name = relative_path.rsplit('/').next().unwrap_or(relative_path);
        let entry = patterns.entry_for(relative_path)?;
        let entry = entry.and_then(|i| self.tables.get(i));
        Some(resolve(&merge(self.defaults.as_ref(), entry), file_name))
    }
}

/// A config's file patterns compiled ([`ProjectConfig::patterns`]): one per
/// `tables` entry (its own, else the default's), and the default's. An
/// invalid pattern (refused by validation) matches nothing.
#[derive(Debug, Clone)]
pub struct Patterns {
    tables: Vec<Option<glob::Pattern>>,
    default: Option<glob::Pattern>,
    /// `defaults` is set: its pattern is tried on the relative path too.
    default_on_path: bool,
}

impl Patterns {
    /// Which options a file takes: `Some(Some(i))` the `tables` entry `i`
    /// (the first that matches), `Some(None)` the defaults alone, `None`
    /// no pattern matches: the file is not this project's.
    pub fn entry_for(&self, relative_path: &str) -> Option<Option<usize>> {
        let file_name = relative_path.rsplit('/').next().unwrap_or(relative_path);
        let matches = |p: &Option<glob::Pattern>| {
            p.as_ref()
                .is_some_and(|p| glob_matches(p, relative_path) || glob_matches(p, file_name))
        };
        if let Some(i) = self.tables.iter().position(matches) {
            return Some(Some(i));
        }
        // Without `defaults`, the built-in pattern is tried on the file name alone.
        let default = if self.default_on_path {
            matches(&self.default)
        } else {
            self.default
                .as_ref()
                .is_some_and(|p| glob_matches(p, file_name))
        };
        default.then_some(None)
    }

    /// Whether some pattern matches the file: it is this project's.
    pub fn matches(&self, relative_path: &str) -> bool {
        self.entry_for(relative_path).is_some()
    }
}

/// `*.csv` also matches `x.csv.gz` and `x.csv.zst`: gzip and zstd are
/// read transparently, so a compressed file belongs where its
/// uncompressed name would.
fn glob_matches(p: &glob::Pattern, path: &str) -> bool {
    p.matches(path)
        || [".gz", ".zst"]
            .iter()
            .any(|ext| path.strip_suffix(ext).is_some_and(|plain| p.matches(plain)))
}

fn sub_dir(configured: Option<&str>, inbox: &std::path::Path, default: &str) -> std::path::PathBuf {
    match configured {
        // An object-storage prefix is a URL, never relative to the inbox.
        Some(d) if std::path::Path::new(d).is_absolute() || d.starts_with("s3://") => {
            std::path::PathBuf::from(d)
        }
        Some(d) => inbox.join(d),
        None => inbox.join(default),
    }
}

#[cfg(test)]
mod tests;
